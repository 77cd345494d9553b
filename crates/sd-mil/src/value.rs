//! Constant values: inline bytes, strings, lazily read blobs, or streamed sources.

use crate::blob::BlobFile;
use crate::{DType, MilError, TensorType};
use half::f16;
use std::borrow::Cow;
use std::fmt;
use std::io::Write;
use std::sync::Arc;

/// A producer of a constant's bytes, read only when the program is written or executed.
///
/// The converter implements this over memory-mapped checkpoint tensors so that writing a
/// package streams every weight into `weight.bin` without holding the model in memory.
pub trait TensorSource: Send + Sync + fmt::Debug {
    /// Length in bytes of the packed little-endian data this source produces.
    fn byte_len(&self) -> usize;
    /// Streams the packed little-endian data into `out`.
    fn write_to(&self, out: &mut dyn Write) -> std::io::Result<()>;
}

/// Where a constant's elements live.
#[derive(Clone)]
pub enum ConstData {
    /// Packed little-endian elements (sub-byte types packed LSB first, bool one byte each).
    Bytes(Arc<[u8]>),
    /// String elements.
    Strings(Arc<[String]>),
    /// A blob in a memory-mapped `weight.bin`, read on demand; `offset` is the blob's
    /// metadata offset.
    Blob {
        /// The memory-mapped file.
        file: Arc<BlobFile>,
        /// Metadata offset of the blob.
        offset: u64,
    },
    /// A streamed source.
    Source(Arc<dyn TensorSource>),
}

impl fmt::Debug for ConstData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConstData::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            ConstData::Strings(s) => write!(f, "Strings({s:?})"),
            ConstData::Blob { file, offset } => {
                write!(f, "Blob({}@{offset})", file.path().display())
            }
            ConstData::Source(s) => write!(f, "Source({s:?})"),
        }
    }
}

/// A typed constant tensor.
#[derive(Debug, Clone)]
pub struct ConstValue {
    /// Type of the value.
    pub ty: TensorType,
    /// Its elements.
    pub data: ConstData,
}

impl ConstValue {
    /// A constant from packed little-endian bytes; fails when the length does not match the type.
    pub fn from_bytes(ty: TensorType, bytes: impl Into<Arc<[u8]>>) -> Result<Self, MilError> {
        let bytes = bytes.into();
        if ty.dtype == DType::String || bytes.len() != ty.storage_len() {
            return Err(MilError::InvalidConst {
                reason: format!("{} bytes do not hold a {ty}", bytes.len()),
            });
        }
        Ok(ConstValue {
            ty,
            data: ConstData::Bytes(bytes),
        })
    }

    /// A constant whose bytes come from a streamed source; fails when the length does not match.
    pub fn from_source(ty: TensorType, source: Arc<dyn TensorSource>) -> Result<Self, MilError> {
        if source.byte_len() != ty.storage_len() {
            return Err(MilError::InvalidConst {
                reason: format!("source of {} bytes does not hold a {ty}", source.byte_len()),
            });
        }
        Ok(ConstValue {
            ty,
            data: ConstData::Source(source),
        })
    }

    /// A constant held by the blob at metadata offset `offset` of `file`; fails (with the
    /// reason) when there is no blob there, or its element type or size differs from `ty`.
    pub fn from_blob(ty: TensorType, file: &Arc<BlobFile>, offset: u64) -> Result<Self, String> {
        let blob = file.blob(offset).map_err(|e| e.to_string())?;
        if ty.dtype.blob_dtype() != Some(blob.dtype) {
            return Err(format!(
                "blob at offset {offset} is {:?}, the value is {ty}",
                blob.dtype
            ));
        }
        if blob.data.len() != ty.storage_len() {
            return Err(format!(
                "blob at offset {offset} holds {} bytes, {ty} needs {}",
                blob.data.len(),
                ty.storage_len()
            ));
        }
        Ok(ConstValue {
            ty,
            data: ConstData::Blob {
                file: file.clone(),
                offset,
            },
        })
    }

    /// An fp32 tensor.
    pub fn f32(shape: impl Into<Vec<usize>>, values: &[f32]) -> Result<Self, MilError> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self::from_bytes(TensorType::new(DType::F32, shape), bytes)
    }

    /// An fp16 tensor from f32 values (rounded to nearest).
    pub fn f16_from_f32(shape: impl Into<Vec<usize>>, values: &[f32]) -> Result<Self, MilError> {
        let bytes: Vec<u8> = values
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect();
        Self::from_bytes(TensorType::new(DType::F16, shape), bytes)
    }

    /// An int32 tensor.
    pub fn i32(shape: impl Into<Vec<usize>>, values: &[i32]) -> Result<Self, MilError> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self::from_bytes(TensorType::new(DType::I32, shape), bytes)
    }

    /// A bool tensor.
    pub fn bools(shape: impl Into<Vec<usize>>, values: &[bool]) -> Result<Self, MilError> {
        let bytes: Vec<u8> = values.iter().map(|&b| b as u8).collect();
        Self::from_bytes(TensorType::new(DType::Bool, shape), bytes)
    }

    /// A scalar fp32.
    pub fn scalar_f32(v: f32) -> Self {
        Self::f32([], &[v]).expect("a scalar always fits")
    }

    /// A scalar fp16.
    pub fn scalar_f16(v: f32) -> Self {
        Self::f16_from_f32([], &[v]).expect("a scalar always fits")
    }

    /// A scalar int32.
    pub fn scalar_i32(v: i32) -> Self {
        Self::i32([], &[v]).expect("a scalar always fits")
    }

    /// A scalar bool.
    pub fn scalar_bool(v: bool) -> Self {
        Self::bools([], &[v]).expect("a scalar always fits")
    }

    /// A 1-D int32 tensor.
    pub fn vec_i32(values: &[i32]) -> Self {
        Self::i32([values.len()], values).expect("a vector always fits")
    }

    /// A scalar string.
    pub fn string(s: impl Into<String>) -> Self {
        ConstValue {
            ty: TensorType::scalar(DType::String),
            data: ConstData::Strings(Arc::from(vec![s.into()])),
        }
    }

    /// The packed little-endian bytes (borrowed from the mapped file for blobs). Fails for
    /// strings and for unreadable blobs.
    pub fn bytes(&self) -> Result<Cow<'_, [u8]>, MilError> {
        match &self.data {
            ConstData::Bytes(b) => Ok(Cow::Borrowed(b)),
            ConstData::Strings(_) => Err(MilError::InvalidConst {
                reason: "a string constant has no byte form".into(),
            }),
            ConstData::Blob { file, offset } => {
                let blob = file.blob(*offset)?;
                if blob.data.len() != self.ty.storage_len() {
                    return Err(MilError::InvalidConst {
                        reason: format!(
                            "{}: blob at offset {offset} holds {} bytes, the type {} needs {}",
                            file.path().display(),
                            blob.data.len(),
                            self.ty,
                            self.ty.storage_len()
                        ),
                    });
                }
                Ok(Cow::Borrowed(blob.data))
            }
            ConstData::Source(s) => {
                let mut v = Vec::with_capacity(s.byte_len());
                s.write_to(&mut v).map_err(|e| MilError::InvalidConst {
                    reason: format!("reading source {s:?}: {e}"),
                })?;
                Ok(Cow::Owned(v))
            }
        }
    }

    /// The string elements, if this is a string constant.
    pub fn strings(&self) -> Option<&[String]> {
        match &self.data {
            ConstData::Strings(s) => Some(s),
            _ => None,
        }
    }

    /// The single string of a scalar string constant.
    pub fn as_str(&self) -> Option<&str> {
        self.strings().and_then(|s| s.first()).map(String::as_str)
    }

    /// Elements widened to i64 (integer and bool types only).
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        let b = self.bytes().ok()?;
        let v: Vec<i64> = match self.ty.dtype {
            DType::Bool | DType::U8 => b.iter().map(|&x| x as i64).collect(),
            DType::I8 => b.iter().map(|&x| x as i8 as i64).collect(),
            DType::I16 => b
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]) as i64)
                .collect(),
            DType::U16 => b
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as i64)
                .collect(),
            DType::I32 => b
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64)
                .collect(),
            DType::U32 => b
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as i64)
                .collect(),
            DType::I64 | DType::U64 => b
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            DType::U1 | DType::U2 | DType::U3 | DType::U4 | DType::U6 => {
                crate::blob::unpack_bits(&b, self.ty.dtype.bits(), self.ty.element_count())
                    .into_iter()
                    .map(|x| x as i64)
                    .collect()
            }
            _ => return None,
        };
        Some(v)
    }

    /// Elements converted to f32 (float and integer types).
    pub fn to_f32_vec(&self) -> Option<Vec<f32>> {
        if !self.ty.dtype.is_float() {
            return Some(self.to_i64_vec()?.into_iter().map(|x| x as f32).collect());
        }
        let mut out = vec![0.0f32; self.ty.element_count()];
        decode_f32_into(self.ty.dtype, &self.bytes().ok()?, &mut out)?;
        Some(out)
    }

    /// For a constant in a memory-mapped `weight.bin`: lets its pages leave this process's
    /// resident set after a one-time read (see [`BlobFile::release`]); otherwise nothing.
    pub fn release_pages(&self) {
        if let ConstData::Blob { file, offset } = &self.data
            && let Ok(blob) = file.blob(*offset)
        {
            file.release(&blob);
        }
    }

    /// Whether two constants have the same type and the same elements.
    pub fn same_contents(&self, other: &ConstValue) -> bool {
        if self.ty != other.ty {
            return false;
        }
        match (self.strings(), other.strings()) {
            (Some(a), Some(b)) => a == b,
            (None, None) => match (self.bytes(), other.bytes()) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            },
            _ => false,
        }
    }
}

/// Decodes the packed little-endian elements of a float type (`dtype`: f32, fp16, bf16, f64)
/// from `bytes` into `out` as f32, fp16 through the CPU's conversion instructions where it has
/// them. A piece of a constant's [`ConstValue::bytes`] decodes alone, so large constants can
/// be converted in parallel. `None` for other types or when the lengths differ.
pub fn decode_f32_into(dtype: DType, bytes: &[u8], out: &mut [f32]) -> Option<()> {
    let size = (dtype.bits() / 8) as usize;
    if !dtype.is_float() || bytes.len() != out.len() * size {
        return None;
    }
    match dtype {
        DType::F32 => decode_le::<4>(bytes, out, f32::from_le_bytes),
        DType::F16 => widen_f16(bytes, out),
        DType::BF16 => decode_le::<2>(bytes, out, |c| half::bf16::from_le_bytes(c).to_f32()),
        DType::F64 => decode_le::<8>(bytes, out, |c| f64::from_le_bytes(c) as f32),
        _ => return None,
    }
    Some(())
}

/// Decodes little-endian elements of `N` bytes from `b` into `out`.
fn decode_le<const N: usize>(b: &[u8], out: &mut [f32], decode: impl Fn([u8; N]) -> f32) {
    for (o, c) in out.iter_mut().zip(b.chunks_exact(N)) {
        *o = decode(c.try_into().expect("N bytes"));
    }
}

/// Widens little-endian fp16 bytes into `out` (one element per two bytes) with half's slice
/// conversion, which uses F16C on x86 when the CPU has it.
fn widen_f16(b: &[u8], out: &mut [f32]) {
    use half::slice::HalfFloatSliceExt;
    const CHUNK: usize = 1024;
    let mut buf = [f16::ZERO; CHUNK];
    for (o, c) in out.chunks_mut(CHUNK).zip(b.chunks(2 * CHUNK)) {
        let h = &mut buf[..o.len()];
        for (x, pair) in h.iter_mut().zip(c.chunks_exact(2)) {
            *x = f16::from_le_bytes([pair[0], pair[1]]);
        }
        h.convert_to_f32_slice(o);
    }
}
