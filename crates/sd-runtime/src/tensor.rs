//! A small host tensor: a shape and f32, f16 or i32 elements, convertible to and from
//! safetensors files.

use crate::error::{Result, RuntimeError};
use half::f16;
use safetensors::{Dtype, SafeTensors, View};
use std::borrow::Cow;
use std::path::Path;

/// The largest safetensors file [`Tensor::read_safetensors`] reads into memory (8 GiB).
pub const MAX_SAFETENSORS_BYTES: u64 = 8 << 30;

/// Host elements.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// fp32 elements.
    F32(Vec<f32>),
    /// fp16 elements.
    F16(Vec<f16>),
    /// int32 elements.
    I32(Vec<i32>),
}

/// A host tensor: row-major elements and a shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Elements, row-major.
    pub data: TensorData,
}

/// Element type of a host tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostDType {
    /// fp32.
    F32,
    /// fp16.
    F16,
    /// int32.
    I32,
}

impl std::fmt::Display for HostDType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HostDType::F32 => "fp32",
            HostDType::F16 => "fp16",
            HostDType::I32 => "int32",
        })
    }
}

impl Tensor {
    /// An fp32 tensor; panics when the length does not match the shape.
    pub fn f32(shape: impl Into<Vec<usize>>, data: Vec<f32>) -> Self {
        let shape = shape.into();
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "shape {shape:?} vs {} elements",
            data.len()
        );
        Tensor {
            shape,
            data: TensorData::F32(data),
        }
    }

    /// An fp16 tensor from f32 values (rounded to nearest even).
    pub fn f16_from_f32(shape: impl Into<Vec<usize>>, data: &[f32]) -> Self {
        let shape = shape.into();
        assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor {
            shape,
            data: TensorData::F16(data.iter().map(|v| f16::from_f32(*v)).collect()),
        }
    }

    /// An int32 tensor.
    pub fn i32(shape: impl Into<Vec<usize>>, data: Vec<i32>) -> Self {
        let shape = shape.into();
        assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor {
            shape,
            data: TensorData::I32(data),
        }
    }

    /// Element type.
    pub fn dtype(&self) -> HostDType {
        match self.data {
            TensorData::F32(_) => HostDType::F32,
            TensorData::F16(_) => HostDType::F16,
            TensorData::I32(_) => HostDType::I32,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.data {
            TensorData::F32(v) => v.len(),
            TensorData::F16(v) => v.len(),
            TensorData::I32(v) => v.len(),
        }
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements as f32.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            TensorData::F32(v) => v.clone(),
            TensorData::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            TensorData::I32(v) => v.iter().map(|x| *x as f32).collect(),
        }
    }

    /// Reads every tensor of a safetensors file (F32, F16, BF16, F64, I32, I64, U8 are accepted;
    /// BF16 and F64 become F32, I64 and U8 (images) become I32), in file order.
    pub fn read_safetensors(path: impl AsRef<Path>) -> Result<Vec<(String, Tensor)>> {
        let path = path.as_ref();
        let err = |reason: String| RuntimeError::Safetensors {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = sd_mil::files::read_regular(path, MAX_SAFETENSORS_BYTES)
            .map_err(|e| err(e.to_string()))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| err(e.to_string()))?;
        let mut names: Vec<(usize, String)> = Vec::new();
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| err(e.to_string()))?;
        for (name, info) in meta.tensors() {
            names.push((info.data_offsets.0, name));
        }
        names.sort();
        let mut out = Vec::new();
        for (_, name) in names {
            let v = st.tensor(&name).map_err(|e| err(e.to_string()))?;
            let shape = v.shape().to_vec();
            let d = v.data();
            let t = match v.dtype() {
                Dtype::F32 => Tensor::f32(
                    shape,
                    d.chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                ),
                Dtype::F16 => Tensor {
                    shape,
                    data: TensorData::F16(
                        d.chunks_exact(2)
                            .map(|c| f16::from_le_bytes([c[0], c[1]]))
                            .collect(),
                    ),
                },
                Dtype::BF16 => Tensor::f32(
                    shape,
                    d.chunks_exact(2)
                        .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                        .collect(),
                ),
                Dtype::F64 => Tensor::f32(
                    shape,
                    d.chunks_exact(8)
                        .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                        .collect(),
                ),
                Dtype::I32 => Tensor::i32(
                    shape,
                    d.chunks_exact(4)
                        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                ),
                Dtype::I64 => {
                    // Narrowed to int32 (what Core ML's int features hold) only when exact.
                    let wide = d
                        .chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap()));
                    let mut narrow = Vec::with_capacity(d.len() / 8);
                    for (i, v) in wide.enumerate() {
                        narrow.push(i32::try_from(v).map_err(|_| {
                            err(format!(
                                "int64 tensor `{name}`: element {i} = {v} does not fit in int32"
                            ))
                        })?);
                    }
                    Tensor::i32(shape, narrow)
                }
                Dtype::U8 => Tensor::i32(shape, d.iter().map(|&b| i32::from(b)).collect()),
                other => {
                    return Err(err(format!(
                        "tensor `{name}` has unsupported dtype {other:?}"
                    )));
                }
            };
            out.push((name, t));
        }
        Ok(out)
    }

    /// Named tensors as the bytes of a safetensors file (for writers that place files
    /// themselves, e.g. atomically).
    pub fn to_safetensors_bytes<'a>(
        tensors: impl IntoIterator<Item = (&'a str, &'a Tensor)>,
    ) -> Result<Vec<u8>> {
        let views: Vec<(&str, &Tensor)> = tensors.into_iter().collect();
        safetensors::serialize(views, None).map_err(|e| RuntimeError::Safetensors {
            path: "<memory>".into(),
            reason: e.to_string(),
        })
    }

    /// Writes named tensors to a safetensors file: through a temporary file and a rename, and
    /// never over anything but a regular file.
    pub fn write_safetensors<'a>(
        path: impl AsRef<Path>,
        tensors: impl IntoIterator<Item = (&'a str, &'a Tensor)>,
    ) -> Result<()> {
        let path = path.as_ref();
        let bytes = Self::to_safetensors_bytes(tensors)?;
        sd_mil::files::write_atomic(path, &bytes).map_err(|e| RuntimeError::Safetensors {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }
}

impl View for &Tensor {
    fn dtype(&self) -> Dtype {
        match self.data {
            TensorData::F32(_) => Dtype::F32,
            TensorData::F16(_) => Dtype::F16,
            TensorData::I32(_) => Dtype::I32,
        }
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Owned(match &self.data {
            TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::F16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        })
    }
    fn data_len(&self) -> usize {
        self.len()
            * if matches!(self.data, TensorData::F16(_)) {
                2
            } else {
                4
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_round_trip() {
        let dir = std::env::temp_dir().join(format!("sd-runtime-st-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.safetensors");
        let a = Tensor::f32([2, 2], vec![1.0, 2.0, 3.0, -4.0]);
        let b = Tensor::f16_from_f32([3], &[0.5, 1.0, 65504.0]);
        let c = Tensor::i32([1], vec![7]);
        Tensor::write_safetensors(&p, [("a", &a), ("b", &b), ("c", &c)]).unwrap();
        let back = Tensor::read_safetensors(&p).unwrap();
        let get = |n: &str| back.iter().find(|(k, _)| k == n).unwrap().1.clone();
        assert_eq!(get("a"), a);
        assert_eq!(get("b"), b);
        assert_eq!(get("c"), c);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn int64_tensors_narrow_only_when_exact() {
        let dir = std::env::temp_dir().join(format!("sd-rt-i64-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("ids.safetensors");
        let write = |values: &[i64]| {
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            let view = safetensors::tensor::TensorView::new(Dtype::I64, vec![values.len()], &bytes)
                .unwrap();
            safetensors::serialize_to_file([("ids", view)], None, &p).unwrap();
        };
        write(&[0, 49407, -5]);
        let t = Tensor::read_safetensors(&p).unwrap();
        assert_eq!(t[0].1, Tensor::i32([3], vec![0, 49407, -5]));
        write(&[1, 1 << 40]);
        let e = Tensor::read_safetensors(&p).unwrap_err().to_string();
        assert!(
            e.contains("ids") && e.contains("element 1") && e.contains("int32"),
            "{e}"
        );
        // An output path that is a directory is refused, not replaced.
        let e = Tensor::write_safetensors(&dir, [("ids", &t[0].1)]).unwrap_err();
        assert!(e.to_string().contains("refusing"), "{e}");
        std::fs::remove_dir_all(dir).ok();
    }
}
