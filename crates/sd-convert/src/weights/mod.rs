//! Weights in: memory-mapped safetensors files and PyTorch pickles, checked when opened,
//! streamed into `weight.bin`.
//!
//! A [`WeightStore`] holds the tensors of one network under diffusers' names (`unet/`,
//! `vae/`, … of a diffusers folder, or one part of a single-file checkpoint renamed by
//! [`crate::checkpoint`]). Each name points at a [`TensorView`]: a tensor of a [`WeightFile`],
//! whole or a contiguous part of it, seen with a shape of the same element count — enough for
//! the reshapes and splits that the original-checkpoint layout needs without copying. A tensor
//! becomes a [`ConstValue`] whose bytes are produced by [`StreamedTensor`] only when the
//! package is written, converting fp32/bf16 → fp16 (or the reverse) chunk by chunk, so peak
//! memory does not grow with the model size.

mod pickle;
mod safetensors;

pub use self::pickle::PickleFile;
pub use self::safetensors::{SafetensorsFile, TensorInfo};

use crate::error::{ConvertError, Result};
use half::{bf16, f16};
use sd_mil::{ConstValue, DType, TensorSource, TensorType};
use serde_json::Value;
use std::collections::HashMap;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Floating-point element types read from checkpoints.
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
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            SourceDType::F16 | SourceDType::BF16 => 2,
            SourceDType::F32 => 4,
        }
    }
}

/// The element type of a stored tensor: a weight type, or another one (integer buffers,
/// float64) that is listed but not converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElementType {
    /// F16, BF16 or F32.
    Float(SourceDType),
    /// Any other type, by the file format's name for it.
    Other(String),
}

/// A file of tensors.
#[derive(Debug)]
pub enum WeightFile {
    /// A memory-mapped safetensors file.
    Safetensors(SafetensorsFile),
    /// A PyTorch pickle (`torch.save`).
    Pickle(PickleFile),
}

/// File name endings read as PyTorch pickles.
const PICKLE_EXTENSIONS: &[&str] = &["bin", "ckpt", "pt", "pth"];

impl WeightFile {
    /// Opens `path` as a PyTorch pickle when it ends in `.bin`, `.ckpt`, `.pt` or `.pth` or
    /// starts like one (a ZIP archive or a pickle stream), else as safetensors.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let pickle = match ext.as_deref() {
            Some("safetensors") => false,
            Some(e) if PICKLE_EXTENSIONS.contains(&e) => true,
            _ => looks_like_pickle(path),
        };
        if pickle {
            Ok(WeightFile::Pickle(PickleFile::open(path)?))
        } else {
            Ok(WeightFile::Safetensors(SafetensorsFile::open(path)?))
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        match self {
            WeightFile::Safetensors(f) => f.path(),
            WeightFile::Pickle(f) => f.path(),
        }
    }

    /// Names of the tensors in the file (order unspecified).
    pub fn names(&self) -> Vec<&str> {
        match self {
            WeightFile::Safetensors(f) => f.names().collect(),
            WeightFile::Pickle(f) => f.names().collect(),
        }
    }

    /// Element type and shape of tensor `name`, if the file has it.
    pub fn info(&self, name: &str) -> Option<(ElementType, Vec<usize>)> {
        match self {
            WeightFile::Safetensors(f) => f.info(name).map(|i| (i.dtype.clone(), i.shape.clone())),
            WeightFile::Pickle(f) => f.info(name).map(|(d, s)| (d, s.to_vec())),
        }
    }

    fn stream(
        &self,
        name: &str,
        bytes: Range<usize>,
        chunk: usize,
        f: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        match self {
            WeightFile::Safetensors(file) => {
                let info = file.info(name).ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("{}: no tensor `{name}`", file.path().display()),
                    )
                })?;
                file.stream(info, bytes, chunk, f)
            }
            WeightFile::Pickle(file) => file.stream(name, bytes, chunk, f),
        }
    }
}

/// A ZIP archive (PyTorch ≥ 1.6), a pickle stream (protocol ≥ 2, the legacy format) or a TAR
/// archive (before PyTorch 0.1.10).
fn looks_like_pickle(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 262];
    let n = sd_mil::files::open_regular(path, u64::MAX)
        .ok()
        .and_then(|(mut f, _)| f.read(&mut head).ok())
        .unwrap_or(0);
    let head = &head[..n];
    head.starts_with(b"PK\x03\x04")
        || head.first() == Some(&0x80)
        || head.get(257..262) == Some(b"ustar".as_slice())
}

/// One tensor as a store sees it: a stored tensor of a file, or the contiguous elements
/// `elems` of it, with shape `shape` (its element count equals the range's length).
#[derive(Debug, Clone)]
pub struct TensorView {
    file: Arc<WeightFile>,
    stored: String,
    dtype: ElementType,
    stored_shape: Vec<usize>,
    elems: Range<usize>,
    shape: Vec<usize>,
}

impl TensorView {
    /// The whole tensor `name` of `file`, if present.
    pub fn whole(file: &Arc<WeightFile>, name: &str) -> Option<Self> {
        let (dtype, shape) = file.info(name)?;
        let count = shape.iter().product();
        Some(TensorView {
            file: file.clone(),
            stored: name.to_string(),
            dtype,
            stored_shape: shape.clone(),
            elems: 0..count,
            shape,
        })
    }

    /// The same elements seen with `shape`; None when the element count differs.
    pub fn reshaped(&self, shape: Vec<usize>) -> Option<Self> {
        (shape.iter().product::<usize>() == self.elems.len()).then(|| TensorView {
            shape,
            ..self.clone()
        })
    }

    /// Rows `rows` of the first axis (e.g. the query third of a fused q/k/v projection); None
    /// when the view has no axis or the rows do not exist.
    pub fn rows(&self, rows: Range<usize>) -> Option<Self> {
        let (&n, rest) = self.shape.split_first()?;
        if rows.start > rows.end || rows.end > n {
            return None;
        }
        let row: usize = rest.iter().product();
        let mut shape = self.shape.clone();
        shape[0] = rows.len();
        Some(TensorView {
            elems: self.elems.start + rows.start * row..self.elems.start + rows.end * row,
            shape,
            ..self.clone()
        })
    }

    /// The shape this view presents.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The tensor's name in its file.
    pub fn stored_name(&self) -> &str {
        &self.stored
    }

    /// The tensor's shape in its file.
    pub fn stored_shape(&self) -> &[usize] {
        &self.stored_shape
    }

    /// The file holding the tensor.
    pub fn file(&self) -> &Arc<WeightFile> {
        &self.file
    }

    fn float(&self) -> Result<SourceDType> {
        match &self.dtype {
            ElementType::Float(d) => Ok(*d),
            ElementType::Other(t) => Err(ConvertError::TensorDtype {
                path: self.file.path().to_path_buf(),
                tensor: self.stored.clone(),
                dtype: t.clone(),
            }),
        }
    }

    /// Streams the view's bytes (stored element type) to `f` in chunks.
    fn stream(
        &self,
        es: usize,
        chunk: usize,
        f: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        self.file.stream(
            &self.stored,
            self.elems.start * es..self.elems.end * es,
            chunk,
            f,
        )
    }
}

/// A view of a weight file converted to `dst` while it is streamed into `weight.bin`.
#[derive(Debug)]
pub struct StreamedTensor {
    view: TensorView,
    src: SourceDType,
    dst: DType,
}

/// Elements converted per chunk while streaming.
const CHUNK: usize = 1 << 20;

fn decode(src: SourceDType, e: &[u8]) -> f32 {
    match src {
        SourceDType::F16 => f16::from_le_bytes([e[0], e[1]]).to_f32(),
        SourceDType::BF16 => bf16::from_le_bytes([e[0], e[1]]).to_f32(),
        SourceDType::F32 => f32::from_le_bytes([e[0], e[1], e[2], e[3]]),
    }
}

impl TensorSource for StreamedTensor {
    fn byte_len(&self) -> usize {
        self.view.elems.len() * if self.dst == DType::F32 { 4 } else { 2 }
    }

    fn write_to(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let es = self.src.size();
        let same = matches!(
            (self.src, self.dst),
            (SourceDType::F16, DType::F16) | (SourceDType::F32, DType::F32)
        );
        let mut buf = Vec::with_capacity(if same { 0 } else { CHUNK * 4 });
        self.view.stream(es, CHUNK * es, &mut |chunk| {
            if same {
                return out.write_all(chunk);
            }
            buf.clear();
            for e in chunk.chunks_exact(es) {
                let v = decode(self.src, e);
                if self.dst == DType::F32 {
                    buf.extend_from_slice(&v.to_le_bytes());
                } else {
                    buf.extend_from_slice(&f16::from_f32(v).to_le_bytes());
                }
            }
            out.write_all(&buf)
        })
    }
}

/// The tensors of one network under diffusers' names.
#[derive(Debug, Default)]
pub struct WeightStore {
    root: PathBuf,
    tensors: HashMap<String, TensorView>,
}

/// File stems diffusers and transformers use for a component's weights.
pub const WEIGHT_STEMS: &[&str] = &["diffusion_pytorch_model", "model", "pytorch_model"];

/// The file names a diffusers component folder's weights may have, in the order
/// [`WeightStore::open_component`] looks for them (diffusers' order): for each variant
/// (`variant`, or with `None` the plain files then `fp16`), safetensors before PyTorch
/// pickles, each stem as a single file then as a shard index (`….index.json`, whose
/// `weight_map` names the shards). The first name present is the one read.
pub fn component_weight_names(variant: Option<&str>) -> Vec<String> {
    let variants: Vec<Option<&str>> = match variant {
        Some(v) => vec![Some(v)],
        None => vec![None, Some("fp16")],
    };
    let mut names = Vec::new();
    for v in &variants {
        for ext in ["safetensors", "bin"] {
            for stem in WEIGHT_STEMS {
                let base = match v {
                    Some(v) => format!("{stem}.{v}.{ext}"),
                    None => format!("{stem}.{ext}"),
                };
                let index = format!("{base}.index.json");
                names.push(base);
                names.push(index);
            }
        }
    }
    names
}

/// The shard file names a `….index.json` weight index names (its `weight_map` values,
/// sorted, each once).
pub fn shard_names(index: &Value) -> Option<Vec<String>> {
    let map = index.get("weight_map").and_then(Value::as_object)?;
    let mut files: Vec<String> = map
        .values()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    files.sort();
    files.dedup();
    Some(files)
}

impl WeightStore {
    /// Opens the weights of a diffusers component directory (`unet/`, `text_encoder/`, …):
    /// the first of [`component_weight_names`] present — `<stem>[.<variant>].safetensors`, a
    /// sharded `<stem>[.<variant>].safetensors.index.json`, or, when no safetensors file exists
    /// for that variant, the PyTorch pickle `<stem>[.<variant>].bin` (sharded: `.bin.index.json`).
    /// With `variant` None the plain files are preferred and the `fp16` variant taken otherwise.
    pub fn open_component(dir: impl AsRef<Path>, variant: Option<&str>) -> Result<Self> {
        let dir = dir.as_ref();
        for name in component_weight_names(variant) {
            let path = dir.join(&name);
            if path.is_file() {
                return if name.ends_with(".index.json") {
                    Self::open_index(dir, &path)
                } else {
                    Self::open_files(dir, &[path])
                };
            }
        }
        let others: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| {
                let mut v: Vec<String> = rd
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| {
                        n.ends_with(".safetensors")
                            || PICKLE_EXTENSIONS
                                .iter()
                                .any(|e| n.ends_with(&format!(".{e}")))
                    })
                    .collect();
                v.sort();
                v
            })
            .unwrap_or_default();
        let hint = if others.is_empty() {
            String::new()
        } else {
            format!(" (found {})", others.join(", "))
        };
        Err(ConvertError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "no safetensors weights or PyTorch pickles{} ({}{}.safetensors or .bin){hint}",
                    variant
                        .map(|v| format!(" of variant `{v}`"))
                        .unwrap_or_default(),
                    WEIGHT_STEMS.join("|"),
                    variant.map(|v| format!(".{v}")).unwrap_or_default(),
                ),
            ),
        })
    }

    fn open_index(dir: &Path, index: &Path) -> Result<Self> {
        let text = sd_mil::files::read_regular_string(index, sd_mil::files::MAX_JSON_BYTES)?;
        let v: Value = serde_json::from_str(&text).map_err(|e| ConvertError::Config {
            path: index.into(),
            message: e.to_string(),
        })?;
        let files = shard_names(&v).ok_or_else(|| ConvertError::Config {
            path: index.into(),
            message: "missing key `weight_map`".into(),
        })?;
        // Shard names come from the file: none may climb out of the component folder (a
        // shard the user linked from elsewhere is theirs to choose).
        let paths = files
            .iter()
            .map(|f| sd_mil::files::join_relative(dir, f))
            .collect::<Result<Vec<PathBuf>, _>>()?;
        Self::open_files(dir, &paths)
    }

    /// Opens explicit weight files (safetensors or PyTorch pickles, see [`WeightFile::open`]) as
    /// one store, keeping their tensor names (later files do not override earlier ones).
    pub fn open_files(root: impl AsRef<Path>, paths: &[PathBuf]) -> Result<Self> {
        let files = paths
            .iter()
            .map(|p| WeightFile::open(p).map(Arc::new))
            .collect::<Result<Vec<_>>>()?;
        let mut store = WeightStore::new(root);
        for f in &files {
            for n in f.names() {
                if !store.contains(n)
                    && let Some(v) = TensorView::whole(f, n)
                {
                    store.insert(n.to_string(), v);
                }
            }
        }
        Ok(store)
    }

    /// An empty store; `root` is the folder or file named in errors about missing tensors.
    pub fn new(root: impl AsRef<Path>) -> Self {
        WeightStore {
            root: root.as_ref().to_path_buf(),
            tensors: HashMap::new(),
        }
    }

    /// Adds (or replaces) tensor `name`.
    pub fn insert(&mut self, name: String, view: TensorView) {
        self.tensors.insert(name, view);
    }

    /// The directory (or file) the store was opened from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether a tensor exists.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// All tensor names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Tensor `name` as the store sees it.
    pub fn view(&self, name: &str) -> Result<&TensorView> {
        self.tensors
            .get(name)
            .ok_or_else(|| ConvertError::MissingTensor {
                path: self.root.clone(),
                tensor: name.to_string(),
            })
    }

    /// The shape of a tensor.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.view(name)?.shape.clone())
    }

    /// Tensor `name` with shape `expected` and a float element type. Errors name the file and
    /// the tensor's name there.
    fn checked(&self, name: &str, expected: &[usize]) -> Result<(&TensorView, SourceDType)> {
        let v = self.view(name)?;
        let src = v.float()?;
        if v.shape != expected {
            return Err(ConvertError::TensorShape {
                path: v.file.path().to_path_buf(),
                tensor: v.stored.clone(),
                expected: expected.to_vec(),
                got: v.shape.clone(),
            });
        }
        Ok((v, src))
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
        let (v, src) = self.checked(name, expected)?;
        debug_assert_eq!(
            expected.iter().product::<usize>(),
            view.iter().product::<usize>()
        );
        let source = StreamedTensor {
            view: v.clone(),
            src,
            dst: dtype,
        };
        Ok(ConstValue::from_source(
            TensorType::new(dtype, view.to_vec()),
            Arc::new(source),
        )?)
    }

    /// Tensor `name` (shape `expected`) read into memory as f32, for small tensors only.
    pub fn read_f32(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let (v, src) = self.checked(name, expected)?;
        let es = src.size();
        let mut out = Vec::with_capacity(v.elems.len());
        v.stream(es, CHUNK * es, &mut |chunk| {
            out.extend(chunk.chunks_exact(es).map(|e| decode(src, e)));
            Ok(())
        })
        .map_err(|e| ConvertError::Io {
            path: v.file.path().to_path_buf(),
            source: e,
        })?;
        Ok(out)
    }
}
