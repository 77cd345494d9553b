//! Convert-on-first-use: [`prepare`] turns a diffusers folder or a single-file checkpoint into
//! a folder the pipeline loads — the packages image generation needs (text encoder, UNet, VAE
//! decoder and encoder, the safety checker when the model has one; on request a control-unet
//! and ControlNets), named as `sd convert -o` names them, plus the tokenizer, scheduler, VAE
//! and feature-extractor configs ([`EXTRA_FILES`]) — and keeps it for the next call.
//!
//! The entry lives in `<cache root>/models/<key>` (root: [`CacheOptions::cache_root`], else
//! [`default_cache_root`]); the key ([`key`] module) changes with the model's files, the
//! options and the crate version. Entries are built aside and renamed into place with their
//! [`CacheMarker`] written last ([`staging`]), so a killed run never leaves an entry that
//! counts as complete.

mod extras;
pub mod key;
mod marker;
pub mod staging;

pub use extras::{EXTRA_FILES, ExtrasError};
pub use marker::{CacheMarker, MARKER};

use crate::conversion::{ConversionError, ConversionEvent, ConversionJob, ConversionOptions};
use crate::conversion::{open_pipeline, run_job};
use crate::fs_util::{PathError, at};
use crate::hub::{ResolveError, resolve};
use sd_convert::{AttentionImpl, Component, ConvertOptions, Pipeline, Precision};
use staging::Staging;
use std::path::{Path, PathBuf};

/// How [`prepare`] converts, and where it caches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheOptions {
    /// Attention form of the UNet and ControlNets (default SPLIT_EINSUM).
    pub attention: AttentionImpl,
    /// Weights and activations fp16 (default) or fp32.
    pub precision: Precision,
    /// Latent (height, width) instead of the UNet's `sample_size` (image = latent × 8).
    pub latent_size: Option<(usize, usize)>,
    /// UNet batch 1 instead of 2 (no classifier-free guidance batch).
    pub unet_batch_one: bool,
    /// ControlNet folders (or cached Hub ids); when any, a control-unet is converted as well.
    pub controlnets: Vec<PathBuf>,
    /// For a single-file checkpoint: a diffusers folder with its configs and tokenizer.
    pub config: Option<PathBuf>,
    /// The cache root; `None` uses [`default_cache_root`]. Entries go to `<root>/models/`.
    pub cache_root: Option<PathBuf>,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            attention: AttentionImpl::SplitEinsum,
            precision: Precision::Float16,
            latent_size: None,
            unet_batch_one: false,
            controlnets: Vec::new(),
            config: None,
            cache_root: None,
        }
    }
}

/// A ready cache entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// The folder holding the packages and configs.
    pub folder: PathBuf,
    /// Whether this call converted the model (`false`: an earlier entry was reused).
    pub converted: bool,
    /// What the entry holds.
    pub marker: CacheMarker,
}

/// Why a model could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The model is neither a local folder or file nor in the Hub cache.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// No cache root: none given and neither `SD_CACHE_DIR`, `XDG_CACHE_HOME` nor `HOME` set.
    #[error("no cache folder: set SD_CACHE_DIR (or XDG_CACHE_HOME or HOME)")]
    NoCacheRoot,
    /// A file-system operation failed.
    #[error(transparent)]
    Io(#[from] PathError),
    /// The conversion failed.
    #[error("converting {} into the model cache", model.display())]
    Convert {
        /// The model.
        model: PathBuf,
        /// The cause.
        #[source]
        source: ConversionError,
    },
    /// The tokenizer and configs could not be written.
    #[error(transparent)]
    Extras(#[from] ExtrasError),
}

/// The default cache root: `$SD_CACHE_DIR`, else `$XDG_CACHE_HOME/sd`, else `~/.cache/sd`.
pub fn default_cache_root() -> Result<PathBuf, CacheError> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("SD_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|x| x.join("sd")))
        .or_else(|| var("HOME").map(|h| h.join(".cache/sd")))
        .ok_or(CacheError::NoCacheRoot)
}

/// Prepares `model` (a diffusers folder, a single-file checkpoint or a Hub id in the Hugging
/// Face cache): converts it only when no complete entry exists, and returns the entry
/// ([`CacheEntry::folder`] is what the pipeline loads).
pub fn prepare(model: &Path, options: &CacheOptions) -> Result<CacheEntry, CacheError> {
    prepare_with(model, options, &mut |_| {})
}

/// [`prepare`], reporting the conversion (when one runs) through `on_event`.
pub fn prepare_with(
    model: &Path,
    options: &CacheOptions,
    on_event: &mut dyn FnMut(ConversionEvent),
) -> Result<CacheEntry, CacheError> {
    let plan = Plan::new(model, options)?;
    if let Some(marker) = CacheMarker::read_complete(&plan.entry, &plan.key) {
        return Ok(plan.reused(marker));
    }
    let models = plan
        .entry
        .parent()
        .expect("an entry has a parent")
        .to_path_buf();
    std::fs::create_dir_all(&models).map_err(at("creating", &models))?;
    let staging = Staging::acquire(&models, &plan.key)?;
    // Another process may have finished the entry while we waited for the lock.
    if let Some(marker) = CacheMarker::read_complete(&plan.entry, &plan.key) {
        return Ok(plan.reused(marker));
    }
    let marker = plan.build(staging.dir(), options, on_event)?;
    staging.commit(&plan.entry)?;
    Ok(CacheEntry {
        folder: plan.entry,
        converted: true,
        marker,
    })
}

/// Where `model`'s entry for `options` is (or would be), without converting anything.
pub fn entry_dir(model: &Path, options: &CacheOptions) -> Result<PathBuf, CacheError> {
    Ok(Plan::new(model, options)?.entry)
}

/// One model's entry: where it goes and what goes into it.
struct Plan {
    /// The model's canonical path.
    model: PathBuf,
    key: String,
    /// `<root>/models/<key>`.
    entry: PathBuf,
    /// The options as hashed.
    description: String,
    /// The ControlNets' canonical folders.
    controlnets: Vec<PathBuf>,
    convert: ConvertOptions,
}

impl Plan {
    fn new(model: &Path, o: &CacheOptions) -> Result<Self, CacheError> {
        let model = key::canonical(&resolve(model)?)?;
        let stem = key::readable_stem(&model);
        let convert = ConvertOptions {
            attention: o.attention,
            precision: o.precision,
            latent_h: o.latent_size.map(|s| s.0),
            latent_w: o.latent_size.map(|s| s.1),
            unet_batch_one: o.unet_batch_one,
            model_version: stem.clone(),
            ..ConvertOptions::default()
        };
        let description = format!("{convert:?}");
        let mut lines = vec![
            format!("sd-cli {}", env!("CARGO_PKG_VERSION")),
            format!("options {description}"),
            format!("model {}", model.display()),
        ];
        key::fingerprint_files(&model, &mut lines)?;
        if let Some(c) = &o.config {
            let c = key::canonical(c)?;
            lines.push(format!("config {}", c.display()));
            key::fingerprint_files(&c, &mut lines)?;
        }
        let mut controlnets = Vec::new();
        for c in &o.controlnets {
            let c = key::canonical(&resolve(c)?)?;
            lines.push(format!("controlnet {}", c.display()));
            key::fingerprint_files(&c, &mut lines)?;
            controlnets.push(c);
        }
        let key = format!("{stem}-{}", key::hash_lines(&lines));
        let root = match &o.cache_root {
            Some(r) => r.clone(),
            None => default_cache_root()?,
        };
        Ok(Plan {
            entry: root.join("models").join(&key),
            model,
            key,
            description,
            convert,
            controlnets,
        })
    }

    fn reused(self, marker: CacheMarker) -> CacheEntry {
        CacheEntry {
            folder: self.entry,
            converted: false,
            marker,
        }
    }

    /// Converts into `dir` and writes the extras, then the marker.
    fn build(
        &self,
        dir: &Path,
        o: &CacheOptions,
        on_event: &mut dyn FnMut(ConversionEvent),
    ) -> Result<CacheMarker, CacheError> {
        let failed = |source| CacheError::Convert {
            model: self.model.clone(),
            source,
        };
        let pipeline = open_pipeline(&self.model, o.config.as_deref()).map_err(failed)?;
        let job = ConversionJob {
            model: self.model.clone(),
            config: o.config.clone(),
            components: components(&pipeline, &self.controlnets),
            output: dir.to_path_buf(),
            options: ConversionOptions {
                convert: self.convert.clone(),
                force: true,
                ..ConversionOptions::default()
            },
        };
        let report = run_job(&job, on_event).map_err(failed)?;
        let source = if pipeline.single_file.is_some() {
            o.config.as_deref()
        } else {
            Some(self.model.as_path())
        };
        let mut marker = CacheMarker::new(
            self.key.clone(),
            self.model.display().to_string(),
            self.description.clone(),
        );
        marker.files = extras::write_extras(source, &pipeline, dir)?;
        marker.packages = report
            .packages
            .iter()
            .filter_map(|p| p.path.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        marker.write(dir)?;
        Ok(marker)
    }
}

/// The networks image generation needs from `pipeline`.
fn components(pipeline: &Pipeline, controlnets: &[PathBuf]) -> Vec<Component> {
    let mut c = vec![
        Component::TextEncoder,
        Component::Unet,
        Component::VaeDecoder,
        Component::VaeEncoder,
    ];
    if pipeline.has("safety_checker") {
        c.push(Component::SafetyChecker);
    }
    if !controlnets.is_empty() {
        c.push(Component::ControlUnet);
        c.extend(controlnets.iter().cloned().map(Component::ControlNet));
    }
    c
}
