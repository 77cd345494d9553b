//! Kernels of the [`crate::Cpu`] backend (burn-ndarray, f32): the hot ops on slices, with
//! GEMM from the `gemm` crate and rayon threading. `impl RtBackend for Cpu` in `backend.rs`
//! routes its hooks here; every other backend keeps the generic burn implementations.

pub mod act;
pub mod array;
pub mod attention;
pub mod attention_lanes;
pub mod conv;
pub mod gemm;
pub mod group_norm;
pub mod layer_norm;
pub mod round;
pub mod simd;
pub mod softmax;
pub mod upsample;
pub mod winograd;
