//! DPM-Solver++ multistep (2M), the "DPM++ 2M" / "DPM++ 2M Karras" samplers.

use crate::config::{Common, Defaults, PredictionType, SchedulerConfig, TimestepSpacing};
use crate::error::{Result, SchedError};
use crate::noise::NoiseSource;
use crate::schedule::{
    karras_sigmas, log_sigmas, np_arange, np_interp, np_linspace, sigma_to_t, train_sigmas,
};
use crate::{Scheduler, StepOutput, check_len, check_steps};

/// diffusers' `DPMSolverMultistepScheduler` with `algorithm_type = "dpmsolver++"`,
/// `solver_order` 1 or 2, `solver_type` midpoint or heun, Karras sigmas, `lower_order_final`,
/// `euler_at_final`, `final_sigmas_type` and `lambda_min_clipped`.
#[derive(Clone, Debug)]
pub struct DpmSolverMultistepScheduler {
    common: Common,
    solver_order: usize,
    heun: bool,
    lower_order_final: bool,
    euler_at_final: bool,
    karras: bool,
    final_sigma_min: bool,
    lambda_min_clipped: f64,
    sigma_min: Option<f64>,
    sigma_max: Option<f64>,
    num_inference_steps: Option<usize>,
    timesteps: Vec<f32>,
    sigmas: Vec<f32>,
    /// Converted model outputs (x0 predictions) of the last `solver_order` steps, oldest first.
    model_outputs: Vec<Option<Vec<f32>>>,
    lower_order_nums: usize,
    step_index: Option<usize>,
    begin_index: Option<usize>,
}

/// (alpha_t, sigma_t) of a Karras-style sigma, float32.
fn alpha_sigma(sigma: f32) -> (f32, f32) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    (alpha, sigma * alpha)
}

impl DpmSolverMultistepScheduler {
    /// From a config (class defaults: linear betas 1e-4→0.02, linspace spacing, order 2,
    /// dpmsolver++, midpoint, lower_order_final).
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
        let algorithm = config.algorithm_type.as_deref().unwrap_or("dpmsolver++");
        if algorithm != "dpmsolver++" && algorithm != "deis" {
            return Err(SchedError::Unsupported(format!(
                "algorithm_type={algorithm}"
            )));
        }
        let heun = match config.solver_type.as_deref().unwrap_or("midpoint") {
            "midpoint" | "logrho" | "bh1" | "bh2" => false,
            "heun" => true,
            other => return Err(SchedError::Unsupported(format!("solver_type={other}"))),
        };
        let solver_order = config.solver_order.unwrap_or(2);
        if !(1..=2).contains(&solver_order) {
            return Err(SchedError::Unsupported(format!(
                "solver_order={solver_order}"
            )));
        }
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
            solver_order,
            heun,
            lower_order_final: config.lower_order_final.unwrap_or(true),
            euler_at_final: config.euler_at_final.unwrap_or(false),
            karras: config.use_karras_sigmas.unwrap_or(false),
            final_sigma_min,
            lambda_min_clipped: config.lambda_min_clipped.unwrap_or(f64::NEG_INFINITY),
            sigma_min: config.sigma_min,
            sigma_max: config.sigma_max,
            num_inference_steps: None,
            timesteps: (0..common.num_train_timesteps)
                .rev()
                .map(|t| t as f32)
                .collect(),
            sigmas: train_sigmas(&common.alphas_cumprod),
            common,
            model_outputs: vec![None; solver_order],
            lower_order_nums: 0,
            step_index: None,
            begin_index: None,
        })
    }

    fn sigma_index(&self, timestep: f32) -> usize {
        let mut it = self
            .timesteps
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == timestep)
            .map(|(i, _)| i);
        match (it.next(), it.next()) {
            (None, _) => self.timesteps.len() - 1,
            (Some(_), Some(second)) => second,
            (Some(first), None) => first,
        }
    }
}

impl DpmSolverMultistepScheduler {
    /// The timesteps of `n` steps under the config's spacing, before any checks.
    fn spaced_timesteps(&self, n: usize) -> Vec<f64> {
        let c = &self.common;
        let train_n = c.num_train_timesteps;
        // lambda_t = log(alpha_t) - log(sigma_t); searchsorted(flip(lambda_t), lambda_min_clipped)
        let clipped_idx = c
            .alphas_cumprod
            .iter()
            .rev()
            .map(|&a| (a.sqrt() as f64).ln() as f32 - ((1.0 - a).sqrt() as f64).ln() as f32)
            .filter(|&l| (l as f64) < self.lambda_min_clipped)
            .count();
        let last = train_n - clipped_idx;
        match c.timestep_spacing {
            TimestepSpacing::Linspace => {
                let mut v: Vec<f64> = np_linspace(0.0, last as f64 - 1.0, n + 1)
                    .into_iter()
                    .map(f64::round_ties_even)
                    .rev()
                    .collect();
                v.pop();
                v
            }
            TimestepSpacing::Leading => {
                let ratio = last / (n + 1);
                (1..=n)
                    .rev()
                    .map(|i| (i * ratio) as f64 + c.steps_offset as f64)
                    .collect()
            }
            TimestepSpacing::Trailing => {
                let ratio = train_n as f64 / n as f64;
                np_arange(last as f64, 0.0, -ratio)
                    .into_iter()
                    .map(|v| v.round_ties_even() - 1.0)
                    .collect()
            }
        }
    }
}

impl Scheduler for DpmSolverMultistepScheduler {
    fn name(&self) -> &'static str {
        "DPMSolverMultistepScheduler"
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let c = &self.common;
        let train_n = c.num_train_timesteps;
        check_steps(n, train_n)?;
        let mut ts = self.spaced_timesteps(n);
        let usable = |ts: &[f64]| {
            ts.iter().all(|&t| t >= 0.0 && t < train_n as f64) && ts.windows(2).all(|w| w[0] > w[1])
        };
        // Karras sigmas make their own timesteps; the spacing's are checked only when used.
        if !self.karras && !usable(&ts) {
            let max_ok = (1..n)
                .rev()
                .find(|&m| usable(&self.spaced_timesteps(m)))
                .unwrap_or(0);
            return Err(match ts.iter().find(|&&t| t < 0.0 || t >= train_n as f64) {
                Some(&t) => SchedError::TimestepOutOfRange {
                    steps: n,
                    timestep: t as i64,
                    num_train: train_n,
                    max_ok,
                },
                None => SchedError::RepeatedTimesteps { steps: n, max_ok },
            });
        }
        let train = train_sigmas(&c.alphas_cumprod);
        let mut sig: Vec<f64> = if self.karras {
            let lo = self.sigma_min.unwrap_or(train[0] as f64);
            let hi = self.sigma_max.unwrap_or(train[train.len() - 1] as f64);
            let s = karras_sigmas(lo, hi, n);
            let logs = log_sigmas(&train);
            let round = c.beta_schedule != "squaredcos_cap_v2";
            ts = s
                .iter()
                .map(|&x| {
                    let t = sigma_to_t(x, &logs);
                    if round {
                        t.round_ties_even()
                    } else {
                        t.trunc()
                    }
                })
                .collect();
            s
        } else {
            ts.iter().map(|&t| np_interp(t, &train)).collect()
        };
        let last_sigma = if self.final_sigma_min {
            let a = c.alphas_cumprod[0];
            ((1.0 - a) / a).sqrt() as f64
        } else {
            0.0
        };
        sig.push(last_sigma);
        self.sigmas = sig.into_iter().map(|s| s as f32).collect();
        self.timesteps = ts.into_iter().map(|t| t as i64 as f32).collect();
        self.num_inference_steps = Some(self.timesteps.len());
        self.model_outputs = vec![None; self.solver_order];
        self.lower_order_nums = 0;
        self.step_index = None;
        self.begin_index = None;
        Ok(())
    }

    fn timesteps(&self) -> &[f32] {
        &self.timesteps
    }

    fn sigmas(&self) -> Option<&[f32]> {
        Some(&self.sigmas)
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
        let len = self.num_inference_steps.ok_or(SchedError::NotInitialized)?;
        check_len(sample.len(), model_output.len())?;
        let i = match (self.step_index, self.begin_index) {
            (Some(i), _) => i,
            (None, Some(b)) => b,
            (None, None) => self.sigma_index(timestep),
        };
        if i >= len {
            return Err(SchedError::Finished(len));
        }
        let lower_order_final = i == len - 1
            && (self.euler_at_final
                || (self.lower_order_final && len < 15)
                || !self.final_sigma_min);

        // convert_model_output: x0 prediction
        let (alpha_s0, sigma_s0) = alpha_sigma(self.sigmas[i]);
        let x0: Vec<f32> = sample
            .iter()
            .zip(model_output)
            .map(|(&s, &m)| match self.common.prediction_type {
                PredictionType::Epsilon => (s - sigma_s0 * m) / alpha_s0,
                PredictionType::VPrediction => alpha_s0 * s - sigma_s0 * m,
            })
            .collect();
        self.model_outputs.remove(0);
        self.model_outputs.push(Some(x0.clone()));

        let (alpha_t, sigma_t) = alpha_sigma(self.sigmas[i + 1]);
        let lambda_t = alpha_t.ln() - sigma_t.ln();
        let lambda_s0 = alpha_s0.ln() - sigma_s0.ln();
        let h = lambda_t - lambda_s0;
        let ratio = sigma_t / sigma_s0;
        let coeff = alpha_t * ((-h).exp() - 1.0);

        let prev: Vec<f32> =
            if self.solver_order == 1 || self.lower_order_nums < 1 || lower_order_final {
                sample
                    .iter()
                    .zip(&x0)
                    .map(|(&s, &d0)| ratio * s - coeff * d0)
                    .collect()
            } else {
                let m1 = self.model_outputs[self.solver_order - 2]
                    .as_ref()
                    .expect("previous model output");
                let (alpha_s1, sigma_s1) = alpha_sigma(self.sigmas[i - 1]);
                let lambda_s1 = alpha_s1.ln() - sigma_s1.ln();
                let h_0 = lambda_s0 - lambda_s1;
                let r0 = h_0 / h;
                let inv_r0 = 1.0 / r0;
                if self.heun {
                    let c2 = alpha_t * (((-h).exp() - 1.0) / h + 1.0);
                    sample
                        .iter()
                        .zip(&x0)
                        .zip(m1)
                        .map(|((&s, &d0), &m1)| {
                            let d1 = inv_r0 * (d0 - m1);
                            ratio * s - coeff * d0 + c2 * d1
                        })
                        .collect()
                } else {
                    let half = 0.5 * coeff;
                    sample
                        .iter()
                        .zip(&x0)
                        .zip(m1)
                        .map(|((&s, &d0), &m1)| {
                            let d1 = inv_r0 * (d0 - m1);
                            ratio * s - coeff * d0 - half * d1
                        })
                        .collect()
                }
            };
        if self.lower_order_nums < self.solver_order {
            self.lower_order_nums += 1;
        }
        self.step_index = Some(i + 1);
        Ok(StepOutput {
            prev_sample: prev,
            pred_original_sample: Some(x0),
        })
    }

    fn add_noise(&self, original: &[f32], noise: &[f32], timestep: f32) -> Result<Vec<f32>> {
        check_len(original.len(), noise.len())?;
        let i = match self.begin_index {
            None => self.sigma_index(timestep),
            Some(b) => self.step_index.unwrap_or(b),
        };
        let (alpha, sigma) = alpha_sigma(self.sigmas[i]);
        Ok(original
            .iter()
            .zip(noise)
            .map(|(&x, &n)| alpha * x + sigma * n)
            .collect())
    }

    fn set_begin_index(&mut self, begin_index: usize) {
        self.begin_index = Some(begin_index);
    }
}
