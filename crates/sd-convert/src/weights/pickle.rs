//! PyTorch pickles (`.bin`, `.ckpt`, `.pt`, `.pth`) through the `pytorch-reader` crate.
//!
//! Opening parses the pickle only (tensor names, element types, shapes); a tensor's bytes are
//! read from the file when it is streamed into `weight.bin`. `pytorch-reader` hands a tensor
//! over as one `Vec<u8>` (gathered into row-major order, native-endian), so while a package is
//! written the converter holds one tensor of the checkpoint at a time — peak memory follows the
//! largest tensor (SD 1.x's token embedding, 152 MB in float32), not the model size.

use super::{ElementType, SourceDType};
use crate::error::{ConvertError, Result};
use pytorch_reader::{DType, PytorchReader, Tensor};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// One opened PyTorch pickle: its tensors by name, bytes not yet read.
pub struct PickleFile {
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
}

impl fmt::Debug for PickleFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PickleFile({}, {} tensors)",
            self.path.display(),
            self.tensors.len()
        )
    }
}

/// The prefix a (Lightning / LDM) checkpoint nests its weights under.
const STATE_DICT: &str = "state_dict.";

impl PickleFile {
    /// Parses the pickle of `path` (any container `torch.save` writes). Checkpoints that nest
    /// their weights under `state_dict` (LDM `.ckpt` files) are unwrapped, as diffusers does;
    /// other values saved beside the tensors (`global_step`, …) are ignored.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        // A FIFO or a device would block or never end inside the reader.
        sd_mil::files::open_regular(&path, u64::MAX)?;
        let reader = PytorchReader::new(&path).map_err(|e| ConvertError::Pickle {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let mut tensors = reader.into_tensors();
        while tensors.keys().any(|k| k.starts_with(STATE_DICT)) {
            tensors = tensors
                .into_iter()
                .filter_map(|(k, t)| k.strip_prefix(STATE_DICT).map(|s| (s.to_string(), t)))
                .collect();
        }
        Ok(PickleFile { path, tensors })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Names of the tensors in the file.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Element type and shape of tensor `name`, if the file has it.
    pub fn info(&self, name: &str) -> Option<(ElementType, &[usize])> {
        let t = self.tensors.get(name)?;
        let dtype = match t.dtype() {
            DType::F16 => ElementType::Float(SourceDType::F16),
            DType::BF16 => ElementType::Float(SourceDType::BF16),
            DType::F32 => ElementType::Float(SourceDType::F32),
            other => ElementType::Other(format!("{other:?}")),
        };
        Some((dtype, t.shape()))
    }

    /// Bytes `range` of tensor `name` (row-major, native-endian as `pytorch-reader` returns
    /// them: little-endian on every target this converter runs on), handed to `f` in chunks of
    /// at most `chunk` bytes. The whole tensor is read from the file first.
    pub(super) fn stream(
        &self,
        name: &str,
        range: std::ops::Range<usize>,
        chunk: usize,
        f: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let t = self.tensors.get(name).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{}: no tensor `{name}`", self.path.display()),
            )
        })?;
        let bytes = t
            .read()
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))?;
        if range.end > bytes.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "{}: tensor `{name}` gave {} bytes, {} expected",
                    self.path.display(),
                    bytes.len(),
                    range.end
                ),
            ));
        }
        for c in bytes[range].chunks(chunk.max(1)) {
            f(c)?;
        }
        Ok(())
    }
}
