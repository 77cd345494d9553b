//! Image generation over [`crate::Model`] and `sd-sched`: the CLIP tokenizer, text-to-image,
//! image-to-image, inpainting, ControlNet and the safety checker, from a folder of Core ML
//! models loaded once ([`Pipeline::load`]) and run many times ([`Pipeline::generate`]).
//!
//! The arithmetic follows diffusers' `StableDiffusionPipeline`, `…Img2ImgPipeline`,
//! `…InpaintPipeline` and `…ControlNetPipeline` step for step (noise drawn in the same order from
//! the same generator), so a float32 run reproduces diffusers' latents; the folder layouts are
//! Apple's (Swift `Resources/`, or `torch2coreml` / `sd convert -o` names, see [`Resources`]).
//!
//! ```no_run
//! use sd_runtime::pipeline::{Control, GenerationRequest, Pipeline, PipelineOptions, SchedulerKind};
//!
//! let mut pipe = Pipeline::load("Resources", PipelineOptions::default())?;
//! let mut request = GenerationRequest::new("a photo of an astronaut riding a horse on mars");
//! request.seed = 93;
//! request.steps = 20;
//! request.scheduler = SchedulerKind::DpmppKarras;
//! let result = pipe.generate(&request, &mut |p| {
//!     eprintln!("step {} of {}", p.step, p.total);
//!     Control::Continue
//! })?;
//! for image in &result.images {
//!     if let Some(rgb) = &image.image {
//!         println!("{}x{} image", rgb.width, rgb.height);
//!     }
//! }
//! # Ok::<(), sd_runtime::pipeline::PipelineError>(())
//! ```

mod batched;
mod error;
mod generate;
pub mod image;
mod latents;
mod request;
mod resources;
pub mod tokenizer;

pub use batched::{Row, Staged};
pub use error::{PipelineError, Result};
pub use generate::{Control, GeneratedImage, Generation, Progress, SafetyVerdict};
pub use request::{
    ControlInput, GenerationRequest, MAX_IMAGES, MAX_STEPS, SchedulerKind, parse_rng,
};
pub use resources::{Resources, UnetFiles};
pub use sd_sched::{RngKind, SchedulerConfig};

use crate::{Cpu, LoadOptions, Model, Precision, RtBackend};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tokenizer::ClipTokenizer;

/// The latent scale of SD 1.x / 2.x VAEs (`vae.config.scaling_factor`).
pub const SD_VAE_SCALING_FACTOR: f32 = 0.18215;

/// The scheduler configuration of Stable Diffusion 1.x (what Apple's Swift package hard-codes),
/// used when the folder has no `scheduler_config.json`.
pub const SD_SCHEDULER_CONFIG: &str = r#"{"_class_name": "PNDMScheduler", "beta_end": 0.012,
 "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
 "prediction_type": "epsilon", "set_alpha_to_one": false, "skip_prk_steps": true,
 "steps_offset": 1, "timestep_spacing": "leading", "trained_betas": null}"#;

/// How [`Pipeline::load`] loads and runs the models.
#[derive(Debug, Clone)]
pub struct PipelineOptions<B: RtBackend = Cpu> {
    /// Compute precision of every model.
    pub precision: Precision,
    /// The device the models run on.
    pub device: B::Device,
    /// Load each model only while it is needed and drop it after (Apple's `reduceMemory`).
    pub reduce_memory: bool,
    /// A tokenizer folder (vocab.json + merges.txt) instead of the resource folder's own.
    pub tokenizer: Option<PathBuf>,
    /// A scheduler configuration instead of the folder's (or SD 1.x's).
    pub scheduler_config: Option<SchedulerConfig>,
    /// The VAE latent scale; `None` reads `vae/config.json` in the folder or uses 0.18215.
    pub vae_scaling_factor: Option<f32>,
    /// What runs the models: the burn backend `B` on `device`, or the CUDA engine.
    pub engine: Engine,
}

/// What runs a pipeline's models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// [`Model`] on the pipeline's burn backend.
    #[default]
    Backend,
    /// The native CUDA engine on GPU `gpu` (`cuda_engine::CudaEngine`; builds without the
    /// `cuda-engine` feature fail to load with an error saying so).
    Cuda {
        /// GPU index.
        gpu: usize,
    },
}

impl Default for PipelineOptions<Cpu> {
    fn default() -> Self {
        PipelineOptions::new(Precision::Program, Default::default())
    }
}

impl<B: RtBackend> PipelineOptions<B> {
    /// Options with this precision on this device (everything else default).
    pub fn new(precision: Precision, device: B::Device) -> Self {
        PipelineOptions {
            precision,
            device,
            reduce_memory: false,
            tokenizer: None,
            scheduler_config: None,
            vae_scaling_factor: None,
            engine: Engine::Backend,
        }
    }
}

/// Which of the folder's models a slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Part {
    TextEncoder,
    Unet,
    ControlledUnet,
    VaeDecoder,
    VaeEncoder,
    SafetyChecker,
}

impl Part {
    fn label(self) -> &'static str {
        match self {
            Part::TextEncoder => "text encoder",
            Part::Unet => "UNet",
            Part::ControlledUnet => "controlled UNet",
            Part::VaeDecoder => "VAE decoder",
            Part::VaeEncoder => "VAE encoder",
            Part::SafetyChecker => "safety checker",
        }
    }
}

/// A Stable Diffusion pipeline over one folder of Core ML models.
pub struct Pipeline<B: RtBackend = Cpu> {
    resources: Resources,
    options: PipelineOptions<B>,
    tokenizer: ClipTokenizer,
    scheduler_config: SchedulerConfig,
    vae_scaling_factor: f32,
    loaded: HashMap<Part, Staged>,
    /// Loaded ControlNets by package path (names are matched loosely, so two spellings of one
    /// name share one model).
    controlnets: HashMap<PathBuf, Staged>,
}

impl<B: RtBackend> Pipeline<B> {
    /// Opens `folder` (see [`Resources`]) and, unless `reduce_memory`, loads the text encoder,
    /// the UNet and the VAE decoder now; other models load on first use.
    pub fn load(folder: impl AsRef<Path>, options: PipelineOptions<B>) -> Result<Self> {
        let resources = Resources::discover(folder)?;
        Self::from_resources(resources, options)
    }

    /// [`Pipeline::load`] from models already found.
    pub fn from_resources(resources: Resources, options: PipelineOptions<B>) -> Result<Self> {
        let tokenizer_dir = options
            .tokenizer
            .clone()
            .or_else(|| resources.tokenizer.clone())
            .ok_or_else(|| PipelineError::MissingTokenizer {
                looked_in: format!(
                    "{} and {}",
                    resources.root.display(),
                    resources.root.join("tokenizer").display()
                ),
            })?;
        let tokenizer = ClipTokenizer::from_dir(&tokenizer_dir)?;
        let scheduler_config = match (&options.scheduler_config, &resources.scheduler_config) {
            (Some(c), _) => c.clone(),
            (None, Some(path)) => read_scheduler_config(path)?,
            (None, None) => SchedulerConfig::from_json(SD_SCHEDULER_CONFIG)?,
        };
        let vae_scaling_factor = match options.vae_scaling_factor {
            Some(f) => f,
            None => read_vae_scaling_factor(&resources.root)?.unwrap_or(SD_VAE_SCALING_FACTOR),
        };
        // The models every generation needs must be there, whatever is loaded now.
        resources.require(
            &resources.text_encoder,
            "text encoder",
            "TextEncoder",
            "text_encoder",
        )?;
        resources.require(
            &resources.vae_decoder,
            "VAE decoder",
            "VAEDecoder",
            "vae_decoder",
        )?;
        if resources.unet.is_none() && resources.controlled_unet.is_none() {
            resources.require(
                &resources.unet,
                "UNet",
                "Unet (or UnetChunk1 + UnetChunk2)",
                "unet",
            )?;
        }
        let mut pipe = Pipeline {
            resources,
            options,
            tokenizer,
            scheduler_config,
            vae_scaling_factor,
            loaded: HashMap::new(),
            controlnets: HashMap::new(),
        };
        if !pipe.options.reduce_memory {
            for part in [Part::TextEncoder, Part::Unet, Part::VaeDecoder] {
                if pipe.paths(part).is_some() {
                    pipe.ensure(part)?;
                }
            }
        }
        Ok(pipe)
    }

    /// The models found in the folder.
    pub fn resources(&self) -> &Resources {
        &self.resources
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &ClipTokenizer {
        &self.tokenizer
    }

    /// The scheduler configuration schedulers are built from.
    pub fn scheduler_config(&self) -> &SchedulerConfig {
        &self.scheduler_config
    }

    /// The VAE latent scale in use.
    pub fn vae_scaling_factor(&self) -> f32 {
        self.vae_scaling_factor
    }

    fn paths(&self, part: Part) -> Option<Vec<PathBuf>> {
        let r = &self.resources;
        let one = |p: &Option<PathBuf>| p.clone().map(|p| vec![p]);
        let unet = |u: &Option<UnetFiles>| {
            u.as_ref()
                .map(|u| u.paths().into_iter().map(Path::to_path_buf).collect())
        };
        match part {
            Part::TextEncoder => one(&r.text_encoder),
            Part::Unet => unet(&r.unet),
            Part::ControlledUnet => unet(&r.controlled_unet),
            Part::VaeDecoder => one(&r.vae_decoder),
            Part::VaeEncoder => one(&r.vae_encoder),
            Part::SafetyChecker => one(&r.safety_checker),
        }
    }

    fn load_staged(&self, label: &str, paths: &[PathBuf]) -> Result<Staged> {
        let mut stages: Vec<Box<dyn crate::Predictor>> = Vec::new();
        for path in paths {
            let fail = |source| PipelineError::Load {
                model: label.to_string(),
                path: path.clone(),
                source: Box::new(source),
            };
            let precision = self.options.precision;
            match self.options.engine {
                Engine::Backend => {
                    let opts = LoadOptions::new(precision, self.options.device.clone());
                    stages.push(Box::new(Model::<B>::load(path, opts).map_err(fail)?));
                }
                #[cfg(feature = "cuda-engine")]
                Engine::Cuda { gpu } => {
                    let e = crate::cuda_engine::CudaEngine::load(path, gpu, precision)
                        .map_err(|e| fail(e.into()))?;
                    stages.push(Box::new(e));
                }
                #[cfg(not(feature = "cuda-engine"))]
                Engine::Cuda { .. } => {
                    return Err(fail(crate::RuntimeError::Gpu {
                        reason: "this build has no CUDA engine (feature `cuda-engine`)".into(),
                    }));
                }
            }
        }
        Ok(Staged {
            label: label.to_string(),
            stages,
        })
    }

    /// Loads `part` if it is not loaded yet.
    fn ensure(&mut self, part: Part) -> Result<()> {
        if self.loaded.contains_key(&part) {
            return Ok(());
        }
        let paths = self.paths(part).ok_or_else(|| PipelineError::MissingModel {
            folder: self.resources.root.clone(),
            model: part.label().to_string(),
            looked_for: match part {
                Part::VaeEncoder => "VAEEncoder.mlpackage or …_vae_encoder.mlpackage (image-to-image and inpainting need it)".into(),
                Part::SafetyChecker => "SafetyChecker.mlpackage or …_safety_checker.mlpackage".into(),
                Part::ControlledUnet => "ControlledUnet.mlpackage (or chunks) or …_control-unet.mlpackage (ControlNet needs it)".into(),
                _ => "its package".into(),
            },
        })?;
        let staged = self.load_staged(part.label(), &paths)?;
        tracing::debug!(model = part.label(), "loaded");
        self.loaded.insert(part, staged);
        Ok(())
    }

    /// The loaded model `part` (after [`Pipeline::ensure`]).
    fn model(&self, part: Part) -> &Staged {
        &self.loaded[&part]
    }

    /// Drops `part` when the pipeline loads models only while needed.
    fn release(&mut self, part: Part) {
        if self.options.reduce_memory {
            self.loaded.remove(&part);
        }
    }

    /// Loads the ControlNet called `name` if needed; returns its key in `controlnets`.
    fn ensure_controlnet(&mut self, name: &str) -> Result<PathBuf> {
        let path = self.resources.controlnet(name)?.to_path_buf();
        if !self.controlnets.contains_key(&path) {
            let staged =
                self.load_staged(&format!("ControlNet `{name}`"), std::slice::from_ref(&path))?;
            self.controlnets.insert(path.clone(), staged);
        }
        Ok(path)
    }
}

fn read_scheduler_config(path: &Path) -> Result<SchedulerConfig> {
    let text = read_small(path)?;
    SchedulerConfig::from_json(&text).map_err(|e| PipelineError::Config {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// `scaling_factor` from `vae/config.json` or `vae_config.json` in the folder, when present.
fn read_vae_scaling_factor(root: &Path) -> Result<Option<f32>> {
    for path in [root.join("vae/config.json"), root.join("vae_config.json")] {
        if !path.is_file() {
            continue;
        }
        let text = read_small(&path)?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| PipelineError::Config {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if let Some(f) = v.get("scaling_factor").and_then(|f| f.as_f64()) {
            if !(f.is_finite() && f > 0.0) {
                return Err(PipelineError::Config {
                    path,
                    reason: format!("scaling_factor {f} is not a positive number"),
                });
            }
            return Ok(Some(f as f32));
        }
    }
    Ok(None)
}

/// Reads a small text file (a config) through the pipeline's bounded reader: regular files
/// only, at most 1 MiB.
fn read_small(path: &Path) -> Result<String> {
    let err = |reason: String| PipelineError::Config {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = image::read_input_file(path, 1 << 20).map_err(|e| err(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| err(format!("not UTF-8 text: {e}")))
}
