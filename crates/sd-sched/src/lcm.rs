//! LCM: latent consistency model multistep sampling.

use crate::config::{Common, Defaults, PredictionType, SchedulerConfig};
use crate::error::{Result, SchedError};
use crate::noise::NoiseSource;
use crate::schedule::{add_noise_alpha, index_for_timestep, np_linspace_open};
use crate::{Scheduler, StepOutput, check_len};

/// diffusers' `LCMScheduler`. Every step but the last draws one noise tensor;
/// `pred_original_sample` holds LCM's `denoised`.
#[derive(Clone, Debug)]
pub struct LcmScheduler {
    common: Common,
    final_alpha_cumprod: f32,
    clip_sample: Option<f32>,
    original_inference_steps: usize,
    timestep_scaling: f32,
    num_inference_steps: Option<usize>,
    timesteps: Vec<f32>,
    step_index: Option<usize>,
    begin_index: Option<usize>,
}

impl LcmScheduler {
    /// From a config (class defaults: scaled-linear betas 0.00085→0.012,
    /// `original_inference_steps = 50`, `set_alpha_to_one = true`, `timestep_scaling = 10`).
    pub fn new(config: &SchedulerConfig) -> Result<Self> {
        let common = Common::resolve(
            config,
            Defaults {
                beta_start: 0.00085,
                beta_end: 0.012,
                beta_schedule: "scaled_linear",
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
            .unwrap_or(false)
            .then(|| config.clip_sample_range.unwrap_or(1.0) as f32);
        Ok(Self {
            final_alpha_cumprod,
            clip_sample,
            original_inference_steps: config.original_inference_steps.unwrap_or(50),
            timestep_scaling: config.timestep_scaling.unwrap_or(10.0) as f32,
            num_inference_steps: None,
            timesteps: (0..common.num_train_timesteps)
                .rev()
                .map(|t| t as f32)
                .collect(),
            common,
            step_index: None,
            begin_index: None,
        })
    }
}

impl Scheduler for LcmScheduler {
    fn name(&self) -> &'static str {
        "LCMScheduler"
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let orig = self.original_inference_steps;
        let train = self.common.num_train_timesteps;
        if n == 0 {
            return Err(SchedError::ZeroSteps);
        }
        if orig > train || orig == 0 {
            return Err(SchedError::Config(format!(
                "original_inference_steps {orig} must be in 1..={train}"
            )));
        }
        if n > orig {
            return Err(SchedError::TooManySteps {
                steps: n,
                max: orig,
            });
        }
        let k = (train / orig) as i64;
        let origin: Vec<i64> = (1..=orig as i64).rev().map(|i| i * k - 1).collect();
        self.timesteps = np_linspace_open(0.0, origin.len() as f64, n)
            .into_iter()
            .map(|x| origin[x.floor() as usize] as f32)
            .collect();
        self.num_inference_steps = Some(n);
        self.step_index = None;
        self.begin_index = None;
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
        let i = match (self.step_index, self.begin_index) {
            (Some(i), _) => i,
            (None, Some(b)) => b,
            (None, None) => index_for_timestep(&self.timesteps, timestep)
                .ok_or(SchedError::TimestepNotFound(timestep))?,
        };
        if i >= self.timesteps.len() {
            return Err(SchedError::Finished(self.timesteps.len()));
        }
        let t = timestep as i64;
        let prev_t = self.timesteps.get(i + 1).map_or(t, |&p| p as i64);
        let acp = &self.common.alphas_cumprod;
        let a = acp[t as usize];
        let a_prev = if prev_t >= 0 {
            acp[prev_t as usize]
        } else {
            self.final_alpha_cumprod
        };
        let b = 1.0 - a;
        let b_prev = 1.0 - a_prev;
        let scaled = t as f32 * self.timestep_scaling;
        let c_skip = 0.25 / (scaled * scaled + 0.25);
        let c_out = scaled / (scaled * scaled + 0.25).sqrt();
        let (sa, sb) = (a.sqrt(), b.sqrt());
        let mut x0: Vec<f32> = sample
            .iter()
            .zip(model_output)
            .map(|(&s, &m)| match self.common.prediction_type {
                PredictionType::Epsilon => (s - sb * m) / sa,
                PredictionType::VPrediction => sa * s - sb * m,
            })
            .collect();
        if let Some(r) = self.clip_sample {
            for v in &mut x0 {
                *v = v.clamp(-r, r);
            }
        }
        let denoised: Vec<f32> = x0
            .iter()
            .zip(sample)
            .map(|(&x, &s)| c_out * x + c_skip * s)
            .collect();
        let prev = if i != n - 1 {
            let z = noise.randn(sample.len());
            let (sap, sbp) = (a_prev.sqrt(), b_prev.sqrt());
            denoised
                .iter()
                .zip(z)
                .map(|(&d, z)| sap * d + sbp * z)
                .collect()
        } else {
            denoised.clone()
        };
        self.step_index = Some(i + 1);
        Ok(StepOutput {
            prev_sample: prev,
            pred_original_sample: Some(denoised),
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

    fn set_begin_index(&mut self, begin_index: usize) {
        self.begin_index = Some(begin_index);
    }
}
