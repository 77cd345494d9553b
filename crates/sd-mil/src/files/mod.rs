//! Files from strangers: the one place every crate of the toolkit reads untrusted files and
//! replaces outputs through.
//!
//! - [`read_regular`] / [`open_regular`]: regular files only (a FIFO, `/dev/zero`, a socket
//!   or a directory is refused at once instead of blocking or reading forever), the size
//!   checked against a limit before reading and enforced while reading.
//! - [`Confinement`]: paths named *inside* a package or model folder (a manifest's item path,
//!   a weight file) resolved below its root: no absolute paths, no `..`, and no symbolic link
//!   that leads outside (links into a Hugging Face cache's `blobs/` folder, which is how the
//!   cache stores every file, are allowed).
//! - [`check_replaceable`]: an output path may only be replaced when it is missing or a
//!   regular file (or, for folders, a directory): never a symbolic link, FIFO or device node;
//!   [`write_atomic`] writes a whole file that way, through a temporary file and a rename.
//!
//! ```
//! use sd_mil::files::{read_regular, FileError};
//!
//! let dir = std::env::temp_dir();
//! let path = dir.join(format!("sd-mil-files-doc-{}.txt", std::process::id()));
//! std::fs::write(&path, b"hello").unwrap();
//! assert_eq!(read_regular(&path, 16).unwrap(), b"hello");
//! assert!(matches!(read_regular(&path, 2), Err(FileError::TooLarge { .. })));
//! # std::fs::remove_file(&path).unwrap();
//! ```

mod confine;
mod error;
mod kind;
mod read;
mod write;

pub use confine::{Confinement, join_relative};
pub use error::FileError;
pub use kind::{check_replaceable, file_kind};
pub use read::{open_regular, read_regular, read_regular_string};
pub use write::write_atomic;

/// Size limit for JSON documents (manifests, configs, metadata): 64 MiB.
pub const MAX_JSON_BYTES: u64 = 64 << 20;

/// Size limit for a protobuf model description (`model.mlmodel`): 2 GiB, protobuf's own limit.
pub const MAX_PROTOBUF_BYTES: u64 = 2 << 30;
