//! Memory-mapped safetensors files, checked when opened.

use super::{ElementType, SourceDType};
use crate::error::{ConvertError, Result};
use memmap2::Mmap;
use serde_json::Value;
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
    /// Maps `path` and checks its header: JSON well formed, every tensor's byte range matching
    /// its shape and dtype and lying inside the file. Tensors of element types other than
    /// F16/BF16/F32 (integer buffers such as CLIP's `position_ids`) are listed but not readable.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let io = |e| ConvertError::Io {
            path: path.clone(),
            source: e,
        };
        let (file, _) = sd_mil::files::open_regular(&path, u64::MAX)?;
        // SAFETY: the file is opened read-only and only read through this map; a writer
        // truncating it underneath us is outside what the converter guards against.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io)?;
        let bad = |m: String| ConvertError::BadHeader {
            path: path.clone(),
            message: m,
        };
        if mmap.len() < 8 {
            return Err(bad(format!(
                "file of {} bytes has no header length",
                mmap.len()
            )));
        }
        let n = u64::from_le_bytes(mmap[..8].try_into().expect("8 bytes"));
        if n > (mmap.len() - 8) as u64 {
            return Err(bad(format!(
                "header of {n} bytes does not fit a file of {} bytes",
                mmap.len()
            )));
        }
        let n = n as usize;
        let header: serde_json::Map<String, Value> = serde_json::from_slice(&mmap[8..8 + n])
            .map_err(|e| bad(format!("header JSON: {e}")))?;
        let data_start = 8 + n;
        let available = mmap.len() - data_start;
        let mut tensors = HashMap::new();
        for (name, v) in header {
            if name == "__metadata__" {
                continue;
            }
            let dtype_s = v
                .get("dtype")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("`{name}` has no dtype")))?;
            let shape: Vec<usize> = v
                .get("shape")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
                .ok_or_else(|| bad(format!("`{name}` has no valid shape")))?;
            let offs: Vec<usize> = v
                .get("data_offsets")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
                .filter(|o: &Vec<usize>| o.len() == 2 && o[0] <= o[1])
                .ok_or_else(|| bad(format!("`{name}` has no valid data_offsets")))?;
            if offs[1] > available {
                return Err(ConvertError::Truncated {
                    path,
                    tensor: name,
                    start: offs[0],
                    end: offs[1],
                    available,
                });
            }
            let dtype = match dtype_s {
                "F16" => ElementType::Float(SourceDType::F16),
                "BF16" => ElementType::Float(SourceDType::BF16),
                "F32" => ElementType::Float(SourceDType::F32),
                other => ElementType::Other(other.to_string()),
            };
            if let ElementType::Float(d) = dtype {
                let count = shape
                    .iter()
                    .try_fold(1usize, |a, &d| a.checked_mul(d))
                    .ok_or_else(|| bad(format!("`{name}`: shape {shape:?} overflows")))?;
                if count.checked_mul(d.size()) != Some(offs[1] - offs[0]) {
                    return Err(bad(format!(
                        "`{name}`: {} bytes do not hold {dtype_s} {shape:?}",
                        offs[1] - offs[0]
                    )));
                }
            }
            tensors.insert(
                name,
                TensorInfo {
                    dtype,
                    shape,
                    start: data_start + offs[0],
                    end: data_start + offs[1],
                },
            );
        }
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
