//! Bounded reads of regular files.

use super::{FileError, file_kind};
use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::path::Path;

/// Opens `path` for reading if it is a regular file (symbolic links are followed) of at most
/// `limit` bytes, and returns it with its length.
///
/// The type is checked before opening, and again on the opened file; on Unix the open itself
/// does not block (`O_NONBLOCK`), so a path swapped for a FIFO in between cannot hang the
/// caller.
pub fn open_regular(path: &Path, limit: u64) -> Result<(File, u64), FileError> {
    let meta = std::fs::metadata(path).map_err(|e| FileError::io(path, e))?;
    check(path, &meta, limit)?;
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| FileError::io(path, e))?;
    let meta = file.metadata().map_err(|e| FileError::io(path, e))?;
    check(path, &meta, limit)?;
    Ok((file, meta.len()))
}

/// Reads the whole of a regular file of at most `limit` bytes ([`open_regular`], then a read
/// capped at `limit + 1` bytes in case the file grows meanwhile).
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let (file, len) = open_regular(path, limit)?;
    let mut data = Vec::with_capacity(len as usize);
    file.take(limit.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|e| FileError::io(path, e))?;
    if data.len() as u64 > limit {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            len: data.len() as u64,
            limit,
        });
    }
    Ok(data)
}

/// [`read_regular`] of a UTF-8 text file.
pub fn read_regular_string(path: &Path, limit: u64) -> Result<String, FileError> {
    String::from_utf8(read_regular(path, limit)?).map_err(|e| FileError::NotUtf8 {
        path: path.to_path_buf(),
        offset: e.utf8_error().valid_up_to(),
    })
}

fn check(path: &Path, meta: &Metadata, limit: u64) -> Result<(), FileError> {
    if !meta.file_type().is_file() {
        return Err(FileError::NotRegular {
            path: path.to_path_buf(),
            kind: file_kind(&meta.file_type()),
        });
    }
    if meta.len() > limit {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            len: meta.len(),
            limit,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.json");
        std::fs::write(&file, b"{}").unwrap();
        assert_eq!(read_regular(&file, 2).unwrap(), b"{}");
        assert!(matches!(
            read_regular(&file, 1),
            Err(FileError::TooLarge {
                len: 2,
                limit: 1,
                ..
            })
        ));
        let e = read_regular(dir.path(), 10).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
        assert!(
            read_regular(&dir.path().join("missing"), 10)
                .unwrap_err()
                .is_not_found()
        );
        std::fs::write(&file, [0xff, 0xfe]).unwrap();
        assert!(matches!(
            read_regular_string(&file, 10),
            Err(FileError::NotUtf8 { offset: 0, .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn devices_and_fifos_are_refused_without_blocking() {
        for dev in ["/dev/zero", "/dev/urandom", "/dev/null"] {
            let e = read_regular(Path::new(dev), 1 << 20).unwrap_err();
            assert!(e.to_string().contains("character device"), "{dev}: {e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_regular(&fifo, 10).unwrap_err();
        assert!(e.to_string().contains("a FIFO"), "{e}");
    }
}
