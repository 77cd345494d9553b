//! A diffusers pipeline folder and the conversions `sd convert` offers, with Apple's output
//! names and model signatures.

use crate::attention::AttentionImpl;
use crate::checkpoint::SingleFile;
use crate::clip::{self, ClipOutputs};
use crate::config::{self, ClipTextConfig, ModelIndex, SafetyCheckerConfig, UNetConfig, VaeConfig};
use crate::error::{ConvertError, Result};
use crate::nn::{Net, Precision};
use crate::unet::{self, UNetOptions};
use crate::vae;
use crate::weights::WeightStore;
use crate::{projection, safety_checker};
use sd_mil::signature as sig;
use sd_mil::{Model, Opset, Program, Var};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

/// `--min-deployment-target`: decides the opset and specification version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeploymentTarget {
    /// macOS 13 / iOS 16: spec 7, CoreML6 (Apple's default).
    #[default]
    MacOS13,
    /// macOS 14 / iOS 17: spec 8, CoreML7.
    MacOS14,
    /// macOS 15 / iOS 18: spec 9, CoreML8.
    MacOS15,
}

impl DeploymentTarget {
    /// The opset programs are written in.
    pub fn opset(self) -> Opset {
        match self {
            DeploymentTarget::MacOS13 => Opset::CoreML6,
            DeploymentTarget::MacOS14 => Opset::CoreML7,
            DeploymentTarget::MacOS15 => Opset::CoreML8,
        }
    }
}

impl FromStr for DeploymentTarget {
    type Err = ConvertError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "macOS13" | "iOS16" => Ok(DeploymentTarget::MacOS13),
            "macOS14" | "iOS17" => Ok(DeploymentTarget::MacOS14),
            "macOS15" | "iOS18" => Ok(DeploymentTarget::MacOS15),
            _ => Err(ConvertError::Invalid(format!(
                "unknown deployment target `{s}` (macOS13, macOS14, macOS15, iOS16, iOS17, iOS18)"
            ))),
        }
    }
}

/// Options shared by every conversion (the flags of Apple's `torch2coreml`).
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// Attention form of UNets and ControlNets.
    pub attention: AttentionImpl,
    /// Weights and activations fp16 (default) or fp32.
    pub precision: Precision,
    /// Opset / specification version.
    pub target: DeploymentTarget,
    /// Latent height (default: the UNet's `sample_size`).
    pub latent_h: Option<usize>,
    /// Latent width (default: the UNet's `sample_size`).
    pub latent_w: Option<usize>,
    /// UNet batch 1 instead of 2.
    pub unet_batch_one: bool,
    /// Text tokens (77).
    pub seq_len: usize,
    /// Weight file variant to read ("fp16"); None prefers the plain files.
    pub variant: Option<String>,
    /// Text encoder outputs.
    pub text_outputs: ClipOutputs,
    /// `--model-version` as given, for metadata.
    pub model_version: String,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            attention: AttentionImpl::SplitEinsum,
            precision: Precision::Float16,
            target: DeploymentTarget::MacOS13,
            latent_h: None,
            latent_w: None,
            unet_batch_one: false,
            seq_len: 77,
            variant: None,
            text_outputs: ClipOutputs::LastHidden,
            model_version: String::new(),
        }
    }
}

/// A network `sd convert` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Component {
    /// `text_encoder`.
    TextEncoder,
    /// `unet`.
    Unet,
    /// `control-unet`: the UNet with `additional_residual_*` inputs.
    ControlUnet,
    /// `vae_decoder`.
    VaeDecoder,
    /// `vae_encoder`.
    VaeEncoder,
    /// A ControlNet from its own diffusers folder.
    ControlNet(PathBuf),
    /// `safety_checker`.
    SafetyChecker,
    /// Apple's multilingual text-encoder projection, from a safetensors file or folder (not
    /// part of the diffusers folder).
    MultilingualProjection(PathBuf),
}

impl Component {
    /// The suffix in Apple's file names.
    pub fn suffix(&self) -> String {
        match self {
            Component::TextEncoder => "text_encoder".into(),
            Component::Unet => "unet".into(),
            Component::ControlUnet => "control-unet".into(),
            Component::VaeDecoder => "vae_decoder".into(),
            Component::VaeEncoder => "vae_encoder".into(),
            Component::ControlNet(p) => controlnet_name(p),
            Component::SafetyChecker => "safety_checker".into(),
            Component::MultilingualProjection(_) => "multilingual_projection".into(),
        }
    }

    /// Apple's package name for this component of `model_version`:
    /// `Stable_Diffusion_version_<version with / → _>_<sub>.mlpackage`, ControlNets
    /// `ControlNet_<name>.mlpackage`.
    pub fn package_name(&self, model_version: &str) -> String {
        match self {
            Component::ControlNet(p) => format!("ControlNet_{}.mlpackage", controlnet_name(p)),
            Component::MultilingualProjection(_) => format!("{PROJECTION_STEM}.mlpackage"),
            _ => format!(
                "Stable_Diffusion_version_{}_{}.mlpackage",
                model_version.replace('/', "_"),
                self.suffix()
            ),
        }
    }

    /// The name in the Swift package's `Resources/` folder, without the `.mlmodelc` extension
    /// (`Unet`, `controlnet/Canny`).
    pub fn resource_stem(&self) -> String {
        match self {
            Component::TextEncoder => "TextEncoder".into(),
            Component::Unet => "Unet".into(),
            Component::ControlUnet => "ControlledUnet".into(),
            Component::VaeDecoder => "VAEDecoder".into(),
            Component::VaeEncoder => "VAEEncoder".into(),
            Component::ControlNet(p) => format!("controlnet/{}", title_case(&controlnet_name(p))),
            Component::SafetyChecker => "SafetyChecker".into(),
            Component::MultilingualProjection(_) => PROJECTION_STEM.into(),
        }
    }

    /// The compiled model's name in the Swift package's `Resources/` folder
    /// (`Unet.mlmodelc`); the chunks of a chunked UNet are `<stem>Chunk1/2.mlmodelc`.
    pub fn resource_name(&self) -> String {
        format!("{}.mlmodelc", self.resource_stem())
    }
}

/// The name Apple's `multilingual_projection.py` and the Swift pipeline use.
const PROJECTION_STEM: &str = "MultilingualTextEncoderProjection";

fn controlnet_name(p: &Path) -> String {
    let s = p.to_string_lossy();
    let s = s.trim_end_matches('/');
    let parts: Vec<&str> = s.rsplit('/').take(2).collect();
    // Hub ids "owner/name" → "owner_name"; local folders → their last component.

    if p.exists() {
        parts[0].to_string()
    } else {
        s.replace('/', "_")
    }
}

fn title_case(s: &str) -> String {
    s.split(['_', '-'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// A local diffusers pipeline folder, or a single-file checkpoint seen as one.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The folder (for a single-file checkpoint: the file).
    pub dir: PathBuf,
    /// Its `model_index.json`, when present.
    pub index: Option<ModelIndex>,
    /// The single-file checkpoint the components come from, when opened from one.
    pub single_file: Option<Arc<SingleFile>>,
}

fn describe(model: &mut Model, inputs: &[(&str, &str)], outputs: &[(&str, &str)]) {
    for f in &mut model.description.inputs {
        if let Some((_, d)) = inputs.iter().find(|(n, _)| f.name.starts_with(n)) {
            f.short_description = d.to_string();
        }
    }
    for f in &mut model.description.outputs {
        if let Some((_, d)) = outputs.iter().find(|(n, _)| f.name.starts_with(n)) {
            f.short_description = d.to_string();
        }
    }
}

impl Pipeline {
    /// Opens a diffusers folder (a `model_index.json` is optional: a folder holding only the
    /// components needed works too), or a single-file checkpoint (`.safetensors`, `.ckpt`, …)
    /// with inferred configurations ([`Pipeline::open_single_file`]).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        if dir.is_file() {
            return Self::open_single_file(&dir, None);
        }
        if !dir.is_dir() {
            return Err(ConvertError::Io {
                path: dir,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such diffusers folder",
                ),
            });
        }
        let index = if dir.join("model_index.json").is_file() {
            Some(ModelIndex::read(&dir)?)
        } else {
            None
        };
        Ok(Pipeline {
            dir,
            index,
            single_file: None,
        })
    }

    /// Opens a single-file SD 1.x/2.x checkpoint in the original LDM layout. `config_dir`, a
    /// diffusers folder, supplies the components' `config.json` (as diffusers'
    /// `from_single_file(config=…)`); without it they are inferred from the tensors.
    pub fn open_single_file(path: impl AsRef<Path>, config_dir: Option<&Path>) -> Result<Self> {
        let single = SingleFile::open(path.as_ref(), config_dir)?;
        Ok(Pipeline {
            dir: path.as_ref().to_path_buf(),
            index: None,
            single_file: Some(Arc::new(single)),
        })
    }

    /// Whether a component folder with a config exists (for a single file: whether the file
    /// holds the component).
    pub fn has(&self, component: &str) -> bool {
        match &self.single_file {
            Some(s) => s.has(component),
            None => self.dir.join(component).join("config.json").is_file(),
        }
    }

    fn weights(&self, component: &str, o: &ConvertOptions) -> Result<WeightStore> {
        match &self.single_file {
            Some(s) => s.weights(component),
            None => WeightStore::open_component(self.dir.join(component), o.variant.as_deref()),
        }
    }

    /// The configuration of `component` and the path errors about it name: `<component>/
    /// config.json`, or a single file's (given or inferred) one.
    fn component_config<T: DeserializeOwned>(&self, component: &str) -> Result<(T, PathBuf)> {
        match &self.single_file {
            Some(s) => s.config(component),
            None => {
                let path = self.dir.join(component).join("config.json");
                Ok((config::load(&path)?, path))
            }
        }
    }

    /// The UNet configuration.
    pub fn unet_config(&self) -> Result<UNetConfig> {
        Ok(self.component_config("unet")?.0)
    }

    /// The text encoder configuration.
    pub fn text_encoder_config(&self) -> Result<ClipTextConfig> {
        Ok(self.component_config("text_encoder")?.0)
    }

    /// Latent size from the options or the UNet's `sample_size` (64 when neither says).
    pub fn latent_size(&self, o: &ConvertOptions) -> Result<(usize, usize)> {
        let default = match self.unet_config() {
            Ok(c) => c.sample_size,
            Err(_) => None,
        }
        .or_else(|| {
            self.component_config::<VaeConfig>("vae")
                .ok()
                .and_then(|(v, _)| v.sample_size.map(|s| s / vae::scale_factor(&v)))
        })
        .unwrap_or(64);
        Ok((o.latent_h.unwrap_or(default), o.latent_w.unwrap_or(default)))
    }

    fn finish(
        &self,
        net: Net<'_>,
        outs: Vec<Var>,
        o: &ConvertOptions,
        what: &str,
    ) -> Result<Model> {
        let refs: Vec<&Var> = outs.iter().collect();
        let f = net.fb.finish(&refs)?;
        let mut program = Program::with_main(f);
        program.build_info.insert(
            "sd-convert.version".into(),
            env!("CARGO_PKG_VERSION").into(),
        );
        let mut model = Model::from_program(program)?;
        let md = &mut model.description.metadata;
        md.short_description = format!(
            "Stable Diffusion {what}, converted from diffusers weights by sd-convert. Please refer to https://arxiv.org/abs/2112.10752 for details."
        );
        md.version_string = o.model_version.clone();
        md.author = format!("Please refer to the Model Card of {}", o.model_version);
        md.user_defined.insert(
            "sd-convert.version".into(),
            env!("CARGO_PKG_VERSION").into(),
        );
        md.user_defined.insert(
            "sd-convert.attention-implementation".into(),
            o.attention.to_string(),
        );
        md.user_defined.insert(
            "sd-convert.precision".into(),
            if o.precision == Precision::Float16 {
                "float16"
            } else {
                "float32"
            }
            .into(),
        );
        md.user_defined
            .insert("sd-convert.source".into(), self.dir.display().to_string());
        Ok(model)
    }

    /// The text encoder (`text_encoder/`).
    pub fn text_encoder(&self, o: &ConvertOptions) -> Result<Model> {
        let (cfg, path) = self.component_config::<ClipTextConfig>("text_encoder")?;
        cfg.check(&path)?;
        let w = self.weights("text_encoder", o)?;
        let mut net = Net::new(o.target.opset(), &w, o.precision);
        let outs = clip::build(&mut net, &cfg, o.seq_len, o.text_outputs)?;
        let mut m = self.finish(net, outs, o, "text encoder")?;
        describe(
            &mut m,
            &[(
                sig::text_encoder::INPUT_IDS,
                "The token ids that represent the input text",
            )],
            &[
                (
                    sig::text_encoder::LAST_HIDDEN_STATE,
                    "The token embeddings as encoded by the Transformer model",
                ),
                (
                    sig::text_encoder::POOLED_OUTPUTS,
                    "The version of the `last_hidden_state` output after pooling",
                ),
                (
                    sig::text_encoder::HIDDEN_EMBEDS,
                    "The penultimate hidden state of the Transformer model",
                ),
            ],
        );
        Ok(m)
    }

    fn unet_options(&self, o: &ConvertOptions, control: bool) -> Result<UNetOptions> {
        let (h, w) = self.latent_size(o)?;
        Ok(UNetOptions {
            batch: if o.unet_batch_one { 1 } else { 2 },
            latent_h: h,
            latent_w: w,
            seq_len: o.seq_len,
            attention: o.attention,
            controlnet_inputs: control,
        })
    }

    /// The UNet (`unet/`); with `control`, the control-unet taking `additional_residual_*`.
    pub fn unet(&self, o: &ConvertOptions, control: bool) -> Result<Model> {
        let (cfg, path) = self.component_config::<UNetConfig>("unet")?;
        let layout = cfg.check(&path, false)?;
        let w = self.weights("unet", o)?;
        let uo = self.unet_options(o, control)?;
        let mut net = Net::new(o.target.opset(), &w, o.precision);
        let outs = unet::build_unet(&mut net, &cfg, &layout, &uo)?;
        let mut m = self.finish(net, outs, o, if control { "control-unet" } else { "UNet" })?;
        describe(
            &mut m,
            UNET_INPUTS,
            &[(
                sig::unet::NOISE_PRED,
                "Same shape and dtype as the `sample` input. The predicted noise to facilitate the reverse diffusion (denoising) process",
            )],
        );
        Ok(m)
    }

    /// The VAE decoder (`vae/`: post_quant_conv + decoder).
    pub fn vae_decoder(&self, o: &ConvertOptions) -> Result<Model> {
        let (cfg, path) = self.component_config::<VaeConfig>("vae")?;
        cfg.check(&path)?;
        let w = self.weights("vae", o)?;
        let (h, wd) = self.latent_size(o)?;
        let mut net = Net::new(o.target.opset(), &w, o.precision);
        let outs = vae::build_decoder(&mut net, &cfg, h, wd)?;
        let mut m = self.finish(net, outs, o, "VAE decoder")?;
        describe(
            &mut m,
            &[(
                sig::vae_decoder::Z,
                "The denoised latent embeddings from the unet model after the last step of reverse diffusion",
            )],
            &[(
                sig::vae_decoder::IMAGE,
                "Generated image normalized to range [-1, 1]",
            )],
        );
        Ok(m)
    }

    /// The VAE encoder (`vae/`: encoder + quant_conv).
    pub fn vae_encoder(&self, o: &ConvertOptions) -> Result<Model> {
        let (cfg, path) = self.component_config::<VaeConfig>("vae")?;
        cfg.check(&path)?;
        let w = self.weights("vae", o)?;
        let (h, wd) = self.latent_size(o)?;
        let f = vae::scale_factor(&cfg);
        let mut net = Net::new(o.target.opset(), &w, o.precision);
        let outs = vae::build_encoder(&mut net, &cfg, h * f, wd * f)?;
        let mut m = self.finish(net, outs, o, "VAE encoder")?;
        describe(
            &mut m,
            &[(
                "x",
                "The input image to base the initial latents on normalized to range [-1, 1]",
            )],
            &[(
                sig::vae_encoder::LATENT,
                "The latent embeddings from the unet model from the input image.",
            )],
        );
        Ok(m)
    }

    /// A ControlNet from its own diffusers folder (config.json + weights), at this pipeline's
    /// latent size.
    pub fn controlnet(&self, controlnet_dir: &Path, o: &ConvertOptions) -> Result<Model> {
        let path = controlnet_dir.join("config.json");
        let cfg: UNetConfig = config::load(&path)?;
        let layout = cfg.check(&path, true)?;
        let w = WeightStore::open_component(controlnet_dir, o.variant.as_deref())?;
        let uo = self.unet_options(o, false)?;
        let mut net = Net::new(o.target.opset(), &w, o.precision);
        let outs = unet::build_controlnet(&mut net, &cfg, &layout, &uo)?;
        let mut m = self.finish(net, outs, o, "ControlNet")?;
        let mut inputs = UNET_INPUTS.to_vec();
        inputs.push((
            sig::unet::CONTROLNET_COND,
            "An image in [0, 1] that conditions the generation",
        ));
        describe(
            &mut m,
            &inputs,
            &[(
                sig::unet::ADDITIONAL_RESIDUAL,
                "Residual added to the UNet's down path (the last one to its mid block)",
            )],
        );
        Ok(m)
    }

    /// The safety checker (`safety_checker/`) in Apple's branch-free form; `images` has the VAE
    /// decoder's output size (latent size × 8).
    pub fn safety_checker(&self, o: &ConvertOptions) -> Result<Model> {
        let path = self.dir.join("safety_checker/config.json");
        let cfg: SafetyCheckerConfig = config::load(&path)?;
        cfg.check(&path)?;
        let w = self.weights("safety_checker", o)?;
        let (h, wd) = self.latent_size(o)?;
        let mut net = Net::new(o.target.opset(), &w, o.precision);
        let outs = safety_checker::build(&mut net, &cfg, h * 8, wd * 8)?;
        let mut m = self.finish(net, outs, o, "safety checker")?;
        describe(&mut m, SAFETY_INPUTS, SAFETY_OUTPUTS);
        Ok(m)
    }

    /// Apple's multilingual text-encoder projection from a safetensors file (or a folder holding
    /// `projection.safetensors`); at least macOS 14, as Apple's (`NLContextualEmbedding`).
    pub fn multilingual_projection(&self, path: &Path, o: &ConvertOptions) -> Result<Model> {
        let w = projection::open_weights(path)?;
        let prefix = projection::linear_prefix(&w)?;
        let target = match o.target {
            DeploymentTarget::MacOS13 => DeploymentTarget::MacOS14,
            t => t,
        };
        let mut net = Net::new(target.opset(), &w, o.precision);
        let outs = projection::build(&mut net, &prefix)?;
        let mut m = self.finish(net, outs, o, "multilingual text-encoder projection")?;
        m.description
            .metadata
            .user_defined
            .insert("sd-convert.source".into(), path.display().to_string());
        describe(
            &mut m,
            &[(projection::INPUT, "NLContextualEmbedding output vectors")],
            &[(
                projection::OUTPUT,
                "Text embeddings in the UNet's (B, C, 1, S) layout",
            )],
        );
        Ok(m)
    }

    /// Builds `component`.
    pub fn build(&self, component: &Component, o: &ConvertOptions) -> Result<Model> {
        match component {
            Component::TextEncoder => self.text_encoder(o),
            Component::Unet => self.unet(o, false),
            Component::ControlUnet => self.unet(o, true),
            Component::VaeDecoder => self.vae_decoder(o),
            Component::VaeEncoder => self.vae_encoder(o),
            Component::ControlNet(p) => self.controlnet(p, o),
            Component::SafetyChecker => self.safety_checker(o),
            Component::MultilingualProjection(p) => self.multilingual_projection(p, o),
        }
    }
}

const UNET_INPUTS: &[(&str, &str)] = &[
    (
        sig::unet::SAMPLE,
        "The low resolution latent feature maps being denoised through reverse diffusion",
    ),
    (
        sig::unet::TIMESTEP,
        "A value emitted by the associated scheduler object to condition the model on a given noise schedule",
    ),
    (
        sig::unet::ENCODER_HIDDEN_STATES,
        "Output embeddings from the associated text_encoder model to condition to generated image on text. A maximum of 77 tokens (~40 words) are allowed. Longer text is truncated. Shorter text does not reduce computation.",
    ),
    (
        sig::unet::ADDITIONAL_RESIDUAL,
        "Residual from a ControlNet, added to the matching down-path state",
    ),
];

const SAFETY_INPUTS: &[(&str, &str)] = &[
    (
        sig::safety_checker::CLIP_INPUT,
        "The image, resized to the vision tower's size and normalized, channels first (BCHW)",
    ),
    (
        sig::safety_checker::IMAGES,
        "The decoded image(s) to filter, channels last (BHWC)",
    ),
    (
        sig::safety_checker::ADJUSTMENT,
        "Added to the special-care scores: raises recall at the cost of precision",
    ),
];

const SAFETY_OUTPUTS: &[(&str, &str)] = &[
    (
        sig::safety_checker::FILTERED_IMAGES,
        "The `images` input, or zeros where sensitive content was detected",
    ),
    (
        sig::safety_checker::HAS_NSFW_CONCEPTS,
        "1 where the checker found sensitive content, else 0",
    ),
    (
        sig::safety_checker::CONCEPT_SCORES,
        "Scores before thresholding at zero (which gives `has_nsfw_concepts`); tune `adjustment` with them",
    ),
];
