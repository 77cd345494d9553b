//! Whole-file outputs that are either untouched or complete.

use super::{FileError, check_replaceable};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` so that `path` is either untouched or complete: the data goes to a
/// new hidden file beside it (`.<name>.<pid>-<n>.tmp`, created exclusively), is flushed to disk,
/// then renamed over `path`; the directory is synced afterwards. On any error the temporary
/// file is removed. A `path` that exists and is not a regular file (a symbolic link,
/// directory, FIFO, device or socket) is refused, not replaced ([`check_replaceable`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let io = |e| FileError::io(path, e);
    check_replaceable(path, false)?;
    let name = path.file_name().ok_or_else(|| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path has no file name",
        ))
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // Keep the temporary name short enough for a 255-byte name limit.
    let name = name.to_string_lossy();
    let mut short = String::new();
    for c in name.chars() {
        if short.len() + c.len_utf8() > 180 {
            break;
        }
        short.push(c);
    }
    let (tmp_path, mut file) = loop {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let candidate = dir.join(format!(".{short}.{}-{n}.tmp", std::process::id()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&candidate)
        {
            Ok(f) => break (candidate, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io(e)),
        }
    };
    let result = (|| -> Result<(), FileError> {
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        // The target could have been replaced by something else since the first check.
        check_replaceable(path, false)?;
        std::fs::rename(&tmp_path, path).map_err(io)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp_path);
        return Err(e);
    }
    // Make the rename itself durable (best effort: not every platform can open a directory).
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_regular_files_only_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        write_atomic(&path, b"1").unwrap();
        write_atomic(&path, b"22").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"22");
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        assert!(matches!(
            write_atomic(&sub, b"x"),
            Err(FileError::RefuseToReplace { .. })
        ));
        #[cfg(unix)]
        {
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(&path, &link).unwrap();
            assert!(write_atomic(&link, b"x").is_err());
            assert_eq!(std::fs::read(&path).unwrap(), b"22");
            assert!(write_atomic(Path::new("/dev/null"), b"x").is_err());
        }
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }
}
