//! What one generation asks for: [`GenerationRequest`], and the scheduler names users type.

use super::error::{PipelineError, Result};
use super::image::{GenerationParameters, GrayImage, RgbImage};
use sd_sched::{RngKind, Scheduler, SchedulerConfig};
use std::str::FromStr;

/// The schedulers `sd generate --scheduler` offers, each built `from_config` of the model's
/// scheduler configuration as diffusers' `Scheduler.from_config(pipe.scheduler.config)` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchedulerKind {
    /// `pndm`: PNDM (PLMS), Apple's default.
    Pndm,
    /// `ddim`.
    Ddim,
    /// `dpmpp`: DPM-Solver++ 2M.
    Dpmpp,
    /// `dpmpp-karras`: DPM-Solver++ 2M with Karras sigmas.
    DpmppKarras,
    /// `euler`.
    Euler,
    /// `euler-a`: Euler ancestral.
    EulerAncestral,
    /// `lms`.
    Lms,
    /// `lcm`: latent consistency.
    Lcm,
}

impl SchedulerKind {
    /// Every kind, in the order `--help` lists them.
    pub const ALL: [SchedulerKind; 8] = [
        SchedulerKind::Pndm,
        SchedulerKind::Ddim,
        SchedulerKind::Dpmpp,
        SchedulerKind::DpmppKarras,
        SchedulerKind::Euler,
        SchedulerKind::EulerAncestral,
        SchedulerKind::Lms,
        SchedulerKind::Lcm,
    ];

    /// The command-line name (`pndm`, `dpmpp-karras`, `euler-a`, …).
    pub fn cli_name(self) -> &'static str {
        match self {
            SchedulerKind::Pndm => "pndm",
            SchedulerKind::Ddim => "ddim",
            SchedulerKind::Dpmpp => "dpmpp",
            SchedulerKind::DpmppKarras => "dpmpp-karras",
            SchedulerKind::Euler => "euler",
            SchedulerKind::EulerAncestral => "euler-a",
            SchedulerKind::Lms => "lms",
            SchedulerKind::Lcm => "lcm",
        }
    }

    /// The sampler name AUTOMATIC1111 shows (and writes into PNG `parameters`).
    pub fn a1111_name(self) -> &'static str {
        match self {
            SchedulerKind::Pndm => "PLMS",
            SchedulerKind::Ddim => "DDIM",
            SchedulerKind::Dpmpp => "DPM++ 2M",
            SchedulerKind::DpmppKarras => "DPM++ 2M Karras",
            SchedulerKind::Euler => "Euler",
            SchedulerKind::EulerAncestral => "Euler a",
            SchedulerKind::Lms => "LMS",
            SchedulerKind::Lcm => "LCM",
        }
    }

    /// diffusers' class name.
    pub fn class_name(self) -> &'static str {
        match self {
            SchedulerKind::Pndm => "PNDMScheduler",
            SchedulerKind::Ddim => "DDIMScheduler",
            SchedulerKind::Dpmpp | SchedulerKind::DpmppKarras => "DPMSolverMultistepScheduler",
            SchedulerKind::Euler => "EulerDiscreteScheduler",
            SchedulerKind::EulerAncestral => "EulerAncestralDiscreteScheduler",
            SchedulerKind::Lms => "LMSDiscreteScheduler",
            SchedulerKind::Lcm => "LCMScheduler",
        }
    }

    /// This scheduler configured from the model's `base` config (diffusers' `from_config`:
    /// the shared keys carry over, the class's own defaults fill the rest).
    pub fn build(self, base: &SchedulerConfig) -> Result<Box<dyn Scheduler>> {
        let mut config = base.clone();
        config.class_name = Some(self.class_name().to_string());
        if self == SchedulerKind::DpmppKarras {
            config.use_karras_sigmas = Some(true);
        }
        if self == SchedulerKind::Dpmpp {
            config.use_karras_sigmas = Some(false);
        }
        Ok(sd_sched::from_config(&config)?)
    }
}

impl std::fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.cli_name())
    }
}

impl FromStr for SchedulerKind {
    type Err = PipelineError;

    /// Command-line names, plus diffusers' class names, Apple's Python names
    /// (`DPMSolverMultistep`, `EulerAncestralDiscrete`, …) and AUTOMATIC1111's sampler names
    /// (`DPM++ 2M Karras`, `Euler a`, `PLMS`), case-insensitively.
    fn from_str(s: &str) -> Result<Self> {
        let k = s.trim().to_ascii_lowercase().replace(['_', ' '], "-");
        let kind = match k.as_str() {
            "pndm" | "plms" | "pndmscheduler" => SchedulerKind::Pndm,
            "ddim" | "ddimscheduler" => SchedulerKind::Ddim,
            "dpmpp"
            | "dpm++"
            | "dpmpp-2m"
            | "dpm++-2m"
            | "dpmsolvermultistep"
            | "dpmsolvermultistepscheduler" => SchedulerKind::Dpmpp,
            "dpmpp-karras" | "dpm++-karras" | "dpmpp-2m-karras" | "dpm++-2m-karras" => {
                SchedulerKind::DpmppKarras
            }
            "euler" | "eulerdiscrete" | "eulerdiscretescheduler" => SchedulerKind::Euler,
            "euler-a"
            | "euler-ancestral"
            | "eulerancestraldiscrete"
            | "eulerancestraldiscretescheduler" => SchedulerKind::EulerAncestral,
            "lms" | "lmsdiscrete" | "lmsdiscretescheduler" => SchedulerKind::Lms,
            "lcm" | "lcmscheduler" => SchedulerKind::Lcm,
            _ => {
                return Err(PipelineError::bad(
                    "scheduler",
                    format!(
                        "unknown scheduler `{s}`; choose one of {}",
                        SchedulerKind::ALL.map(|k| k.cli_name()).join(", ")
                    ),
                ));
            }
        };
        Ok(kind)
    }
}

/// Parses `numpy`, `torch` or `nvidia` (Apple's `--rng` values).
pub fn parse_rng(s: &str) -> Result<RngKind> {
    match s.trim().to_ascii_lowercase().as_str() {
        "numpy" => Ok(RngKind::Numpy),
        "torch" | "cpu" => Ok(RngKind::Torch),
        "nvidia" | "cuda" => Ok(RngKind::Nvidia),
        _ => Err(PipelineError::bad(
            "rng",
            format!("unknown random source `{s}`; choose numpy, torch or nvidia"),
        )),
    }
}

/// One ControlNet's part of a request.
#[derive(Debug, Clone)]
pub struct ControlInput {
    /// The ControlNet's name in the resource folder.
    pub name: String,
    /// Its conditioning image, `(3, height, width)` row-major, as the ControlNet's
    /// `controlnet_cond` input takes it (RGB in [0, 1]; Apple's inpaint ControlNet: −1 where
    /// the picture is to be repainted).
    pub conditioning: Vec<f32>,
    /// Conditioning image width.
    pub width: usize,
    /// Conditioning image height.
    pub height: usize,
    /// The factor its residuals are multiplied by (diffusers' `controlnet_conditioning_scale`).
    pub scale: f32,
}

impl ControlInput {
    /// A conditioning image as diffusers' ControlNet pipelines prepare it: RGB / 255.
    pub fn from_image(name: impl Into<String>, image: &RgbImage, scale: f32) -> Self {
        ControlInput {
            name: name.into(),
            conditioning: super::image::controlnet_conditioning(image).data,
            width: image.width,
            height: image.height,
            scale,
        }
    }
}

/// Everything one call to [`super::Pipeline::generate`] needs. Build with
/// [`GenerationRequest::new`] and set the fields you need.
#[derive(Debug, Clone)]
pub struct GenerationRequest {
    /// The prompt.
    pub prompt: String,
    /// The negative prompt (the unconditional branch of classifier-free guidance).
    pub negative_prompt: String,
    /// The seed of the noise source.
    pub seed: u64,
    /// Inference steps.
    pub steps: usize,
    /// Classifier-free guidance scale; at or below 1 no guidance runs (one UNet branch).
    pub guidance_scale: f32,
    /// The scheduler.
    pub scheduler: SchedulerKind,
    /// The noise source.
    pub rng: RngKind,
    /// Images to make from this request (one noise draw for all, as diffusers' batch).
    pub image_count: usize,
    /// When set, the image width the caller expects (checked against the models).
    pub width: Option<usize>,
    /// When set, the image height the caller expects.
    pub height: Option<usize>,
    /// Image-to-image or inpainting: the starting image.
    pub image: Option<RgbImage>,
    /// How far to move from the starting image (1 = start from pure noise).
    pub strength: f32,
    /// Inpainting: white = repaint, black = keep.
    pub mask: Option<GrayImage>,
    /// ControlNets with their conditioning images.
    pub controlnets: Vec<ControlInput>,
    /// Run the safety checker when the folder has one.
    pub safety_check: bool,
    /// Decode a preview image every this many steps (0 = never).
    pub preview_every: usize,
}

impl GenerationRequest {
    /// A text-to-image request with Apple's defaults (seed 0, 50 steps, guidance 7.5, PNDM,
    /// numpy noise, one image, safety on).
    pub fn new(prompt: impl Into<String>) -> Self {
        GenerationRequest {
            prompt: prompt.into(),
            negative_prompt: String::new(),
            seed: 0,
            steps: 50,
            guidance_scale: 7.5,
            scheduler: SchedulerKind::Pndm,
            rng: RngKind::Numpy,
            image_count: 1,
            width: None,
            height: None,
            image: None,
            strength: 1.0,
            mask: None,
            controlnets: Vec::new(),
            safety_check: true,
            preview_every: 0,
        }
    }

    /// Whether classifier-free guidance runs (scale above 1, as diffusers).
    pub fn guided(&self) -> bool {
        self.guidance_scale > 1.0
    }

    /// The AUTOMATIC1111 `parameters` of an image this request made at `width × height` with
    /// the model called `model` ("" leaves it out); image-to-image adds the strength.
    pub fn a1111_parameters(
        &self,
        width: usize,
        height: usize,
        model: &str,
    ) -> GenerationParameters {
        GenerationParameters {
            prompt: self.prompt.clone(),
            negative_prompt: self.negative_prompt.clone(),
            steps: self.steps as u32,
            sampler: self.scheduler.a1111_name().to_string(),
            cfg_scale: self.guidance_scale,
            seed: self.seed,
            width,
            height,
            model_hash: None,
            model: model.to_string(),
            denoising_strength: self.image.as_ref().map(|_| self.strength),
        }
    }
}

/// Upper bounds that keep a request from running for days or exhausting memory.
pub const MAX_STEPS: usize = 1000;
/// The most images one request makes.
pub const MAX_IMAGES: usize = 64;

#[cfg(test)]
mod tests {
    use super::SchedulerKind;

    #[test]
    fn every_name_parses_back_to_its_kind() {
        for kind in SchedulerKind::ALL {
            for name in [kind.cli_name(), kind.a1111_name()] {
                assert_eq!(name.parse::<SchedulerKind>().unwrap(), kind, "{name}");
                assert_eq!(name.to_uppercase().parse::<SchedulerKind>().unwrap(), kind);
            }
        }
        assert!("DPM++ 3M".parse::<SchedulerKind>().is_err());
    }
}
