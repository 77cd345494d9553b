//! Moving between burn-ndarray tensors and plain f32 slices.

use burn_ndarray::NdArrayTensor;
use burn_tensor::TensorMetadata;
use ndarray::{ArcArray, ArrayView, IxDyn};

/// A read-only view of an f32 tensor (any strides); `None` for other element types.
pub fn view(t: &NdArrayTensor) -> Option<ArrayView<'_, f32, IxDyn>> {
    match t {
        NdArrayTensor::F32(s) => Some(s.view()),
        _ => None,
    }
}

/// Whether nothing else holds the tensor's buffer (an in-place kernel then needs no copy).
pub fn is_unique(t: &NdArrayTensor) -> bool {
    match t {
        NdArrayTensor::F32(s) => s.is_unique(),
        _ => false,
    }
}

/// Whether the tensor holds f32 elements.
pub fn is_f32(t: &NdArrayTensor) -> bool {
    matches!(t, NdArrayTensor::F32(_))
}

/// The owned, row-major array of an f32 tensor: no copy when the tensor is uniquely owned
/// and already row-major. Panics on other element types (check with [`is_f32`]).
pub fn into_standard(t: NdArrayTensor) -> ArcArray<f32, IxDyn> {
    match t {
        NdArrayTensor::F32(s) => {
            let a = s.into_owned();
            if a.is_standard_layout() {
                a
            } else {
                a.as_standard_layout().into_owned().into_shared()
            }
        }
        other => panic!("expected an f32 tensor, got {:?}", other.dtype()),
    }
}

/// `t[.., start..end, ..]` along `axis` as a view of the same shared buffer (no copy).
/// Panics on other element types (check with [`is_f32`]).
pub fn narrowed(t: NdArrayTensor, axis: usize, start: usize, end: usize) -> NdArrayTensor {
    match t {
        NdArrayTensor::F32(s) => {
            let mut a = s.into_shared();
            a.slice_axis_inplace(ndarray::Axis(axis), ndarray::Slice::from(start..end));
            from_array(a)
        }
        other => panic!("expected an f32 tensor, got {:?}", other.dtype()),
    }
}

/// A row-major f32 tensor of the given shape over `data`.
pub fn tensor(data: Vec<f32>, shape: &[usize]) -> NdArrayTensor {
    let a = ArcArray::from_shape_vec(IxDyn(shape), data).expect("length matches shape");
    NdArrayTensor::F32(a.into())
}

/// A tensor from an owned array.
pub fn from_array(a: ArcArray<f32, IxDyn>) -> NdArrayTensor {
    NdArrayTensor::F32(a.into())
}
