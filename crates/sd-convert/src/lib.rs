//! `sd-convert`: Core ML MIL programs for Stable Diffusion networks, built directly from
//! diffusers weights — no tracing, no Python.
//!
//! Each network is a readable builder mirroring the diffusers module tree ([`clip`],
//! [`unet`], [`vae`], [`attention`], [`safety_checker`], [`projection`]) over a small layer
//! vocabulary ([`nn`]); weights are memory-mapped ([`weights`]) and streamed into `weight.bin` when sd-mil writes the package.
//! [`pipeline`] ties a diffusers folder, the options of Apple's `torch2coreml` and the output
//! names together; [`checkpoint`] presents a single-file LDM checkpoint (`.safetensors`,
//! `.ckpt`) as the same components, and [`weights`] also reads PyTorch pickles.

pub mod attention;
pub mod checkpoint;
pub mod clip;
pub mod config;
pub mod error;
pub mod nn;
pub mod pipeline;
pub mod projection;
pub mod safety_checker;
pub mod unet;
pub mod vae;
pub mod weights;

pub use attention::AttentionImpl;
pub use error::{ConvertError, Result};
pub use nn::Precision;
pub use pipeline::{Component, ConvertOptions, DeploymentTarget, Pipeline};
