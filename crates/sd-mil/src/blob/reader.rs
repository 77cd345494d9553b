//! Reading `weight.bin` through a memory map, validating every record before use.

use super::layout::{self, HEADER_LEN, METADATA_LEN, Metadata, SENTINEL, VERSION};
use super::{BlobDtype, BlobError, Result};
use memmap2::Mmap;
use std::path::{Path, PathBuf};

/// A memory-mapped `weight.bin` file.
///
/// Opening reads only the header; blobs are validated and borrowed on demand, so sharing one
/// `Arc<BlobFile>` among many lazily read constants costs nothing until a blob is read.
#[derive(Debug)]
pub struct BlobFile {
    path: PathBuf,
    map: Mmap,
    count: u32,
}

/// One blob of a [`BlobFile`], borrowed from its memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobRef<'a> {
    /// Element type.
    pub dtype: BlobDtype,
    /// Number of elements, derived from the data size and padding.
    pub element_count: u64,
    /// Unused bits in the last data byte (sub-byte dtypes only; else 0).
    pub padding_bits: u64,
    /// The data bytes (bit-packed for sub-byte dtypes).
    pub data: &'a [u8],
    /// Offset of the blob's metadata record, the value a const's `blobFileValue.offset` holds.
    pub metadata_offset: u64,
    /// Absolute offset of the data.
    pub data_offset: u64,
}

impl BlobFile {
    /// Maps the file at `path` and validates its header (at least 64 bytes, version 2).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let io = |what| {
            let path = path.clone();
            move |source| BlobError::Io { path, what, source }
        };
        let (file, len) = match crate::files::open_regular(&path, u64::MAX) {
            Ok(opened) => opened,
            Err(crate::files::FileError::Io { source, .. }) => {
                return Err(io("opening the file")(source));
            }
            Err(e) => return Err(BlobError::File(Box::new(e))),
        };
        if len < HEADER_LEN {
            return Err(BlobError::TooShort { path, len });
        }
        // SAFETY: the map is read-only. Like every reader of a memory-mapped file, this assumes
        // nobody truncates or rewrites the file while it is mapped; weight files are written
        // once and then only read.
        let map = unsafe { Mmap::map(&file) }.map_err(io("mapping the file"))?;
        if (map.len() as u64) < HEADER_LEN {
            return Err(BlobError::TooShort {
                path,
                len: map.len() as u64,
            });
        }
        let (count, version) = layout::decode_header(first_64(&map, 0));
        if version != VERSION {
            return Err(BlobError::BadVersion {
                path,
                found: version,
            });
        }
        Ok(Self { path, map, count })
    }

    /// The whole mapped file, header included (for copying it byte for byte).
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The number of blobs the header announces.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The file length in bytes.
    pub fn len(&self) -> u64 {
        self.map.len() as u64
    }

    /// Whether the file holds nothing but its header.
    pub fn is_empty(&self) -> bool {
        self.len() == HEADER_LEN
    }

    /// The blob whose metadata record starts at `offset`, after checking that the record lies
    /// in the file, starts with the sentinel, names a known dtype, and points to data inside
    /// the file whose size and padding make a whole number of elements.
    pub fn blob(&self, offset: u64) -> Result<BlobRef<'_>> {
        let file_len = self.len();
        let record_end = offset.saturating_add(METADATA_LEN);
        if offset < HEADER_LEN || record_end > file_len {
            return Err(BlobError::OutOfBounds {
                path: self.path.clone(),
                offset,
                field: "metadata",
                start: offset,
                end: record_end,
                min: HEADER_LEN,
                file_len,
            });
        }
        if !offset.is_multiple_of(layout::ALIGNMENT) {
            return Err(BlobError::Misaligned {
                path: self.path.clone(),
                offset,
                field: "metadata",
                at: offset,
            });
        }
        let meta = Metadata::decode(first_64(&self.map, offset as usize));
        if meta.sentinel != SENTINEL {
            return Err(BlobError::BadSentinel {
                path: self.path.clone(),
                offset,
                found: meta.sentinel,
            });
        }
        let dtype =
            BlobDtype::from_code(meta.dtype_code).ok_or_else(|| BlobError::UnknownDtype {
                path: self.path.clone(),
                offset,
                code: meta.dtype_code,
            })?;
        let data_end = meta.data_offset.saturating_add(meta.size);
        if meta.data_offset < record_end || data_end > file_len {
            return Err(BlobError::OutOfBounds {
                path: self.path.clone(),
                offset,
                field: "data",
                start: meta.data_offset,
                end: data_end,
                min: record_end,
                file_len,
            });
        }
        if !meta.data_offset.is_multiple_of(layout::ALIGNMENT) {
            return Err(BlobError::Misaligned {
                path: self.path.clone(),
                offset,
                field: "data",
                at: meta.data_offset,
            });
        }
        let element_count =
            element_count(dtype, meta.size, meta.padding_bits).ok_or_else(|| {
                BlobError::BadPadding {
                    path: self.path.clone(),
                    offset,
                    dtype,
                    size: meta.size,
                    padding_bits: meta.padding_bits,
                }
            })?;
        Ok(BlobRef {
            dtype,
            element_count,
            padding_bits: meta.padding_bits,
            data: &self.map[meta.data_offset as usize..data_end as usize],
            metadata_offset: offset,
            data_offset: meta.data_offset,
        })
    }

    /// Like [`BlobFile::blob`], also checking that the blob holds `expected` elements.
    pub fn blob_typed(&self, offset: u64, expected: BlobDtype) -> Result<BlobRef<'_>> {
        let blob = self.blob(offset)?;
        if blob.dtype != expected {
            return Err(BlobError::DtypeMismatch {
                path: self.path.clone(),
                offset,
                expected,
                found: blob.dtype,
            });
        }
        Ok(blob)
    }

    /// All blobs in file order: the first at offset 64, each next one at the end of the
    /// previous data rounded up to 64, as many as the header announces.
    pub fn iter(&self) -> Blobs<'_> {
        Blobs {
            file: self,
            next: HEADER_LEN,
            found: 0,
            done: false,
        }
    }

    /// Tells the kernel that `blob`'s pages are not needed any more, so that they leave this
    /// process's resident set (they stay in the page cache and are read again if touched).
    ///
    /// Useful when streaming a large file once, e.g. while uploading weights elsewhere.
    pub fn release(&self, blob: &BlobRef<'_>) {
        #[cfg(unix)]
        {
            let (start, len) = (blob.data_offset as usize, blob.data.len());
            if len == 0 || start.saturating_add(len) > self.map.len() {
                return;
            }
            // SAFETY: the map is a read-only shared file mapping, so dropping its pages loses
            // nothing: the next access reads the same bytes from the file again.
            let advised = unsafe {
                self.map
                    .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, len)
            };
            if let Err(e) = advised {
                tracing::debug!(path = %self.path.display(), start, len, "madvise(DONTNEED) failed: {e}");
            }
        }
        #[cfg(not(unix))]
        let _ = blob;
    }
}

/// Iterator over the blobs of a [`BlobFile`], from [`BlobFile::iter`].
///
/// Yields an error (and then stops) at the first invalid record, or when the file ends before
/// the header's count is reached.
#[derive(Debug)]
pub struct Blobs<'a> {
    file: &'a BlobFile,
    next: u64,
    found: u32,
    done: bool,
}

impl<'a> Iterator for Blobs<'a> {
    type Item = Result<BlobRef<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.found == self.file.count {
            return None;
        }
        if self.next.saturating_add(METADATA_LEN) > self.file.len() {
            self.done = true;
            return Some(Err(BlobError::Truncated {
                path: self.file.path.clone(),
                expected: self.file.count,
                found: self.found,
                offset: self.next,
            }));
        }
        let blob = self.file.blob(self.next);
        match &blob {
            Ok(b) => {
                self.found += 1;
                match layout::align_up(b.data_offset + b.data.len() as u64) {
                    Some(next) => self.next = next,
                    None => self.done = true,
                }
            }
            Err(_) => self.done = true,
        }
        Some(blob)
    }
}

impl<'a> IntoIterator for &'a BlobFile {
    type Item = Result<BlobRef<'a>>;
    type IntoIter = Blobs<'a>;

    fn into_iter(self) -> Blobs<'a> {
        self.iter()
    }
}

/// Elements in a blob of `size` bytes with `padding` unused bits, or `None` when that is not
/// a whole number of `dtype` elements.
fn element_count(dtype: BlobDtype, size: u64, padding: u64) -> Option<u64> {
    let bits = u64::from(dtype.bits());
    let used = size.checked_mul(8)?.checked_sub(padding)?;
    let whole = used % bits == 0;
    let padding_ok = if dtype.is_sub_byte() {
        padding < 8
    } else {
        padding == 0
    };
    (whole && padding_ok).then_some(used / bits)
}

/// The 64 bytes at `at` (the caller has checked that they are in bounds).
fn first_64(bytes: &[u8], at: usize) -> &[u8; 64] {
    bytes[at..at + 64]
        .try_into()
        .expect("a 64-byte slice converts to a 64-byte array")
}
