//! Single-file Stable Diffusion 1.x/2.x checkpoints (`.safetensors`, `.ckpt`) in the original
//! LDM / CompVis layout, seen as diffusers components.
//!
//! One file holds the three networks under `model.diffusion_model.` (UNet),
//! `first_stage_model.` (VAE) and `cond_stage_model.transformer.` (SD 1.x CLIP) or
//! `cond_stage_model.model.` (SD 2.x OpenCLIP), plus training leftovers (noise schedule
//! buffers, EMA counters) that are ignored. [`SingleFile`] renames each network's tensors to
//! diffusers' names — the mapping diffusers' `single_file` loaders apply
//! ([`unet`], [`vae`], [`clip`]) — as [`TensorView`]s of the file, so the weights still stream
//! from the memory map (or, for pickles, one tensor at a time).
//!
//! Configurations come from a diffusers folder given with the file (its `<part>/config.json`,
//! as diffusers' `from_single_file(config=…)`), else from the tensors' shapes with the standard
//! values of SD 1.x/2.x for what shapes cannot tell. The model kind is told as diffusers tells
//! it: a 9-channel `conv_in` is an inpainting UNet; a 1024-wide cross-attention (or an OpenCLIP
//! text encoder) is SD 2.x, whose non-inpainting default is SD 2.1's 768-pixel v-prediction.

mod clip;
mod unet;
mod vae;

pub use clip::TextLayout;

use crate::config::{self, ClipTextConfig, UNetConfig, VaeConfig};
use crate::error::{ConvertError, Result};
use crate::weights::{TensorView, WeightFile, WeightStore};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Prefix of the UNet's tensors.
pub const UNET_PREFIX: &str = "model.diffusion_model.";
/// Prefixes of the VAE's tensors, in the order they are looked for.
pub const VAE_PREFIXES: &[&str] = &["first_stage_model.", "vae."];
/// Prefix of SD 1.x's CLIP text encoder.
pub const CLIP_PREFIX: &str = "cond_stage_model.transformer.";
/// Prefix of SD 2.x's OpenCLIP text encoder.
pub const OPEN_CLIP_PREFIX: &str = "cond_stage_model.model.";

/// Stable Diffusion generation of a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// SD 1.x: CLIP ViT-L/14 text encoder, 768-wide cross-attention.
    Sd1,
    /// SD 2.x: OpenCLIP ViT-H/14 text encoder, 1024-wide cross-attention.
    Sd2,
}

/// What the UNet predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prediction {
    /// The noise.
    Epsilon,
    /// The velocity v (SD 2.x 768 models).
    VPrediction,
}

/// What a single-file checkpoint is, as diffusers infers it from the tensors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kind {
    /// SD 1.x or 2.x.
    pub base: Base,
    /// A 9-channel (latents, mask, masked-image latents) inpainting UNet.
    pub inpainting: bool,
    /// The scheduler's prediction type.
    pub prediction: Prediction,
    /// Default image size in pixels (512, or 768 for SD 2.x v-prediction).
    pub image_size: usize,
}

impl Kind {
    /// Whether the UNet predicts v.
    pub fn v_prediction(&self) -> bool {
        self.prediction == Prediction::VPrediction
    }
}

/// The tensors of one network in the file: names with the network's prefix removed.
#[derive(Debug)]
pub struct Part<'a> {
    file: &'a Arc<WeightFile>,
    what: &'static str,
    prefix: &'static str,
    names: BTreeSet<&'a str>,
}

impl<'a> Part<'a> {
    fn new(
        file: &'a Arc<WeightFile>,
        names: &[&'a str],
        what: &'static str,
        prefix: &'static str,
    ) -> Self {
        Part {
            file,
            what,
            prefix,
            names: names
                .iter()
                .filter_map(|n| n.strip_prefix(prefix))
                .collect(),
        }
    }

    /// Whether the network has no tensors in the file.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The network's tensor names, without the prefix, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().copied()
    }

    /// Whether tensor `name` (without the prefix) exists.
    pub fn has(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// Whether some tensor name (without the prefix) starts with `prefix`.
    pub fn has_prefix(&self, prefix: &str) -> bool {
        self.names
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .next()
            .is_some_and(|n| n.starts_with(prefix))
    }

    /// How many distinct numbers `N` follow `prefix` in names `<prefix>N.…`.
    pub fn count_indices(&self, prefix: &str) -> usize {
        self.names
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|n| n.starts_with(prefix))
            .filter_map(|n| n[prefix.len()..].split('.').next()?.parse::<usize>().ok())
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// The stored shape of tensor `name` (without the prefix).
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.has(name)
            .then(|| self.file.info(&format!("{}{name}", self.prefix)))
            .flatten()
            .map(|(_, s)| s)
    }

    /// The shape of tensor `name`, which must exist with `ndim` dimensions.
    pub fn shape_of(&self, name: &str, ndim: usize) -> Result<Vec<usize>> {
        let full = format!("{}{name}", self.prefix);
        match self.shape(name) {
            Some(s) if s.len() == ndim => Ok(s),
            Some(s) => Err(infer_error(
                self,
                format!("tensor `{full}` has shape {s:?}, expected {ndim} dimensions"),
            )),
            None => Err(infer_error(self, format!("no tensor `{full}`"))),
        }
    }

    /// Tensor `name` (without the prefix) as a view of the file.
    pub fn view(&self, name: &str) -> Option<TensorView> {
        TensorView::whole(self.file, &format!("{}{name}", self.prefix))
    }
}

/// An error about the network `part` of the checkpoint.
fn infer_error(part: &Part<'_>, message: String) -> ConvertError {
    ConvertError::Checkpoint {
        path: part.file.path().to_path_buf(),
        message: format!("{} (`{}*`): {message}", part.what, part.prefix),
    }
}

/// A single-file checkpoint opened as diffusers components (`unet`, `vae`, `text_encoder`).
#[derive(Debug)]
pub struct SingleFile {
    file: Arc<WeightFile>,
    config_dir: Option<PathBuf>,
    kind: Kind,
    text: Option<TextLayout>,
    vae_prefix: Option<&'static str>,
    has_unet: bool,
}

/// The component names a single file provides.
pub const COMPONENTS: &[&str] = &["text_encoder", "unet", "vae"];

impl SingleFile {
    /// Opens `path` (safetensors or a PyTorch pickle, weights possibly under `state_dict`).
    /// `config_dir`, a diffusers folder, supplies `<component>/config.json` (and
    /// `scheduler/scheduler_config.json`'s prediction type) in place of inferred ones.
    pub fn open(path: impl AsRef<Path>, config_dir: Option<&Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = Arc::new(WeightFile::open(path)?);
        let names = file.names();
        let any = |p: &str| names.iter().any(|n| n.starts_with(p));
        let has_unet = any(UNET_PREFIX);
        let vae_prefix = VAE_PREFIXES.iter().copied().find(|p| any(p));
        let text = if any(CLIP_PREFIX) {
            Some(TextLayout::Clip)
        } else if any(OPEN_CLIP_PREFIX) {
            Some(TextLayout::OpenClip)
        } else {
            None
        };
        if !has_unet && vae_prefix.is_none() && text.is_none() {
            let mut sample: Vec<&str> = names.clone();
            sample.sort_unstable();
            sample.truncate(3);
            return Err(ConvertError::Checkpoint {
                path: path.to_path_buf(),
                message: format!(
                    "not a Stable Diffusion 1.x/2.x single-file checkpoint: no tensor under `{UNET_PREFIX}`, \
                     `first_stage_model.` or `cond_stage_model.` ({} tensors, e.g. {})",
                    names.len(),
                    sample
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        if let Some(n) = names.iter().find(|n| {
            n.starts_with("conditioner.embedders.")
                || n.starts_with("model.diffusion_model.label_emb.")
        }) {
            return Err(ConvertError::Checkpoint {
                path: path.to_path_buf(),
                message: format!(
                    "`{n}`: SDXL and class-conditioned (e.g. x4 upscaler) single files are not supported; \
                     only SD 1.x/2.x"
                ),
            });
        }
        let shape = |n: &str| file.info(n).map(|(_, s)| s);
        let inpainting = shape(&format!("{UNET_PREFIX}input_blocks.0.0.weight"))
            .is_some_and(|s| s.len() == 4 && s[1] == 9);
        let wide_context = shape(&format!(
            "{UNET_PREFIX}input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"
        ))
        .is_some_and(|s| s.last() == Some(&1024));
        let base = if wide_context || text == Some(TextLayout::OpenClip) {
            Base::Sd2
        } else {
            Base::Sd1
        };
        let mut prediction = if base == Base::Sd2 && !inpainting {
            Prediction::VPrediction
        } else {
            Prediction::Epsilon
        };
        if let Some(dir) = config_dir {
            let sched = dir.join("scheduler/scheduler_config.json");
            if sched.is_file() {
                let v: Value = config::load(&sched)?;
                match v.get("prediction_type").and_then(Value::as_str) {
                    Some("v_prediction") => prediction = Prediction::VPrediction,
                    Some("epsilon") | None => prediction = Prediction::Epsilon,
                    Some(other) => {
                        return Err(ConvertError::Unsupported {
                            path: sched,
                            key: "prediction_type".into(),
                            value: other.into(),
                            why: "epsilon or v_prediction".into(),
                        });
                    }
                }
            }
        }
        let image_size = if prediction == Prediction::VPrediction {
            768
        } else {
            512
        };
        drop(names);
        Ok(SingleFile {
            file,
            config_dir: config_dir.map(Path::to_path_buf),
            kind: Kind {
                base,
                inpainting,
                prediction,
                image_size,
            },
            text,
            vae_prefix,
            has_unet,
        })
    }

    /// The checkpoint file.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// What the checkpoint is.
    pub fn kind(&self) -> &Kind {
        &self.kind
    }

    /// The text encoder's layout, when the file has one.
    pub fn text_layout(&self) -> Option<TextLayout> {
        self.text
    }

    /// Whether the file holds `component` (`unet`, `vae` or `text_encoder`).
    pub fn has(&self, component: &str) -> bool {
        match component {
            "unet" => self.has_unet,
            "vae" => self.vae_prefix.is_some(),
            "text_encoder" => self.text.is_some(),
            _ => false,
        }
    }

    fn part<'a>(&'a self, names: &[&'a str], component: &str) -> Result<Part<'a>> {
        let (what, prefix) = match component {
            "unet" => ("UNet", Some(UNET_PREFIX)),
            "vae" => ("VAE", self.vae_prefix),
            "text_encoder" => (
                "text encoder",
                match self.text {
                    Some(TextLayout::Clip) => Some(CLIP_PREFIX),
                    Some(TextLayout::OpenClip) => Some(OPEN_CLIP_PREFIX),
                    None => None,
                },
            ),
            _ => ("", None),
        };
        let part = prefix.map(|p| Part::new(&self.file, names, what, p));
        match part {
            Some(p) if !p.is_empty() => Ok(p),
            _ => Err(ConvertError::Checkpoint {
                path: self.path().to_path_buf(),
                message: format!(
                    "the single-file checkpoint holds no `{component}` (it has: {})",
                    COMPONENTS
                        .iter()
                        .filter(|c| self.has(c))
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        }
    }

    /// The diffusers configuration of `component` read off the tensors (see the module docs).
    pub fn inferred_config(&self, component: &str) -> Result<Value> {
        let names = self.file.names();
        let part = self.part(&names, component)?;
        match component {
            "unet" => {
                let scale = match self.part(&names, "vae") {
                    Ok(v) => 1 << vae::levels(&v).saturating_sub(1),
                    Err(_) => 8,
                };
                unet::infer_config(&part, &self.kind, scale)
            }
            "vae" => vae::infer_config(&part, &self.kind),
            _ => clip::infer_config(&part, self.text.unwrap_or(TextLayout::Clip)),
        }
    }

    /// The configuration of `component` and the path errors about it name: the config folder's
    /// `<component>/config.json` when given, else the inferred one (named
    /// `<file> (inferred <component>/config.json)`).
    pub fn config<T: DeserializeOwned>(&self, component: &str) -> Result<(T, PathBuf)> {
        if let Some(dir) = &self.config_dir {
            let p = dir.join(component).join("config.json");
            if p.is_file() {
                return Ok((config::load(&p)?, p));
            }
        }
        let label = PathBuf::from(format!(
            "{} (inferred {component}/config.json)",
            self.path().display()
        ));
        let v = self.inferred_config(component)?;
        let cfg = serde_json::from_value(v).map_err(|e| ConvertError::Config {
            path: label.clone(),
            message: e.to_string(),
        })?;
        Ok((cfg, label))
    }

    /// The tensors of `component` under diffusers' names.
    pub fn weights(&self, component: &str) -> Result<WeightStore> {
        let names = self.file.names();
        let part = self.part(&names, component)?;
        let mut mapped: BTreeMap<String, TensorView> = BTreeMap::new();
        match component {
            "unet" => {
                let (cfg, _) = self.config::<UNetConfig>("unet")?;
                for key in part.names() {
                    if let (Some(name), Some(v)) = (
                        unet::diffusers_name(key, cfg.layers_per_block),
                        part.view(key),
                    ) {
                        mapped.entry(name).or_insert(v);
                    }
                }
            }
            "vae" => {
                let (cfg, _) = self.config::<VaeConfig>("vae")?;
                let levels = cfg.block_out_channels.len();
                for key in part.names() {
                    let (Some((name, linear)), Some(v)) =
                        (vae::diffusers_name(key, levels), part.view(key))
                    else {
                        continue;
                    };
                    let v = if linear { squeeze_1x1(v) } else { v };
                    mapped.entry(name).or_insert(v);
                }
            }
            _ => match self.text {
                Some(TextLayout::OpenClip) => {
                    let (cfg, _) = self.config::<ClipTextConfig>("text_encoder")?;
                    for key in part.names() {
                        let Some(v) = part.view(key) else { continue };
                        for (name, v) in
                            clip::open_clip_names(key, &v, cfg.num_hidden_layers, cfg.hidden_size)
                        {
                            mapped.entry(name).or_insert(v);
                        }
                    }
                }
                _ => {
                    for key in part.names() {
                        if let Some(v) = part.view(key) {
                            mapped.entry(clip::clip_name(key)).or_insert(v);
                        }
                    }
                }
            },
        }
        let mut store = WeightStore::new(self.path());
        for (name, v) in mapped {
            store.insert(name, v);
        }
        Ok(store)
    }
}

/// A 1×1 convolution weight (O, I, 1, 1) or (O, I, 1) seen as the linear weight (O, I); other
/// shapes are left for the shape check to report.
fn squeeze_1x1(v: TensorView) -> TensorView {
    let s = v.shape().to_vec();
    if s.len() > 2 && s[2..].iter().all(|d| *d == 1) {
        v.reshaped(s[..2].to_vec()).unwrap_or(v)
    } else {
        v
    }
}
