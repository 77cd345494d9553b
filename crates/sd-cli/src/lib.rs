//! `sd_cli`: the application layer of the toolkit — what needs several crates at once.
//!
//! The `sd` binary, `cargo xtask convert` and (later) the pipeline's `--model` and the server
//! call these functions; none of them prints. Progress comes back through a callback
//! (`&mut dyn FnMut(ConversionEvent)`), results as reports, failures as typed errors.
//!
//! - [`conversion`]: a conversion *job* — which networks, compress before chunk, writing the
//!   packages, the Swift `Resources/` bundle and the correctness check — run by [`run_job`].
//! - [`check`]: the correctness check (every package against an fp32 ORIGINAL-attention build
//!   of the same network, and optionally diffusers itself via [`torch_reference`]).
//! - [`model_cache`]: convert-on-first-use — a diffusers folder or checkpoint becomes a cached
//!   folder of packages plus the tokenizer/scheduler/VAE configs image generation reads.
//! - [`hub`]: Hugging Face Hub ids fetched into (or, offline, found in) the shared Hub cache.
//! - [`swift_resources`]: Apple's Swift CLI `Resources/` layout.
//!
//! ```no_run
//! use sd_cli::conversion::{CheckOptions, ConversionJob, ConversionOptions, run_job};
//! use sd_convert::{Component, ConvertOptions};
//! let job = ConversionJob {
//!     model: "fixtures/models/sd1-tiny".into(),
//!     config: None,
//!     components: vec![Component::TextEncoder, Component::Unet],
//!     output: "out".into(),
//!     options: ConversionOptions {
//!         convert: ConvertOptions {
//!             model_version: "sd1-tiny".into(),
//!             ..ConvertOptions::default()
//!         },
//!         check: Some(CheckOptions::default()),
//!         ..ConversionOptions::default()
//!     },
//! };
//! let report = run_job(&job, &mut |event| eprintln!("{event:?}")).unwrap();
//! for p in &report.packages {
//!     println!("{} {:.1} MB", p.path.display(), p.weight_bytes as f64 / 1e6);
//! }
//!
//! // Convert-on-first-use: the folder the pipeline loads.
//! let entry = sd_cli::prepare(
//!     std::path::Path::new("fixtures/models/sd1-tiny"),
//!     &sd_cli::CacheOptions::default(),
//! )
//! .unwrap();
//! println!("{} (converted now: {})", entry.folder.display(), entry.converted);
//! ```

pub mod analysis;
pub mod check;
pub mod conversion;
pub mod hub;
pub mod model_cache;
pub mod server;
pub mod swift_resources;
pub mod torch_reference;

mod fs_util;

pub use conversion::{
    ConversionError, ConversionEvent, ConversionJob, ConversionOptions, ConversionReport, run_job,
};
pub use fs_util::{PathError, prepare_output_folder};
pub use model_cache::{CacheEntry, CacheError, CacheOptions, prepare};
