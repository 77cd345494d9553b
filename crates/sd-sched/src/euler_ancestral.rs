//! Euler ancestral: an Euler step to sigma_down plus fresh noise of sigma_up.

use crate::config::{Common, Defaults, SchedulerConfig};
use crate::error::Result;
use crate::noise::NoiseSource;
use crate::sigmas::{SigmaState, delegate_to_sigma_state, pred_original};
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

    delegate_to_sigma_state!();

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
}
