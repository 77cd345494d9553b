//! Weights in: memory-mapped safetensors files, checked when opened, streamed into `weight.bin`.
//!
//! A [`WeightStore`] holds the tensors of one diffusers component (`unet/`, `vae/`, …). A tensor
//! becomes a [`ConstValue`] whose bytes are produced by [`MappedTensor`] only when the package is
//! written, converting fp32/bf16 → fp16 (or the reverse) chunk by chunk, so peak memory does not
//! grow with the model size.

use crate::error::{ConvertError, Result};
use half::{bf16, f16};
use memmap2::Mmap;
use sd_mil::{ConstValue, DType, TensorSource, TensorType};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Element types read from checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceDType {
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// IEEE single.
    F32,
}

impl SourceDType {
    fn from_safetensors(s: &str) -> Option<Self> {
        match s {
            "F16" => Some(SourceDType::F16),
            "BF16" => Some(SourceDType::BF16),
            "F32" => Some(SourceDType::F32),
            _ => None,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            SourceDType::F16 | SourceDType::BF16 => 2,
            SourceDType::F32 => 4,
        }
    }
}

/// Where one tensor lies in its file.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// Element type.
    pub dtype: SourceDType,
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
    /// Maps `path` and checks its header: JSON well formed, every tensor of a known dtype whose
    /// byte range matches its shape and lies inside the file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let io = |e| ConvertError::Io {
            path: path.clone(),
            source: e,
        };
        let file = std::fs::File::open(&path).map_err(io)?;
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
        let n = u64::from_le_bytes(mmap[..8].try_into().expect("8 bytes")) as usize;
        if n > mmap.len() - 8 {
            return Err(bad(format!(
                "header of {n} bytes does not fit a file of {} bytes",
                mmap.len()
            )));
        }
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
            let Some(dtype) = SourceDType::from_safetensors(dtype_s) else {
                // Integer buffers (e.g. CLIP's position_ids) are not weights; keep them out.
                if offs[1] > available {
                    return Err(ConvertError::Truncated {
                        path,
                        tensor: name,
                        start: offs[0],
                        end: offs[1],
                        available,
                    });
                }
                tensors.insert(
                    name,
                    TensorInfo {
                        dtype: SourceDType::F32,
                        shape: vec![usize::MAX],
                        start: 0,
                        end: 0,
                    },
                );
                continue;
            };
            let count: usize = shape.iter().product();
            if count * dtype.size() != offs[1] - offs[0] {
                return Err(bad(format!(
                    "`{name}`: {} bytes do not hold {dtype_s} {shape:?}",
                    offs[1] - offs[0]
                )));
            }
            if offs[1] > available {
                return Err(ConvertError::Truncated {
                    path,
                    tensor: name,
                    start: offs[0],
                    end: offs[1],
                    available,
                });
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

    fn bytes(&self, info: &TensorInfo) -> &[u8] {
        &self.mmap[info.start..info.end]
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

/// A tensor of a mapped file, converted to `dst` while it is streamed into `weight.bin`.
#[derive(Debug)]
pub struct MappedTensor {
    file: Arc<SafetensorsFile>,
    /// Shown in debug output of the constant.
    #[allow(dead_code)]
    name: String,
    info: TensorInfo,
    dst: DType,
}

/// Elements converted per chunk while streaming.
const CHUNK: usize = 1 << 20;

impl TensorSource for MappedTensor {
    fn byte_len(&self) -> usize {
        let count = (self.info.end - self.info.start) / self.info.dtype.size();
        count * if self.dst == DType::F32 { 4 } else { 2 }
    }

    fn write_to(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let src = self.file.bytes(&self.info);
        let es = self.info.dtype.size();
        let same = matches!(
            (self.info.dtype, self.dst),
            (SourceDType::F16, DType::F16) | (SourceDType::F32, DType::F32)
        );
        let mut buf = Vec::with_capacity(if same { 0 } else { CHUNK * 4 });
        let mut done = 0;
        for chunk in src.chunks(CHUNK * es) {
            if same {
                out.write_all(chunk)?;
            } else {
                buf.clear();
                for e in chunk.chunks_exact(es) {
                    let v = match self.info.dtype {
                        SourceDType::F16 => f16::from_le_bytes([e[0], e[1]]).to_f32(),
                        SourceDType::BF16 => bf16::from_le_bytes([e[0], e[1]]).to_f32(),
                        SourceDType::F32 => f32::from_le_bytes([e[0], e[1], e[2], e[3]]),
                    };
                    if self.dst == DType::F32 {
                        buf.extend_from_slice(&v.to_le_bytes());
                    } else {
                        buf.extend_from_slice(&f16::from_f32(v).to_le_bytes());
                    }
                }
                out.write_all(&buf)?;
            }
            self.file.release(self.info.start + done, chunk.len());
            done += chunk.len();
        }
        Ok(())
    }
}

/// The tensors of one component, possibly spread over several files (sharded checkpoints).
#[derive(Debug, Default)]
pub struct WeightStore {
    root: PathBuf,
    files: Vec<Arc<SafetensorsFile>>,
    index: HashMap<String, usize>,
}

/// File stems diffusers and transformers use for a component's weights.
const STEMS: &[&str] = &["diffusion_pytorch_model", "model"];

impl WeightStore {
    /// Opens the weights of a diffusers component directory (`unet/`, `text_encoder/`, …):
    /// `<stem>[.<variant>].safetensors` or a sharded `<stem>[.<variant>].safetensors.index.json`.
    /// With `variant` None the plain file is preferred and the `fp16` variant taken otherwise.
    pub fn open_component(dir: impl AsRef<Path>, variant: Option<&str>) -> Result<Self> {
        let dir = dir.as_ref();
        let variants: Vec<Option<&str>> = match variant {
            Some(v) => vec![Some(v)],
            None => vec![None, Some("fp16")],
        };
        for v in &variants {
            for stem in STEMS {
                let base = match v {
                    Some(v) => format!("{stem}.{v}.safetensors"),
                    None => format!("{stem}.safetensors"),
                };
                let single = dir.join(&base);
                if single.is_file() {
                    return Self::open_files(dir, &[single]);
                }
                let index = dir.join(format!("{base}.index.json"));
                if index.is_file() {
                    return Self::open_index(dir, &index);
                }
            }
        }
        let bins: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".bin") || n.ends_with(".ckpt") || n.ends_with(".pt"))
                    .collect()
            })
            .unwrap_or_default();
        let hint = if bins.is_empty() {
            String::new()
        } else {
            format!(
                " (found {}: PyTorch pickles are not read yet; convert them to safetensors)",
                bins.join(", ")
            )
        };
        Err(ConvertError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "no safetensors weights{}{hint}",
                    variant
                        .map(|v| format!(" of variant `{v}`"))
                        .unwrap_or_default()
                ),
            ),
        })
    }

    fn open_index(dir: &Path, index: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(index).map_err(|e| ConvertError::Io {
            path: index.into(),
            source: e,
        })?;
        let v: Value = serde_json::from_str(&text).map_err(|e| ConvertError::Config {
            path: index.into(),
            message: e.to_string(),
        })?;
        let map = v
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| ConvertError::Config {
                path: index.into(),
                message: "missing key `weight_map`".into(),
            })?;
        let mut files: Vec<String> = map
            .values()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        files.sort();
        files.dedup();
        let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
        Self::open_files(dir, &paths)
    }

    /// Opens explicit safetensors files as one store (later files do not override earlier ones).
    pub fn open_files(root: impl AsRef<Path>, paths: &[PathBuf]) -> Result<Self> {
        let mut store = WeightStore {
            root: root.as_ref().to_path_buf(),
            ..Default::default()
        };
        for p in paths {
            let f = Arc::new(SafetensorsFile::open(p)?);
            let i = store.files.len();
            for n in f.names() {
                store.index.entry(n.to_string()).or_insert(i);
            }
            store.files.push(f);
        }
        Ok(store)
    }

    /// The directory (or file) the store was opened from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether a tensor exists.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// All tensor names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    fn lookup(&self, name: &str) -> Result<(&Arc<SafetensorsFile>, &TensorInfo)> {
        let i = *self
            .index
            .get(name)
            .ok_or_else(|| ConvertError::MissingTensor {
                path: self.root.clone(),
                tensor: name.to_string(),
            })?;
        let f = &self.files[i];
        Ok((f, &f.tensors[name]))
    }

    /// The shape of a tensor as stored.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.lookup(name)?.1.shape.clone())
    }

    fn checked(
        &self,
        name: &str,
        expected: &[usize],
    ) -> Result<(&Arc<SafetensorsFile>, &TensorInfo)> {
        let (f, info) = self.lookup(name)?;
        if info.shape == [usize::MAX] {
            return Err(ConvertError::TensorDtype {
                path: f.path.clone(),
                tensor: name.into(),
                dtype: "integer".into(),
            });
        }
        if info.shape != expected {
            return Err(ConvertError::TensorShape {
                path: f.path.clone(),
                tensor: name.to_string(),
                expected: expected.to_vec(),
                got: info.shape.clone(),
            });
        }
        Ok((f, info))
    }

    /// Tensor `name`, which must have shape `expected`, as a lazily streamed constant of element
    /// type `dtype` (F16 or F32) viewed with shape `view` (same element count).
    pub fn constant(
        &self,
        name: &str,
        expected: &[usize],
        view: &[usize],
        dtype: DType,
    ) -> Result<ConstValue> {
        let (f, info) = self.checked(name, expected)?;
        debug_assert_eq!(
            expected.iter().product::<usize>(),
            view.iter().product::<usize>()
        );
        let src = MappedTensor {
            file: f.clone(),
            name: name.to_string(),
            info: info.clone(),
            dst: dtype,
        };
        Ok(ConstValue::from_source(
            TensorType::new(dtype, view.to_vec()),
            Arc::new(src),
        )?)
    }

    /// Tensor `name` (shape `expected`) read into memory as f32, for small tensors only.
    pub fn read_f32(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let (f, info) = self.checked(name, expected)?;
        let b = f.bytes(info);
        Ok(match info.dtype {
            SourceDType::F16 => b
                .chunks_exact(2)
                .map(|e| f16::from_le_bytes([e[0], e[1]]).to_f32())
                .collect(),
            SourceDType::BF16 => b
                .chunks_exact(2)
                .map(|e| bf16::from_le_bytes([e[0], e[1]]).to_f32())
                .collect(),
            SourceDType::F32 => b
                .chunks_exact(4)
                .map(|e| f32::from_le_bytes([e[0], e[1], e[2], e[3]]))
                .collect(),
        })
    }
}
