//! `sd-runtime`: executes Core ML ML Programs (.mlpackage) on burn.
//!
//! [`Model::load`] reads a package through `sd-mil`, runs the graph [`passes`] (group-norm
//! and split-einsum attention fusion), decompresses constexpr weights once, leaves the other
//! large constants in the mapped `weight.bin` until a prediction first reads them
//! ([`kernels::ConstTensor`]) and plans the ops into indexed value slots, freeing each
//! intermediate after its last use. Programs that run many predictions may call
//! [`allocator::keep_freed_memory`] once at start (the `sd` binary does). [`Model::predict`] takes and returns named host [`Tensor`]s.
//!
//! Kernels sit behind one boundary: a [`kernels::Registry`] keyed by op type (replace one
//! entry to plug in a faster attention, conv, matmul or group norm) over the
//! [`backend::RtBackend`] trait: burn's NdArray on the CPU ([`Cpu`]) and, with the `cuda` feature,
//! burn-cuda on NVIDIA GPUs (`Cuda`, `Model::load_cuda`; how precision is honoured there: the
//! `cuda` module). The `cuda-engine` feature adds the native CUDA engine
//! (`cuda_engine::CudaEngine`: fp16 storage, cuBLAS, cuDNN, NVRTC kernels, one memory plan
//! and one CUDA graph per prediction). Both the [`Model`] and the engine are [`Predictor`]s,
//! which is what the pipelines run (`pipeline::PipelineOptions::engine`).
//!
//! ```no_run
//! use sd_runtime::{Model, Precision, Tensor};
//! use std::collections::HashMap;
//! let model = Model::load_cpu("TextEncoder.mlpackage", Precision::Program).unwrap();
//! let ids = Tensor::f32([1, 77], vec![0.0; 77]);
//! let out = model.predict(&HashMap::from([("input_ids".to_string(), ids)])).unwrap();
//! println!("{:?}", out["last_hidden_state"].shape);
//! ```

pub mod allocator;
pub mod backend;
#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(feature = "cuda-engine")]
pub mod cuda_engine;
mod error;
pub mod generic;
mod input_check;
pub mod kernels;
mod model;
pub mod passes;
pub mod pipeline;
mod predictor;
mod psnr;
mod tensor;

pub use backend::{Cpu, RtBackend};
#[cfg(feature = "cuda")]
pub use cuda::{Cuda, CudaDevice, CudaUnfused};
pub use error::{Result, RuntimeError};
pub use model::{LoadOptions, Model, Precision, Produced};
pub use predictor::Predictor;
pub use psnr::psnr;
pub use tensor::{HostDType, Tensor, TensorData};
