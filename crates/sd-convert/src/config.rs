//! Configuration structs deserialized from diffusers' and transformers' `config.json` files.
//!
//! Keys every configuration of a supported network has are required (a missing one is an error
//! naming the file and key); keys diffusers added later default to the value older releases
//! implied. [`UNetConfig::check`] and friends reject options the builders do not implement.

use crate::error::{ConvertError, Result};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// Reads and parses a JSON configuration file.
pub fn load<T: DeserializeOwned>(path: impl AsRef<Path>) -> Result<T> {
    let path = path.as_ref();
    let text = sd_mil::files::read_regular_string(path, sd_mil::files::MAX_JSON_BYTES)?;
    serde_json::from_str(&text).map_err(|e| ConvertError::Config {
        path: path.into(),
        message: e.to_string(),
    })
}

/// A value diffusers allows as one number for every level or as one per level.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum PerLevel {
    /// The same for every level.
    One(usize),
    /// One per level.
    Many(Vec<usize>),
}

impl PerLevel {
    /// The values for `n` levels; fails when a list has the wrong length.
    pub fn levels(&self, n: usize) -> Option<Vec<usize>> {
        match self {
            PerLevel::One(v) => Some(vec![*v; n]),
            PerLevel::Many(v) if v.len() == n => Some(v.clone()),
            PerLevel::Many(_) => None,
        }
    }
}

/// A boolean diffusers allows per level.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum BoolPerLevel {
    /// For every level.
    One(bool),
    /// One per level.
    Many(Vec<bool>),
}

impl BoolPerLevel {
    /// Whether any level sets it.
    pub fn any(&self) -> bool {
        match self {
            BoolPerLevel::One(b) => *b,
            BoolPerLevel::Many(v) => v.iter().any(|b| *b),
        }
    }
}

fn default_true() -> bool {
    true
}
fn one() -> PerLevel {
    PerLevel::One(1)
}
fn groups32() -> usize {
    32
}
fn eps5() -> f64 {
    1e-5
}
fn silu() -> String {
    "silu".into()
}
fn one_f() -> f64 {
    1.0
}
fn downsample_padding() -> usize {
    1
}
fn kernel3() -> usize {
    3
}
fn positional() -> String {
    "positional".into()
}
fn default_str() -> String {
    "default".into()
}
fn mid_cross() -> Option<String> {
    Some("UNetMidBlock2DCrossAttn".into())
}
fn false_per_level() -> BoolPerLevel {
    BoolPerLevel::One(false)
}

/// `UNet2DConditionModel` (and the shared part of `ControlNetModel`) configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct UNetConfig {
    /// Latent channels in.
    pub in_channels: usize,
    /// Latent channels out (absent for ControlNets).
    #[serde(default)]
    pub out_channels: Option<usize>,
    /// Default latent size.
    #[serde(default)]
    pub sample_size: Option<usize>,
    /// Channels per level.
    pub block_out_channels: Vec<usize>,
    /// Resnets per down block (up blocks have one more).
    pub layers_per_block: usize,
    /// Down block classes.
    pub down_block_types: Vec<String>,
    /// Up block classes (absent for ControlNets).
    #[serde(default)]
    pub up_block_types: Vec<String>,
    /// Mid block class.
    #[serde(default = "mid_cross")]
    pub mid_block_type: Option<String>,
    /// Text embedding width.
    pub cross_attention_dim: PerLevel,
    /// Per diffusers' historical naming, the number of heads unless `num_attention_heads` is set.
    pub attention_head_dim: PerLevel,
    /// Number of heads (newer configs).
    #[serde(default)]
    pub num_attention_heads: Option<PerLevel>,
    /// Transformer layers per attention block.
    #[serde(default = "one")]
    pub transformer_layers_per_block: PerLevel,
    /// Group norm groups.
    #[serde(default = "groups32")]
    pub norm_num_groups: usize,
    /// Norm epsilon.
    #[serde(default = "eps5")]
    pub norm_eps: f64,
    /// Timestep embedding: cos before sin.
    #[serde(default = "default_true")]
    pub flip_sin_to_cos: bool,
    /// Timestep embedding frequency shift.
    #[serde(default)]
    pub freq_shift: f64,
    /// Padding of the down-sampling convolutions.
    #[serde(default = "downsample_padding")]
    pub downsample_padding: usize,
    /// Activation.
    #[serde(default = "silu")]
    pub act_fn: String,
    /// SD2.x: transformer projections are linear layers.
    #[serde(default)]
    pub use_linear_projection: bool,
    /// Attention only to the text.
    #[serde(default = "false_per_level")]
    pub only_cross_attention: BoolPerLevel,
    /// Unsupported unless "default".
    #[serde(default = "default_str")]
    pub resnet_time_scale_shift: String,
    /// Unsupported unless null.
    #[serde(default)]
    pub class_embed_type: Option<String>,
    /// Unsupported unless null ("text_time" is SDXL).
    #[serde(default)]
    pub addition_embed_type: Option<String>,
    /// Unsupported unless "positional".
    #[serde(default = "positional")]
    pub time_embedding_type: String,
    /// Unsupported unless null.
    #[serde(default)]
    pub time_embedding_dim: Option<usize>,
    /// Unsupported unless null.
    #[serde(default)]
    pub time_cond_proj_dim: Option<usize>,
    /// Unsupported unless null.
    #[serde(default)]
    pub encoder_hid_dim_type: Option<String>,
    /// Unsupported unless null.
    #[serde(default)]
    pub timestep_post_act: Option<String>,
    /// Unsupported unless 3.
    #[serde(default = "kernel3")]
    pub conv_in_kernel: usize,
    /// Unsupported unless 3.
    #[serde(default = "kernel3")]
    pub conv_out_kernel: usize,
    /// Unsupported unless false.
    #[serde(default)]
    pub center_input_sample: bool,
    /// Unsupported unless false.
    #[serde(default)]
    pub dual_cross_attention: bool,
    /// Unsupported unless 1.
    #[serde(default = "one_f")]
    pub mid_block_scale_factor: f64,
    /// Unsupported unless 1.
    #[serde(default = "one_f")]
    pub resnet_out_scale_factor: f64,
    /// Unsupported unless "default".
    #[serde(default = "default_str")]
    pub attention_type: String,
    /// Upcasting changes nothing here (softmax precision is the runtime's); accepted.
    #[serde(default)]
    pub upcast_attention: bool,
    /// ControlNet: channels of the conditioning image.
    #[serde(default)]
    pub conditioning_channels: Option<usize>,
    /// ControlNet: channels of the conditioning embedding's convolutions.
    #[serde(default)]
    pub conditioning_embedding_out_channels: Option<Vec<usize>>,
    /// ControlNet: "rgb" or "bgr".
    #[serde(default)]
    pub controlnet_conditioning_channel_order: Option<String>,
}

/// The resolved per-level layout of a UNet.
#[derive(Debug, Clone)]
pub struct UNetLayout {
    /// Heads per level (down order).
    pub heads: Vec<usize>,
    /// Transformer layers per level (down order).
    pub transformer_layers: Vec<usize>,
    /// Text embedding width.
    pub cross_attention_dim: usize,
}

fn unsupported(path: &Path, key: &str, value: impl std::fmt::Debug, why: &str) -> ConvertError {
    ConvertError::Unsupported {
        path: path.into(),
        key: key.into(),
        value: format!("{value:?}"),
        why: why.into(),
    }
}

impl UNetConfig {
    /// Rejects options the UNet builder does not implement and resolves per-level values.
    /// `controlnet`: the configuration is a ControlNet's (no up blocks).
    pub fn check(&self, path: &Path, controlnet: bool) -> Result<UNetLayout> {
        let n = self.block_out_channels.len();
        let u = |k: &str, v: &dyn std::fmt::Debug, why: &str| Err(unsupported(path, k, v, why));
        if n == 0 || self.down_block_types.len() != n {
            return u(
                "down_block_types",
                &self.down_block_types,
                "one down block per entry of block_out_channels",
            );
        }
        if !controlnet && self.up_block_types.len() != n {
            return u(
                "up_block_types",
                &self.up_block_types,
                "one up block per entry of block_out_channels",
            );
        }
        for t in &self.down_block_types {
            if t != "CrossAttnDownBlock2D" && t != "DownBlock2D" {
                return u("down_block_types", t, "CrossAttnDownBlock2D or DownBlock2D");
            }
        }
        for t in &self.up_block_types {
            if t != "CrossAttnUpBlock2D" && t != "UpBlock2D" {
                return u("up_block_types", t, "CrossAttnUpBlock2D or UpBlock2D");
            }
        }
        if self.mid_block_type.as_deref() != Some("UNetMidBlock2DCrossAttn") {
            return u(
                "mid_block_type",
                &self.mid_block_type,
                "UNetMidBlock2DCrossAttn",
            );
        }
        if self.act_fn != "silu" {
            return u("act_fn", &self.act_fn, "silu");
        }
        if self.only_cross_attention.any() {
            return u("only_cross_attention", &self.only_cross_attention, "false");
        }
        if self.resnet_time_scale_shift != "default" {
            return u(
                "resnet_time_scale_shift",
                &self.resnet_time_scale_shift,
                "\"default\"",
            );
        }
        if self.class_embed_type.is_some() {
            return u("class_embed_type", &self.class_embed_type, "null");
        }
        if self.addition_embed_type.is_some() {
            return u(
                "addition_embed_type",
                &self.addition_embed_type,
                "null (SDXL's text_time is not built yet)",
            );
        }
        if self.time_embedding_type != "positional" {
            return u(
                "time_embedding_type",
                &self.time_embedding_type,
                "\"positional\"",
            );
        }
        if self.time_embedding_dim.is_some() || self.time_cond_proj_dim.is_some() {
            return u("time_cond_proj_dim", &self.time_cond_proj_dim, "null");
        }
        if self.encoder_hid_dim_type.is_some() {
            return u("encoder_hid_dim_type", &self.encoder_hid_dim_type, "null");
        }
        if self.timestep_post_act.is_some() {
            return u("timestep_post_act", &self.timestep_post_act, "null");
        }
        if self.conv_in_kernel != 3 || self.conv_out_kernel != 3 {
            return u("conv_in_kernel", &self.conv_in_kernel, "3");
        }
        if self.center_input_sample || self.dual_cross_attention {
            return u("dual_cross_attention", &self.dual_cross_attention, "false");
        }
        if self.mid_block_scale_factor != 1.0 || self.resnet_out_scale_factor != 1.0 {
            return u(
                "resnet_out_scale_factor",
                &self.resnet_out_scale_factor,
                "1.0",
            );
        }
        if self.attention_type != "default" {
            return u("attention_type", &self.attention_type, "\"default\"");
        }
        if self.norm_num_groups == 0
            || self
                .block_out_channels
                .iter()
                .any(|c| *c == 0 || !c.is_multiple_of(self.norm_num_groups))
        {
            return u(
                "norm_num_groups",
                &self.norm_num_groups,
                "a positive divisor of every (positive) block_out_channels entry",
            );
        }
        let heads = self
            .num_attention_heads
            .as_ref()
            .unwrap_or(&self.attention_head_dim)
            .levels(n)
            .ok_or_else(|| {
                unsupported(
                    path,
                    "attention_head_dim",
                    &self.attention_head_dim,
                    "one value per level",
                )
            })?;
        for (h, c) in heads.iter().zip(&self.block_out_channels) {
            if *h == 0 || c % h != 0 {
                return u(
                    "attention_head_dim",
                    &heads,
                    "head counts dividing the channels of their level",
                );
            }
        }
        let transformer_layers = self.transformer_layers_per_block.levels(n).ok_or_else(|| {
            unsupported(
                path,
                "transformer_layers_per_block",
                &self.transformer_layers_per_block,
                "one value per level",
            )
        })?;
        let cross_attention_dim = match &self.cross_attention_dim {
            PerLevel::One(d) => *d,
            PerLevel::Many(v) if v.windows(2).all(|w| w[0] == w[1]) && !v.is_empty() => v[0],
            other => return u("cross_attention_dim", other, "one width for every level"),
        };
        if controlnet {
            if self.conditioning_embedding_out_channels.is_none() {
                return u(
                    "conditioning_embedding_out_channels",
                    &None::<()>,
                    "a list (ControlNetModel)",
                );
            }
            if let Some(o) = &self.controlnet_conditioning_channel_order
                && o != "rgb"
            {
                return u("controlnet_conditioning_channel_order", o, "\"rgb\"");
            }
        } else if self.out_channels.is_none() {
            return Err(ConvertError::Config {
                path: path.into(),
                message: "missing field `out_channels`".into(),
            });
        }
        Ok(UNetLayout {
            heads,
            transformer_layers,
            cross_attention_dim,
        })
    }
}

fn vae_default_blocks() -> Vec<String> {
    Vec::new()
}

/// `AutoencoderKL` configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct VaeConfig {
    /// Image channels in.
    pub in_channels: usize,
    /// Image channels out.
    pub out_channels: usize,
    /// Latent channels.
    pub latent_channels: usize,
    /// Channels per level.
    pub block_out_channels: Vec<usize>,
    /// Resnets per encoder block (decoder blocks have one more).
    pub layers_per_block: usize,
    /// Group norm groups.
    #[serde(default = "groups32")]
    pub norm_num_groups: usize,
    /// Activation.
    #[serde(default = "silu")]
    pub act_fn: String,
    /// Image size.
    #[serde(default)]
    pub sample_size: Option<usize>,
    /// Latent scaling (reported, not built in).
    #[serde(default)]
    pub scaling_factor: Option<f64>,
    /// Whether `quant_conv` exists.
    #[serde(default = "default_true")]
    pub use_quant_conv: bool,
    /// Whether `post_quant_conv` exists.
    #[serde(default = "default_true")]
    pub use_post_quant_conv: bool,
    /// Whether the mid blocks have attention.
    #[serde(default = "default_true")]
    pub mid_block_add_attention: bool,
    /// Encoder block classes.
    #[serde(default = "vae_default_blocks")]
    pub down_block_types: Vec<String>,
    /// Decoder block classes.
    #[serde(default = "vae_default_blocks")]
    pub up_block_types: Vec<String>,
}

impl VaeConfig {
    /// Rejects what the VAE builders do not implement.
    pub fn check(&self, path: &Path) -> Result<()> {
        let n = self.block_out_channels.len();
        if self.act_fn != "silu" {
            return Err(unsupported(path, "act_fn", &self.act_fn, "silu"));
        }
        if n == 0
            || self.norm_num_groups == 0
            || self
                .block_out_channels
                .iter()
                .any(|c| *c == 0 || !c.is_multiple_of(self.norm_num_groups))
        {
            return Err(unsupported(
                path,
                "block_out_channels",
                &self.block_out_channels,
                "non-empty, divisible by norm_num_groups",
            ));
        }
        for t in &self.down_block_types {
            if t != "DownEncoderBlock2D" {
                return Err(unsupported(
                    path,
                    "down_block_types",
                    t,
                    "DownEncoderBlock2D",
                ));
            }
        }
        for t in &self.up_block_types {
            if t != "UpDecoderBlock2D" {
                return Err(unsupported(path, "up_block_types", t, "UpDecoderBlock2D"));
            }
        }
        Ok(())
    }
}

fn quick_gelu() -> String {
    "quick_gelu".into()
}

/// `CLIPTextModel` configuration (transformers).
#[derive(Debug, Clone, Deserialize)]
pub struct ClipTextConfig {
    /// Width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Heads.
    pub num_attention_heads: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Position table length.
    pub max_position_embeddings: usize,
    /// Token table length.
    pub vocab_size: usize,
    /// "quick_gelu" (SD1) or "gelu" (SD2 OpenCLIP).
    #[serde(default = "quick_gelu")]
    pub hidden_act: String,
    /// Layer norm epsilon.
    #[serde(default = "eps5")]
    pub layer_norm_eps: f64,
    /// Projection width (CLIPTextModelWithProjection).
    #[serde(default)]
    pub projection_dim: Option<usize>,
    /// Model classes.
    #[serde(default)]
    pub architectures: Vec<String>,
}

impl ClipTextConfig {
    /// Rejects what the CLIP builder does not implement.
    pub fn check(&self, path: &Path) -> Result<()> {
        if !matches!(self.hidden_act.as_str(), "quick_gelu" | "gelu") {
            return Err(unsupported(
                path,
                "hidden_act",
                &self.hidden_act,
                "quick_gelu or gelu",
            ));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(unsupported(
                path,
                "num_attention_heads",
                self.num_attention_heads,
                "a divisor of hidden_size",
            ));
        }
        Ok(())
    }
}

/// `model_index.json` of a diffusers pipeline: which components exist.
#[derive(Debug, Clone)]
pub struct ModelIndex {
    /// The file.
    pub path: PathBuf,
    /// Pipeline class.
    pub class_name: String,
    /// Component name → (library, class) for present components.
    pub components: Vec<(String, String, String)>,
}

impl ModelIndex {
    /// Reads `<dir>/model_index.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("model_index.json");
        let v: serde_json::Value = load(&path)?;
        let obj = v.as_object().ok_or_else(|| ConvertError::Config {
            path: path.clone(),
            message: "not an object".into(),
        })?;
        let class_name = obj
            .get("_class_name")
            .and_then(|c| c.as_str())
            .ok_or_else(|| ConvertError::Config {
                path: path.clone(),
                message: "missing field `_class_name`".into(),
            })?
            .to_string();
        let mut components = Vec::new();
        for (k, v) in obj {
            if k.starts_with('_') {
                continue;
            }
            if let Some([lib, class]) = v.as_array().map(|a| a.as_slice())
                && let (Some(lib), Some(class)) = (lib.as_str(), class.as_str())
            {
                components.push((k.clone(), lib.to_string(), class.to_string()));
            }
        }
        Ok(ModelIndex {
            path,
            class_name,
            components,
        })
    }

    /// The class of a present component.
    pub fn class_of(&self, name: &str) -> Option<&str> {
        self.components
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, c)| c.as_str())
    }
}

/// `CLIPVisionConfig` (transformers), the safety checker's vision tower. Every key defaults as
/// in transformers, because configs saved as a diff against the defaults omit them.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ClipVisionConfig {
    /// Width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Heads.
    pub num_attention_heads: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Image channels.
    pub num_channels: usize,
    /// Square input size.
    pub image_size: usize,
    /// Square patch size.
    pub patch_size: usize,
    /// "quick_gelu" (OpenAI CLIP) or "gelu".
    pub hidden_act: String,
    /// Layer norm epsilon.
    pub layer_norm_eps: f64,
}

impl Default for ClipVisionConfig {
    fn default() -> Self {
        ClipVisionConfig {
            hidden_size: 768,
            intermediate_size: 3072,
            num_attention_heads: 12,
            num_hidden_layers: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: quick_gelu(),
            layer_norm_eps: 1e-5,
        }
    }
}

fn projection_512() -> usize {
    512
}

/// `StableDiffusionSafetyChecker` configuration: a `CLIPConfig` whose vision tower and
/// projection width the checker uses (its text tower is unused).
#[derive(Debug, Clone, Deserialize)]
pub struct SafetyCheckerConfig {
    /// The vision tower.
    #[serde(default)]
    pub vision_config: ClipVisionConfig,
    /// Width of `visual_projection` and of the concept embeddings.
    #[serde(default = "projection_512")]
    pub projection_dim: usize,
}

impl SafetyCheckerConfig {
    /// Rejects what the safety checker builder does not implement.
    pub fn check(&self, path: &Path) -> Result<()> {
        let v = &self.vision_config;
        if !matches!(v.hidden_act.as_str(), "quick_gelu" | "gelu") {
            return Err(unsupported(
                path,
                "vision_config.hidden_act",
                &v.hidden_act,
                "quick_gelu or gelu",
            ));
        }
        if v.num_attention_heads == 0 || !v.hidden_size.is_multiple_of(v.num_attention_heads) {
            return Err(unsupported(
                path,
                "vision_config.num_attention_heads",
                v.num_attention_heads,
                "a divisor of hidden_size",
            ));
        }
        if v.patch_size == 0 || !v.image_size.is_multiple_of(v.patch_size) {
            return Err(unsupported(
                path,
                "vision_config.patch_size",
                v.patch_size,
                "a divisor of image_size",
            ));
        }
        Ok(())
    }
}
