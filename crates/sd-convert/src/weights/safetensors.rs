//! Memory-mapped safetensors files, checked when opened.

use super::{ElementType, SourceDType};
use crate::error::{ConvertError, Result};
use ::safetensors::{Dtype, SafeTensorError, SafeTensors, tensor::Metadata};
use memmap2::Mmap;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where one tensor lies in its file.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// Element type.
    pub dtype: ElementType,
    /// Shape.
    pub shape: Vec<usize>,
    /// Absolute byte offset of the first element in the file.
    pub start: usize,
    /// Absolute byte offset one past the last element.
    pub end: usize,
}

/// One memory-mapped safetensors file whose header has been checked.
pub struct SafetensorsFile {
    path: PathBuf,
    mmap: Mmap,
    tensors: HashMap<String, TensorInfo>,
}

impl fmt::Debug for SafetensorsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SafetensorsFile({}, {} tensors)",
            self.path.display(),
            self.tensors.len()
        )
    }
}

impl SafetensorsFile {
    /// Maps `path` and checks its header with the `safetensors` crate (the one parser of the
    /// format in this workspace): JSON well formed, tensors contiguous, every byte range matching
    /// its shape and dtype and the last one ending at the end of the file. A file cut short is
    /// reported with the first tensor whose bytes are missing. Tensors of element types other
    /// than F16/BF16/F32 (integer buffers such as CLIP's `position_ids`) are listed but not
    /// readable.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let (file, _) = sd_mil::files::open_regular(&path, u64::MAX)?;
        // SAFETY: the file is opened read-only and only read through this map; a writer
        // truncating it underneath us is outside what the converter guards against.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| ConvertError::Io {
            path: path.clone(),
            source: e,
        })?;
        let (header_len, metadata) = match SafeTensors::read_metadata(&mmap) {
            Ok(parsed) => parsed,
            Err(e) => return Err(header_error(&path, &mmap, e)),
        };
        let data_start = HEADER_LEN_BYTES + header_len;
        let tensors = metadata
            .tensors()
            .into_iter()
            .map(|(name, info)| {
                let (start, end) = info.data_offsets;
                let info = TensorInfo {
                    dtype: element_type(info.dtype),
                    shape: info.shape.clone(),
                    start: data_start + start,
                    end: data_start + end,
                };
                (name, info)
            })
            .collect();
        Ok(SafetensorsFile {
            path,
            mmap,
            tensors,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Names of the tensors in the file.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Where tensor `name` lies, if the file has it.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    /// Bytes `range` (relative to the tensor's first byte) of tensor `info`, handed to `f` in
    /// chunks of at most `chunk` bytes; the pages of each chunk are released once `f` returns.
    pub(super) fn stream(
        &self,
        info: &TensorInfo,
        range: std::ops::Range<usize>,
        chunk: usize,
        f: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let start = info.start + range.start;
        let bytes = &self.mmap[start..info.start + range.end];
        let mut done = 0;
        for c in bytes.chunks(chunk.max(1)) {
            f(c)?;
            self.release(start + done, c.len());
            done += c.len();
        }
        Ok(())
    }

    /// Lets the kernel drop the resident pages of a streamed range, so that the mapped
    /// checkpoint does not accumulate in the process's resident memory while a package is
    /// written (the pages are read again from the file if touched later).
    fn release(&self, offset: usize, len: usize) {
        #[cfg(unix)]
        // SAFETY: the map is a read-only file mapping; MADV_DONTNEED only discards clean page
        // cache references, and later reads fault the same bytes back in from the file.
        unsafe {
            let _ =
                self.mmap
                    .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len);
        }
        #[cfg(not(unix))]
        let _ = (offset, len);
    }
}

/// Bytes of the little-endian header length that opens every safetensors file.
const HEADER_LEN_BYTES: usize = 8;

/// The converter's name for a safetensors element type.
fn element_type(dtype: Dtype) -> ElementType {
    match dtype {
        Dtype::F16 => ElementType::Float(SourceDType::F16),
        Dtype::BF16 => ElementType::Float(SourceDType::BF16),
        Dtype::F32 => ElementType::Float(SourceDType::F32),
        other => ElementType::Other(format!("{other:?}")),
    }
}

/// Turns the parser's refusal into the converter's error. A header that is sound but describes
/// more data than the file holds (an interrupted download) is a [`ConvertError::Truncated`]
/// naming the first tensor cut short.
fn header_error(path: &Path, bytes: &[u8], e: SafeTensorError) -> ConvertError {
    if matches!(e, SafeTensorError::MetadataIncompleteBuffer)
        && let Some(truncated) = first_truncated(path, bytes)
    {
        return truncated;
    }
    let message = match e {
        SafeTensorError::HeaderTooSmall => {
            format!("file of {} bytes has no header length", bytes.len())
        }
        SafeTensorError::InvalidHeaderLength => {
            format!("header length does not fit a file of {} bytes", bytes.len())
        }
        SafeTensorError::MetadataIncompleteBuffer => format!(
            "the tensors' data does not end where the file of {} bytes ends",
            bytes.len()
        ),
        other => other.to_string(),
    };
    ConvertError::BadHeader {
        path: path.to_path_buf(),
        message,
    }
}

/// The first tensor whose bytes lie past the end of `bytes`, when the header itself parses.
fn first_truncated(path: &Path, bytes: &[u8]) -> Option<ConvertError> {
    let n = usize::try_from(u64::from_le_bytes(
        bytes.get(..HEADER_LEN_BYTES)?.try_into().ok()?,
    ))
    .ok()?;
    let header = bytes.get(HEADER_LEN_BYTES..HEADER_LEN_BYTES.checked_add(n)?)?;
    let metadata: Metadata = serde_json::from_slice(header).ok()?;
    let available = bytes.len() - HEADER_LEN_BYTES - n;
    let (name, info) = metadata
        .tensors()
        .into_iter()
        .filter(|(_, info)| info.data_offsets.1 > available)
        .min_by_key(|(_, info)| info.data_offsets.0)?;
    Some(ConvertError::Truncated {
        path: path.to_path_buf(),
        tensor: name,
        start: info.data_offsets.0,
        end: info.data_offsets.1,
        available,
    })
}
