//! The `weight.bin` blob file of an ML Program package.
//!
//! A 64-byte header (`count: u32`, `version: u32` = 2, zeros) is followed by blobs; each blob
//! is a 64-byte metadata record (sentinel 0xDEADBEEF, dtype code, data size, data offset,
//! padding bits) starting at a multiple of 64, immediately followed by its data. A `const` op
//! refers to a blob by the offset of its metadata record.
//!
//! [`BlobWriter`] writes such files (whole blobs or streamed ones that never sit in memory as
//! a whole), [`BlobFile`] reads them through a memory map, and [`pack_bits`] /
//! [`unpack_bits`] convert sub-byte elements.

mod bits;
mod dtype;
mod error;
pub mod layout;
mod reader;
mod writer;

pub use bits::{
    pack_bits, pack_bits_into, pack_i4, packed_len, padding_bits, unpack_bits, unpack_i4,
};
pub use dtype::BlobDtype;
pub use error::{BlobError, Result};
pub use reader::{BlobFile, BlobRef, Blobs};
pub use writer::{BlobStream, BlobWriter};
