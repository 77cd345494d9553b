//! The generic backend: burn-ndarray on the CPU with none of the [`crate::Cpu`] kernel
//! overrides, so every [`RtBackend`] hook but fp16 rounding (burn-ndarray has no f16 storage)
//! takes its default path built from burn's own ops — the path GPU backends take. Tests run
//! models on it to prove those paths right without a GPU.

use crate::backend::{Cpu, RtBackend};
use burn_tensor::ops::FloatTensor;

/// burn-ndarray (f32, i32 indices) with every kernel hook at its generic default.
pub type GenericCpu = burn_ndarray::NdArray<f32, i32>;

impl RtBackend for GenericCpu {
    fn round_f16(x: FloatTensor<Self>) -> FloatTensor<Self> {
        // Both backends store floats as burn-ndarray tensors.
        <Cpu as RtBackend>::round_f16(x)
    }
}
