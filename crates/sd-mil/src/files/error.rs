//! The error of [`super`]'s readers and checks; each names the path at fault.

use std::path::PathBuf;

/// Why an untrusted file could not be read, or an output could not be replaced.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The operating system refused (missing file, permissions, I/O error).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The path is something other than a regular file.
    #[error("{path}: is {kind}, not a regular file")]
    NotRegular {
        /// The path.
        path: PathBuf,
        /// What it is ("a FIFO", "a character device", "a directory"…).
        kind: &'static str,
    },
    /// The file is larger than the reader accepts.
    #[error("{path}: {len} bytes, more than the {limit}-byte limit for this file")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its length (or as much as was read before giving up).
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// The file is not UTF-8 text.
    #[error("{path}: not UTF-8 text (byte {offset})")]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// A path inside a package or folder is absolute, climbs out with `..`, or is empty.
    #[error("{root}: the path `{relative}` {why}")]
    BadRelativePath {
        /// The package or folder.
        root: PathBuf,
        /// The path as written.
        relative: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A path inside a package leads (through a symbolic link) outside of it.
    #[error("{root}: `{relative}` resolves to {target}, outside the package")]
    Escapes {
        /// The package or folder.
        root: PathBuf,
        /// The path as written.
        relative: String,
        /// Where it leads.
        target: PathBuf,
    },
    /// An output path exists and is something the tool must not replace.
    #[error("{path}: is {kind}; refusing to replace it")]
    RefuseToReplace {
        /// The output path.
        path: PathBuf,
        /// What is there.
        kind: &'static str,
    },
}

impl FileError {
    /// An [`FileError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// Whether the file simply does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}
