//! The CUDA backend (feature `cuda`): burn 0.21's CubeCL CUDA runtime with kernel fusion and
//! autotune — the portable GPU fallback (`sd --device cuda-burn`). The native engine
//! (`cuda_engine`, feature `cuda-engine`, `sd --device cuda`) is several times faster.
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
//! # Kernel caches
//!
//! The first prediction of a model compiles its kernels and autotunes its matmuls and
//! convolutions (minutes for a UNet). CubeCL keeps both on disk when a `cubecl.toml` in the
//! working directory or a parent sets `[compilation] cache = "local"` and `[autotune] cache =
//! "local"`; later processes then start in milliseconds.
//!
//! # Status
//!
//! On an H200 every package of Apple's tiny fixtures matches the PyTorch references (UNets
//! 62 dB program / 69 dB fp32, text encoder 70 / 78, VAE 69–77) and the full-size SD 1.5 UNet
//! 61.6 dB: see "sd-runtime on CUDA" in `docs/benchmarks.md`. [`CudaUnfused`] runs the same
//! ops without fusion, as a cross-check.

use crate::backend::RtBackend;
use crate::error::Result;
use crate::model::{LoadOptions, Model, Precision};
use std::path::Path;

/// The CUDA backend: burn-cuda with fusion, f32 storage, i32 indices.
pub type Cuda = burn_cuda::Cuda<f32, i32>;

/// A CUDA device (GPU index); `CudaDevice::default()` is GPU 0.
pub use burn_cuda::CudaDevice;

impl RtBackend for Cuda {}

/// The CUDA backend without kernel fusion: every op is its own CubeCL kernel and every
/// value is materialized (f32 storage, i32 indices). Slower than [`Cuda`]; a check on it.
pub type CudaUnfused = burn_cubecl::CubeBackend<cubecl::cuda::CudaRuntime, f32, i32, u8>;

impl RtBackend for CudaUnfused {}

impl Model<Cuda> {
    /// Loads a package on the first CUDA GPU with default options (passes on) in the given
    /// precision. For another GPU use [`Model::load`] with
    /// `LoadOptions::new(compute, CudaDevice::new(index))`.
    pub fn load_cuda(path: impl AsRef<Path>, compute: Precision) -> Result<Self> {
        Model::load(path, LoadOptions::new(compute, CudaDevice::default()))
    }
}
