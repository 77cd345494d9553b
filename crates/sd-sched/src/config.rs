//! `scheduler_config.json` as diffusers writes it.

use serde::Deserialize;

use crate::error::{Result, SchedError};

/// A diffusers scheduler config. Every field is optional: each scheduler applies diffusers'
/// default for its own class when a field is absent (or `null`). Unknown keys are ignored.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct SchedulerConfig {
    /// `_class_name`, e.g. `"PNDMScheduler"`.
    #[serde(rename = "_class_name")]
    pub class_name: Option<String>,
    /// Training steps (1000).
    pub num_train_timesteps: Option<usize>,
    /// First beta.
    pub beta_start: Option<f64>,
    /// Last beta.
    pub beta_end: Option<f64>,
    /// `linear`, `scaled_linear` or `squaredcos_cap_v2`.
    pub beta_schedule: Option<String>,
    /// Explicit betas (override the schedule).
    pub trained_betas: Option<Vec<f64>>,
    /// `epsilon` or `v_prediction`.
    pub prediction_type: Option<String>,
    /// `linspace`, `leading` or `trailing`.
    pub timestep_spacing: Option<String>,
    /// Added to `leading` timesteps.
    pub steps_offset: Option<i64>,
    /// Final alpha product 1 (else alphas_cumprod\[0\]).
    pub set_alpha_to_one: Option<bool>,
    /// PNDM: PLMS only.
    pub skip_prk_steps: Option<bool>,
    /// DDIM / LCM: clip x0.
    pub clip_sample: Option<bool>,
    /// DDIM / LCM: clip range.
    pub clip_sample_range: Option<f64>,
    /// Dynamic thresholding (not implemented; `true` is an error).
    pub thresholding: Option<bool>,
    /// DPM-Solver order (1 or 2 implemented).
    pub solver_order: Option<usize>,
    /// DPM-Solver algorithm (`dpmsolver++` implemented).
    pub algorithm_type: Option<String>,
    /// DPM-Solver second-order form: `midpoint` or `heun`.
    pub solver_type: Option<String>,
    /// DPM-Solver: first/second order for the last steps when fewer than 15 steps.
    pub lower_order_final: Option<bool>,
    /// DPM-Solver: Euler for the last step.
    pub euler_at_final: Option<bool>,
    /// Karras sigmas (rho = 7).
    pub use_karras_sigmas: Option<bool>,
    /// Exponential sigmas (not implemented; `true` is an error).
    pub use_exponential_sigmas: Option<bool>,
    /// Beta sigmas (not implemented; `true` is an error).
    pub use_beta_sigmas: Option<bool>,
    /// Lu lambdas (not implemented; `true` is an error).
    pub use_lu_lambdas: Option<bool>,
    /// `zero` or `sigma_min`.
    pub final_sigmas_type: Option<String>,
    /// DPM-Solver: clip lambda(t) from below.
    pub lambda_min_clipped: Option<f64>,
    /// Learned variance (`learned`, `learned_range`): not implemented.
    pub variance_type: Option<String>,
    /// Euler: `linear` (implemented) or `log_linear`.
    pub interpolation_type: Option<String>,
    /// Euler: `discrete` (implemented) or `continuous`.
    pub timestep_type: Option<String>,
    /// Karras range override.
    pub sigma_min: Option<f64>,
    /// Karras range override.
    pub sigma_max: Option<f64>,
    /// Zero terminal SNR rescale (not implemented; `true` is an error).
    pub rescale_betas_zero_snr: Option<bool>,
    /// LCM: the distillation schedule's step count (50).
    pub original_inference_steps: Option<usize>,
    /// LCM: timestep scaling in the boundary condition (10).
    pub timestep_scaling: Option<f64>,
}

impl SchedulerConfig {
    /// Parses `scheduler_config.json` text.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| SchedError::Config(e.to_string()))
    }

    /// Fails for options whose non-default values this crate does not implement.
    pub(crate) fn check_unsupported(&self) -> Result<()> {
        let flags = [
            ("thresholding", self.thresholding),
            ("use_exponential_sigmas", self.use_exponential_sigmas),
            ("use_beta_sigmas", self.use_beta_sigmas),
            ("use_lu_lambdas", self.use_lu_lambdas),
            ("rescale_betas_zero_snr", self.rescale_betas_zero_snr),
        ];
        for (name, v) in flags {
            if v == Some(true) {
                return Err(SchedError::Unsupported(format!("{name}=true")));
            }
        }
        if let Some(v) = &self.variance_type {
            return Err(SchedError::Unsupported(format!("variance_type={v}")));
        }
        if let Some(v) = &self.interpolation_type
            && v != "linear"
        {
            return Err(SchedError::Unsupported(format!("interpolation_type={v}")));
        }
        if let Some(v) = &self.timestep_type
            && v != "discrete"
        {
            return Err(SchedError::Unsupported(format!("timestep_type={v}")));
        }
        Ok(())
    }
}

/// How the betas are laid out over the training steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BetaSchedule {
    /// `torch.linspace(beta_start, beta_end)`.
    Linear,
    /// `torch.linspace(sqrt(beta_start), sqrt(beta_end)) ** 2` (Stable Diffusion).
    ScaledLinear,
    /// Cosine alpha-bar (Nichol & Dhariwal), capped at 0.999.
    SquaredcosCapV2,
}

impl BetaSchedule {
    /// Parses diffusers' name.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "linear" => Ok(Self::Linear),
            "scaled_linear" => Ok(Self::ScaledLinear),
            "squaredcos_cap_v2" => Ok(Self::SquaredcosCapV2),
            _ => Err(SchedError::UnknownBetaSchedule(s.to_string())),
        }
    }
}

/// What the model predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PredictionType {
    /// The noise.
    Epsilon,
    /// The velocity v = alpha·eps − sigma·x0.
    VPrediction,
}

impl PredictionType {
    /// Parses diffusers' name.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "epsilon" => Ok(Self::Epsilon),
            "v_prediction" => Ok(Self::VPrediction),
            _ => Err(SchedError::UnknownPredictionType(s.to_string())),
        }
    }
}

/// How inference timesteps are placed (Lin et al. 2023, table 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestepSpacing {
    /// Evenly from 0 to T−1, both ends included.
    Linspace,
    /// Multiples of T/n from 0, plus `steps_offset`.
    Leading,
    /// Multiples of T/n down from T, minus one.
    Trailing,
}

impl TimestepSpacing {
    /// Parses diffusers' name.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "linspace" => Ok(Self::Linspace),
            "leading" => Ok(Self::Leading),
            "trailing" => Ok(Self::Trailing),
            _ => Err(SchedError::UnknownTimestepSpacing(s.to_string())),
        }
    }
}

/// The settings every scheduler shares, resolved against one class's defaults.
#[derive(Clone, Debug)]
pub(crate) struct Common {
    pub num_train_timesteps: usize,
    pub prediction_type: PredictionType,
    pub timestep_spacing: TimestepSpacing,
    pub steps_offset: i64,
    pub beta_schedule: String,
    pub alphas_cumprod: Vec<f32>,
}

/// Class defaults for the shared settings.
pub(crate) struct Defaults {
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: &'static str,
    pub timestep_spacing: &'static str,
}

impl Common {
    pub(crate) fn resolve(c: &SchedulerConfig, d: Defaults) -> Result<Self> {
        c.check_unsupported()?;
        let num_train_timesteps = c.num_train_timesteps.unwrap_or(1000);
        if num_train_timesteps < 2 {
            return Err(SchedError::Config(format!(
                "num_train_timesteps {num_train_timesteps} must be at least 2"
            )));
        }
        let prediction_type =
            PredictionType::parse(c.prediction_type.as_deref().unwrap_or("epsilon"))?;
        let timestep_spacing =
            TimestepSpacing::parse(c.timestep_spacing.as_deref().unwrap_or(d.timestep_spacing))?;
        let betas = match &c.trained_betas {
            Some(b) => b.iter().map(|&v| v as f32).collect(),
            None => crate::schedule::betas(
                BetaSchedule::parse(c.beta_schedule.as_deref().unwrap_or(d.beta_schedule))?,
                c.beta_start.unwrap_or(d.beta_start),
                c.beta_end.unwrap_or(d.beta_end),
                num_train_timesteps,
            ),
        };
        if betas.len() != num_train_timesteps {
            return Err(SchedError::Config(format!(
                "trained_betas has {} values for {num_train_timesteps} training steps",
                betas.len()
            )));
        }
        Ok(Self {
            num_train_timesteps,
            prediction_type,
            timestep_spacing,
            steps_offset: c.steps_offset.unwrap_or(0),
            beta_schedule: c
                .beta_schedule
                .clone()
                .unwrap_or_else(|| d.beta_schedule.to_string()),
            alphas_cumprod: crate::schedule::alphas_cumprod(&betas),
        })
    }
}
