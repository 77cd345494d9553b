//! Euler (Karras et al. 2022, algorithm 2) on discrete diffusers timesteps.

use crate::config::{Common, Defaults, SchedulerConfig};
use crate::error::{Result, SchedError};
use crate::noise::NoiseSource;
use crate::sigmas::{KarrasRange, SigmaState, delegate_to_sigma_state, pred_original};
use crate::{Scheduler, StepOutput, check_len};

/// diffusers' `EulerDiscreteScheduler` (deterministic: `s_churn = 0`), with optional Karras
/// sigmas and `final_sigmas_type`.
#[derive(Clone, Debug)]
pub struct EulerDiscreteScheduler {
    common: Common,
    config: SchedulerConfig,
    karras: bool,
    final_sigma_min: bool,
    state: SigmaState,
}

impl EulerDiscreteScheduler {
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
        let final_sigma_min = match config.final_sigmas_type.as_deref().unwrap_or("zero") {
            "zero" => false,
            "sigma_min" => true,
            other => {
                return Err(SchedError::Unsupported(format!(
                    "final_sigmas_type={other}"
                )));
            }
        };
        Ok(Self {
            state: SigmaState::initial(&common),
            common,
            config: config.clone(),
            karras: config.use_karras_sigmas.unwrap_or(false),
            final_sigma_min,
        })
    }
}

impl Scheduler for EulerDiscreteScheduler {
    fn name(&self) -> &'static str {
        "EulerDiscreteScheduler"
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let karras = self.karras.then_some(KarrasRange::ConfigOrSchedule);
        self.state
            .set_timesteps(&self.common, &self.config, n, karras, self.final_sigma_min)
    }

    delegate_to_sigma_state!();

    fn step(
        &mut self,
        model_output: &[f32],
        timestep: f32,
        sample: &[f32],
        _noise: &mut dyn NoiseSource,
    ) -> Result<StepOutput> {
        check_len(sample.len(), model_output.len())?;
        let i = self.state.checked_index(timestep)?;
        let sigma = self.state.sigmas[i];
        let sigma_hat = sigma * 1.0;
        let x0 = match self.common.prediction_type {
            crate::PredictionType::Epsilon => {
                pred_original(self.common.prediction_type, sigma_hat, sample, model_output)
            }
            crate::PredictionType::VPrediction => {
                pred_original(self.common.prediction_type, sigma, sample, model_output)
            }
        };
        let dt = self.state.sigmas[i + 1] - sigma_hat;
        let prev = sample
            .iter()
            .zip(&x0)
            .map(|(&s, &x)| s + (s - x) / sigma_hat * dt)
            .collect();
        self.state.step_index = Some(i + 1);
        Ok(StepOutput {
            prev_sample: prev,
            pred_original_sample: Some(x0),
        })
    }
}
