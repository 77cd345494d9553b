//! Errors of the `weight.bin` reader and writer; each names the file and the field at fault.

use super::BlobDtype;
use std::path::PathBuf;

/// Result of a blob file operation.
pub type Result<T, E = BlobError> = std::result::Result<T, E>;

/// Why a `weight.bin` file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// An I/O operation on the file failed.
    #[error("{}: {what}: {source}", path.display())]
    Io {
        /// The blob file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The path is not a regular file (a FIFO, a device, a directory).
    #[error(transparent)]
    File(Box<crate::files::FileError>),
    /// A metadata record or its data does not start on a 64-byte boundary.
    #[error("{}: blob at offset {offset}: {field} offset {at} is not a multiple of 64", path.display())]
    Misaligned {
        /// The blob file.
        path: PathBuf,
        /// Offset of the metadata record.
        offset: u64,
        /// "metadata" or "data".
        field: &'static str,
        /// The misaligned offset.
        at: u64,
    },
    /// The file is shorter than its 64-byte header.
    #[error("{}: file is {len} bytes, shorter than the 64-byte header", path.display())]
    TooShort {
        /// The blob file.
        path: PathBuf,
        /// The file length.
        len: u64,
    },
    /// The file ends before the number of blobs its header announces.
    #[error(
        "{}: header announces {expected} blobs but the file ends after {found} (at offset {offset})",
        path.display()
    )]
    Truncated {
        /// The blob file.
        path: PathBuf,
        /// The header's blob count.
        expected: u32,
        /// Blobs found before the end of the file.
        found: u32,
        /// Where the next metadata record should have started.
        offset: u64,
    },
    /// The header's version field is not 2.
    #[error("{}: header version at offset 4 is {found}, expected 2", path.display())]
    BadVersion {
        /// The blob file.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// A metadata record does not start with the sentinel 0xDEADBEEF.
    #[error("{}: metadata at offset {offset}: sentinel is {found:#010x}, expected 0xdeadbeef", path.display())]
    BadSentinel {
        /// The blob file.
        path: PathBuf,
        /// Offset of the metadata record.
        offset: u64,
        /// The value found.
        found: u32,
    },
    /// A metadata record names a dtype code this crate does not know.
    #[error("{}: metadata at offset {offset}: unknown mil_dtype code {code}", path.display())]
    UnknownDtype {
        /// The blob file.
        path: PathBuf,
        /// Offset of the metadata record.
        offset: u64,
        /// The code found.
        code: u32,
    },
    /// A field points outside the file (or into the header / the metadata record itself).
    #[error(
        "{}: metadata at offset {offset}: {field} [{start}, {end}) is outside the allowed range [{min}, {file_len})",
        path.display()
    )]
    OutOfBounds {
        /// The blob file.
        path: PathBuf,
        /// Offset of the metadata record in question.
        offset: u64,
        /// The field at fault (`metadata`, `data`).
        field: &'static str,
        /// First byte of the range it names.
        start: u64,
        /// One past the last byte of the range (saturating).
        end: u64,
        /// The lowest offset the range may start at.
        min: u64,
        /// The file length.
        file_len: u64,
    },
    /// `size_in_bytes` and `padding_size_in_bits` do not describe a whole number of elements.
    #[error(
        "{}: metadata at offset {offset}: {dtype} blob of {size} bytes with {padding_bits} padding bits is not a whole number of elements",
        path.display()
    )]
    BadPadding {
        /// The blob file.
        path: PathBuf,
        /// Offset of the metadata record.
        offset: u64,
        /// The blob's dtype.
        dtype: BlobDtype,
        /// Its `size_in_bytes`.
        size: u64,
        /// Its `padding_size_in_bits`.
        padding_bits: u64,
    },
    /// The data handed to the writer does not have the size the dtype and element count imply.
    #[error(
        "{}: blob at metadata offset {offset}: {dtype} × {element_count} needs {expected} data bytes, got {got}",
        path.display()
    )]
    SizeMismatch {
        /// The blob file.
        path: PathBuf,
        /// Metadata offset of the blob being written.
        offset: u64,
        /// The blob's dtype.
        dtype: BlobDtype,
        /// Its element count.
        element_count: u64,
        /// Bytes required.
        expected: u64,
        /// Bytes given.
        got: u64,
    },
    /// A blob has another dtype than the caller expected.
    #[error("{}: metadata at offset {offset}: dtype is {found}, expected {expected}", path.display())]
    DtypeMismatch {
        /// The blob file.
        path: PathBuf,
        /// Offset of the metadata record.
        offset: u64,
        /// The dtype the caller asked for.
        expected: BlobDtype,
        /// The dtype in the file.
        found: BlobDtype,
    },
    /// A streamed blob was dropped before [`BlobStream::finish`](super::BlobStream::finish).
    #[error("{}: blob at metadata offset {offset} was never finished", path.display())]
    Unfinished {
        /// The blob file.
        path: PathBuf,
        /// Metadata offset of the unfinished blob.
        offset: u64,
    },
    /// More blobs than the header's `u32` count can hold.
    #[error("{}: more than {} blobs", path.display(), u32::MAX)]
    TooManyBlobs {
        /// The blob file.
        path: PathBuf,
    },
}
