//! Value types: an element type and a static shape.

use crate::DType;

/// The type of a MIL value: a tensor of `dtype` with a static `shape` (empty for a scalar).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TensorType {
    /// Element type.
    pub dtype: DType,
    /// Dimensions, outermost first; empty for a scalar.
    pub shape: Vec<usize>,
}

impl TensorType {
    /// A tensor type of the given element type and shape.
    pub fn new(dtype: DType, shape: impl Into<Vec<usize>>) -> Self {
        TensorType {
            dtype,
            shape: shape.into(),
        }
    }

    /// A scalar (rank 0) of the given element type.
    pub fn scalar(dtype: DType) -> Self {
        TensorType {
            dtype,
            shape: Vec::new(),
        }
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements (1 for a scalar).
    pub fn element_count(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes the elements occupy in packed storage.
    pub fn storage_len(&self) -> usize {
        self.dtype.storage_len(self.element_count())
    }

    /// The same shape with another element type.
    pub fn with_dtype(&self, dtype: DType) -> Self {
        TensorType {
            dtype,
            shape: self.shape.clone(),
        }
    }
}

impl std::fmt::Display for TensorType {
    /// Formats as MIL text does: `(1, 4, 16, 16, fp16)`, or `fp32` for a scalar.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.shape.is_empty() {
            return write!(f, "{}", self.dtype);
        }
        f.write_str("(")?;
        for d in &self.shape {
            write!(f, "{d}, ")?;
        }
        write!(f, "{})", self.dtype)
    }
}
