//! The CUDA backend (feature `cuda`): burn 0.21's CubeCL CUDA runtime with kernel fusion and
//! autotune.
//!
//! Kernels are generated as C++ and compiled by NVRTC on the GPU machine at run time, and every
//! CUDA library is loaded with `dlopen` when first used, so building needs no CUDA toolkit;
//! running needs the driver (`libcuda`) and NVRTC. The first run of a shape autotunes its
//! kernels (slow: `CUBECL_AUTOTUNE_LEVEL=minimal` shortens it; the results are cached on disk
//! for later runs).
//!
//! # Precision
//!
//! Tensors are stored and computed in f32, as on the CPU backend, and the model's
//! [`Precision`] decides the rest:
//!
//! - [`Precision::Program`]: every value the program types fp16 is rounded to fp16 at its op's
//!   output (a cast to f16 and back, which burn's fusion folds into the producing element-wise
//!   kernel where it can). Overflow to ±inf and fp16 rounding behave as in Core ML, and CPU and
//!   CUDA compute the same function. Matrix products and convolutions run on the tensor cores in
//!   TF32 (CubeCL's choice for f32 operands), whose 10-bit mantissa equals fp16's.
//! - [`Precision::Fp32`]: no rounding; element-wise work in f32, matrix products and
//!   convolutions as above.
//!
//! Native f16 storage (half the memory traffic) is not used: the kernels create f32 constants,
//! masks and fills, and CubeCL's binary kernels read both operands in the left operand's
//! element type, so f16 and f32 tensors must not meet. Native f16 needs a backend hook that
//! names the compute element type for the kernels' own tensors.
//!
//! # Status
//!
//! On an H200 the text encoder and both VAE halves match the PyTorch references (67–79 dB) but
//! the UNets do not (about 12 dB): see "sd-runtime on CUDA" in `docs/benchmarks.md`.

use crate::backend::RtBackend;
use crate::error::Result;
use crate::model::{LoadOptions, Model, Precision};
use std::path::Path;

/// The CUDA backend: burn-cuda with fusion, f32 storage, i32 indices.
pub type Cuda = burn_cuda::Cuda<f32, i32>;

/// A CUDA device (GPU index); `CudaDevice::default()` is GPU 0.
pub use burn_cuda::CudaDevice;

impl RtBackend for Cuda {}

impl Model<Cuda> {
    /// Loads a package on the first CUDA GPU with default options (passes on) in the given
    /// precision. For another GPU use [`Model::load`] with
    /// `LoadOptions::new(compute, CudaDevice::new(index))`.
    pub fn load_cuda(path: impl AsRef<Path>, compute: Precision) -> Result<Self> {
        Model::load(path, LoadOptions::new(compute, CudaDevice::default()))
    }
}
