//! PNDM (pseudo numerical methods), PLMS form (`skip_prk_steps`), as Stable Diffusion uses it.

use crate::config::{Common, Defaults, PredictionType, SchedulerConfig};
use crate::error::{Result, SchedError};
use crate::noise::NoiseSource;
use crate::schedule::{add_noise_alpha, checked_int_timesteps_desc};
use crate::{Scheduler, StepOutput, check_len, check_steps};

/// diffusers' `PNDMScheduler` with `skip_prk_steps = true` (linear multistep, 4th order after a
/// warm-up; the second step re-evaluates the first timestep, so there are n + 1 model calls).
#[derive(Clone, Debug)]
pub struct PndmScheduler {
    common: Common,
    final_alpha_cumprod: f32,
    num_inference_steps: Option<usize>,
    timesteps: Vec<f32>,
    /// Past model outputs (at most 4).
    ets: Vec<Vec<f32>>,
    counter: usize,
    cur_sample: Option<Vec<f32>>,
}

impl PndmScheduler {
    /// From a config (class defaults: linear betas 1e-4→0.02, leading spacing,
    /// `set_alpha_to_one = false`). `skip_prk_steps` must be true.
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
        if !config.skip_prk_steps.unwrap_or(false) {
            return Err(SchedError::Unsupported(
                "skip_prk_steps=false (Runge-Kutta warm-up)".into(),
            ));
        }
        let final_alpha_cumprod = if config.set_alpha_to_one.unwrap_or(false) {
            1.0
        } else {
            common.alphas_cumprod[0]
        };
        Ok(Self {
            final_alpha_cumprod,
            num_inference_steps: None,
            timesteps: (0..common.num_train_timesteps)
                .rev()
                .map(|t| t as f32)
                .collect(),
            common,
            ets: Vec::new(),
            counter: 0,
            cur_sample: None,
        })
    }

    fn prev_sample(&self, sample: &[f32], t: i64, prev_t: i64, model_output: &[f32]) -> Vec<f32> {
        let a = self.common.alphas_cumprod[t as usize];
        let a_prev = if prev_t >= 0 {
            self.common.alphas_cumprod[prev_t as usize]
        } else {
            self.final_alpha_cumprod
        };
        let b = 1.0 - a;
        let b_prev = 1.0 - a_prev;
        let sample_coeff = (a_prev / a).sqrt();
        let denom = a * b_prev.sqrt() + (a * b * a_prev).sqrt();
        let diff = a_prev - a;
        let (sa, sb) = (a.sqrt(), b.sqrt());
        sample
            .iter()
            .zip(model_output)
            .map(|(&s, &m)| {
                let m = match self.common.prediction_type {
                    PredictionType::Epsilon => m,
                    PredictionType::VPrediction => sa * m + sb * s,
                };
                sample_coeff * s - diff * m / denom
            })
            .collect()
    }
}

fn combine(ets: &[Vec<f32>], f: impl Fn(&[f32]) -> f32) -> Vec<f32> {
    (0..ets[0].len())
        .map(|i| {
            let v: Vec<f32> = ets.iter().map(|e| e[i]).collect();
            f(&v)
        })
        .collect()
}

impl Scheduler for PndmScheduler {
    fn name(&self) -> &'static str {
        "PNDMScheduler"
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        check_steps(n, self.common.num_train_timesteps)?;
        let c = &self.common;
        let mut asc = checked_int_timesteps_desc(
            c.timestep_spacing,
            n,
            c.num_train_timesteps,
            c.steps_offset,
        )?;
        asc.reverse();
        // plms = concat(t[:-1], t[-2:-1], t[-1:])[::-1]
        let len = asc.len();
        let mut plms: Vec<i64> = asc[..len - 1].to_vec();
        if len >= 2 {
            plms.push(asc[len - 2]);
        }
        plms.push(asc[len - 1]);
        plms.reverse();
        self.timesteps = plms.into_iter().map(|t| t as f32).collect();
        self.num_inference_steps = Some(n);
        self.ets.clear();
        self.counter = 0;
        self.cur_sample = None;
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
        _noise: &mut dyn NoiseSource,
    ) -> Result<StepOutput> {
        let n = self.num_inference_steps.ok_or(SchedError::NotInitialized)?;
        check_len(sample.len(), model_output.len())?;
        let ratio = (self.common.num_train_timesteps / n) as i64;
        let mut t = timestep as i64;
        let mut prev_t = t - ratio;
        if self.counter != 1 {
            if self.ets.len() > 3 {
                self.ets.drain(..self.ets.len() - 3);
            }
            self.ets.push(model_output.to_vec());
        } else {
            prev_t = t;
            t += ratio;
        }
        let mut sample = sample.to_vec();
        let e = &self.ets;
        let k = e.len();
        let mo: Vec<f32> = if k == 1 && self.counter == 0 {
            self.cur_sample = Some(sample.clone());
            model_output.to_vec()
        } else if k == 1 && self.counter == 1 {
            sample = self.cur_sample.take().unwrap_or(sample);
            model_output
                .iter()
                .zip(&e[0])
                .map(|(&m, &e1)| (m + e1) / 2.0)
                .collect()
        } else if k == 2 {
            combine(&e[k - 2..], |v| (3.0 * v[1] - v[0]) / 2.0)
        } else if k == 3 {
            combine(&e[k - 3..], |v| {
                (23.0 * v[2] - 16.0 * v[1] + 5.0 * v[0]) / 12.0
            })
        } else {
            let c = (1.0f64 / 24.0) as f32;
            combine(&e[k - 4..], |v| {
                c * (55.0 * v[3] - 59.0 * v[2] + 37.0 * v[1] - 9.0 * v[0])
            })
        };
        let prev_sample = self.prev_sample(&sample, t, prev_t, &mo);
        self.counter += 1;
        Ok(StepOutput {
            prev_sample,
            pred_original_sample: None,
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
