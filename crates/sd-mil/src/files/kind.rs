//! What a path is, in words, and whether an output may replace it.

use super::FileError;
use std::fs::FileType;
use std::path::Path;

/// A file type in words ("a regular file", "a FIFO", "a character device"…).
pub fn file_kind(ft: &FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO";
        }
        if ft.is_socket() {
            return "a socket";
        }
        if ft.is_block_device() {
            return "a block device";
        }
        if ft.is_char_device() {
            return "a character device";
        }
    }
    if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// Checks that an output may be written at `path`: it is missing, or (without following a
/// symbolic link) a regular file when `dir` is false, a directory when `dir` is true.
/// Anything else — a symbolic link, FIFO, socket or device node, or the other of file and
/// directory — is refused, so a tool never replaces what it did not make.
pub fn check_replaceable(path: &Path, dir: bool) -> Result<(), FileError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            let ft = meta.file_type();
            if (dir && ft.is_dir()) || (!dir && ft.is_file()) {
                Ok(())
            } else {
                Err(FileError::RefuseToReplace {
                    path: path.to_path_buf(),
                    kind: file_kind(&ft),
                })
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FileError::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_links_and_the_wrong_kind_are_not_replaceable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(check_replaceable(&file, false).is_ok());
        assert!(check_replaceable(&dir.path().join("missing"), false).is_ok());
        assert!(check_replaceable(dir.path(), true).is_ok());
        let wrong = check_replaceable(&file, true).unwrap_err();
        assert!(wrong.to_string().contains("a regular file"), "{wrong}");
        assert!(check_replaceable(dir.path(), false).is_err());
        #[cfg(unix)]
        {
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(&file, &link).unwrap();
            let e = check_replaceable(&link, false).unwrap_err();
            assert!(e.to_string().contains("symbolic link"), "{e}");
            let e = check_replaceable(Path::new("/dev/null"), false).unwrap_err();
            assert!(e.to_string().contains("character device"), "{e}");
        }
    }
}
