//! Euler ancestral: an Euler step to sigma_down plus fresh noise of sigma_up.

use crate::config::{Common, Defaults, SchedulerConfig};
use crate::error::Result;
use crate::noise::NoiseSource;
use crate::sigmas::{SigmaState, pred_original};
use crate::{Scheduler, StepOutput, check_len};

/// diffusers' `EulerAncestralDiscreteScheduler`. Every step (the last included) draws one noise
/// tensor.
#[derive(Clone, Debug)]
pub struct EulerAncestralDiscreteScheduler {
    common: Common,
    config: SchedulerConfig,
    state: SigmaState,
}

impl EulerAncestralDiscreteScheduler {
    /// From a config (class defaults: linear betas 1e-4→0.02, linspace spacing).
    pub fn new(config: &SchedulerConfig) -> Result<Self> {
        let common = Common::resolve(
            config,
            Defaults {
                beta_start: 0.0001,
                beta_end: 0.02,
                beta_schedule: "linear",
                timestep_spacing: "linspace",
            },
        )?;
        Ok(Self {
            state: SigmaState::initial(&common),
            common,
            config: config.clone(),
        })
    }
}

impl Scheduler for EulerAncestralDiscreteScheduler {
    fn name(&self) -> &'static str {
        "EulerAncestralDiscreteScheduler"
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        self.state
            .set_timesteps(&self.common, &self.config, n, None, false)
    }

    fn timesteps(&self) -> &[f32] {
        &self.state.timesteps
    }

    fn sigmas(&self) -> Option<&[f32]> {
        Some(&self.state.sigmas)
    }

    fn num_inference_steps(&self) -> Option<usize> {
        self.state.num_inference_steps
    }

    fn init_noise_sigma(&self) -> f32 {
        self.state.init_noise_sigma(self.common.timestep_spacing)
    }

    fn scale_model_input(&mut self, sample: &[f32], timestep: f32) -> Result<Vec<f32>> {
        self.state.scale(sample, timestep)
    }

    fn step(
        &mut self,
        model_output: &[f32],
        timestep: f32,
        sample: &[f32],
        noise: &mut dyn NoiseSource,
    ) -> Result<StepOutput> {
        check_len(sample.len(), model_output.len())?;
        let i = self.state.checked_index(timestep)?;
        let sigma = self.state.sigmas[i];
        let x0 = pred_original(self.common.prediction_type, sigma, sample, model_output);
        let from = sigma;
        let to = self.state.sigmas[i + 1];
        let (from2, to2) = (from * from, to * to);
        let sigma_up = (to2 * (from2 - to2) / from2).sqrt();
        let sigma_down = (to2 - sigma_up * sigma_up).sqrt();
        let dt = sigma_down - sigma;
        let z = noise.randn(sample.len());
        let prev = sample
            .iter()
            .zip(&x0)
            .zip(z)
            .map(|((&s, &x), z)| {
                let p = s + (s - x) / sigma * dt;
                p + z * sigma_up
            })
            .collect();
        self.state.step_index = Some(i + 1);
        Ok(StepOutput {
            prev_sample: prev,
            pred_original_sample: Some(x0),
        })
    }

    fn add_noise(&self, original: &[f32], noise: &[f32], timestep: f32) -> Result<Vec<f32>> {
        self.state.add_noise(original, noise, timestep)
    }

    fn set_begin_index(&mut self, begin_index: usize) {
        self.state.begin_index = Some(begin_index);
    }
}
