//! DDIM (denoising diffusion implicit models), deterministic (eta = 0) or stochastic (eta > 0).

use crate::config::{Common, Defaults, PredictionType, SchedulerConfig};
use crate::error::{Result, SchedError};
use crate::noise::NoiseSource;
use crate::schedule::{add_noise_alpha, checked_int_timesteps_desc};
use crate::{Scheduler, StepOutput, check_len, check_steps};

/// diffusers' `DDIMScheduler`. `eta` (a `step` argument in diffusers) is set with
/// [`DdimScheduler::with_eta`]; with eta > 0 every step draws one noise tensor, the last included.
#[derive(Clone, Debug)]
pub struct DdimScheduler {
    common: Common,
    final_alpha_cumprod: f32,
    clip_sample: Option<f32>,
    eta: f32,
    num_inference_steps: Option<usize>,
    timesteps: Vec<f32>,
}

impl DdimScheduler {
    /// From a config (class defaults: linear betas 1e-4→0.02, leading spacing,
    /// `set_alpha_to_one = true`, `clip_sample = true`).
    pub fn new(config: &SchedulerConfig) -> Result<Self> {
        let common = Common::resolve(
            config,
            Defaults {
                beta_start: 0.0001,
                beta_end: 0.02,
                beta_schedule: "linear",
                timestep_spacing: "leading",
            },
        )?;
        let final_alpha_cumprod = if config.set_alpha_to_one.unwrap_or(true) {
            1.0
        } else {
            common.alphas_cumprod[0]
        };
        let clip_sample = config
            .clip_sample
            .unwrap_or(true)
            .then(|| config.clip_sample_range.unwrap_or(1.0) as f32);
        Ok(Self {
            final_alpha_cumprod,
            clip_sample,
            eta: 0.0,
            num_inference_steps: None,
            timesteps: (0..common.num_train_timesteps)
                .rev()
                .map(|t| t as f32)
                .collect(),
            common,
        })
    }

    /// Sets eta, the weight of the stochastic part (0 = DDIM, 1 = DDPM-like).
    pub fn with_eta(mut self, eta: f32) -> Self {
        self.eta = eta;
        self
    }

    /// The current eta.
    pub fn eta(&self) -> f32 {
        self.eta
    }
}

impl Scheduler for DdimScheduler {
    fn name(&self) -> &'static str {
        "DDIMScheduler"
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        check_steps(n, self.common.num_train_timesteps)?;
        let c = &self.common;
        self.timesteps = checked_int_timesteps_desc(
            c.timestep_spacing,
            n,
            c.num_train_timesteps,
            c.steps_offset,
        )?
        .into_iter()
        .map(|t| t as f32)
        .collect();
        self.num_inference_steps = Some(n);
        Ok(())
    }

    fn timesteps(&self) -> &[f32] {
        &self.timesteps
    }

    fn num_inference_steps(&self) -> Option<usize> {
        self.num_inference_steps
    }

    fn step(
        &mut self,
        model_output: &[f32],
        timestep: f32,
        sample: &[f32],
        noise: &mut dyn NoiseSource,
    ) -> Result<StepOutput> {
        let n = self.num_inference_steps.ok_or(SchedError::NotInitialized)?;
        check_len(sample.len(), model_output.len())?;
        let t = timestep as i64;
        let prev_t = t - (self.common.num_train_timesteps / n) as i64;
        let acp = &self.common.alphas_cumprod;
        let a = *acp
            .get(t as usize)
            .ok_or(SchedError::TimestepNotFound(timestep))?;
        let a_prev = if prev_t >= 0 {
            acp[prev_t as usize]
        } else {
            self.final_alpha_cumprod
        };
        let b = 1.0 - a;
        let (sa, sb) = (a.sqrt(), b.sqrt());
        let (mut x0, eps): (Vec<f32>, Vec<f32>) = match self.common.prediction_type {
            PredictionType::Epsilon => (
                sample
                    .iter()
                    .zip(model_output)
                    .map(|(&s, &m)| (s - sb * m) / sa)
                    .collect(),
                model_output.to_vec(),
            ),
            PredictionType::VPrediction => sample
                .iter()
                .zip(model_output)
                .map(|(&s, &m)| (sa * s - sb * m, sa * m + sb * s))
                .unzip(),
        };
        if let Some(r) = self.clip_sample {
            for v in &mut x0 {
                *v = v.clamp(-r, r);
            }
        }
        let b_prev = 1.0 - a_prev;
        let variance = (b_prev / b) * (1.0 - a / a_prev);
        let std_dev_t = self.eta * variance.sqrt();
        let dir_coeff = (1.0 - a_prev - std_dev_t * std_dev_t).sqrt();
        let sa_prev = a_prev.sqrt();
        let mut prev: Vec<f32> = x0
            .iter()
            .zip(&eps)
            .map(|(&x, &e)| sa_prev * x + dir_coeff * e)
            .collect();
        if self.eta > 0.0 {
            let z = noise.randn(prev.len());
            for (p, z) in prev.iter_mut().zip(z) {
                *p += std_dev_t * z;
            }
        }
        Ok(StepOutput {
            prev_sample: prev,
            pred_original_sample: Some(x0),
        })
    }

    fn add_noise(&self, original: &[f32], noise: &[f32], timestep: f32) -> Result<Vec<f32>> {
        check_len(original.len(), noise.len())?;
        let a = *self
            .common
            .alphas_cumprod
            .get(timestep as usize)
            .ok_or(SchedError::TimestepNotFound(timestep))?;
        Ok(add_noise_alpha(a, original, noise))
    }

    fn set_begin_index(&mut self, _begin_index: usize) {}
}
