//! The backend boundary: which burn backend runs the kernels, and the few hooks a backend
//! must (or may) provide beyond burn's own ops.
//!
//! Kernels are plain functions over burn's primitive tensor ops (`B::float_*`), so every
//! burn backend runs every op. Hot ops can be replaced per backend in two ways: override a
//! hook below (group norm, attention, f16 rounding), or replace the op's entry in the
//! [`crate::kernels::Registry`].

use burn_tensor::backend::Backend;
use burn_tensor::ops::FloatTensor;
use burn_tensor::{FloatDType, TensorMetadata};

/// The CPU backend: burn's NdArray backend in f32.
pub type Cpu = burn_ndarray::NdArray<f32>;

/// A burn backend the runtime can execute on.
pub trait RtBackend: Backend {
    /// Rounds every element to the nearest fp16 value (overflow → ±inf), keeping the
    /// tensor's storage type. This is how fp16 programs run on f32-only backends.
    fn round_f16(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_cast(Self::float_cast(x, FloatDType::F16), FloatDType::F32)
    }
}

impl RtBackend for Cpu {
    fn round_f16(x: FloatTensor<Self>) -> FloatTensor<Self> {
        use burn_ndarray::NdArrayTensor;
        match x {
            NdArrayTensor::F32(storage) => {
                let mut a = storage.into_owned();
                a.par_mapv_inplace(|v| half::f16::from_f32(v).to_f32());
                NdArrayTensor::F32(a.into())
            }
            other => other,
        }
    }
}

/// Dimensions of a float primitive.
pub fn dims<B: Backend>(t: &FloatTensor<B>) -> Vec<usize> {
    t.shape().to_vec()
}
