//! LMS: linear multistep on the sigma schedule (up to 4th order).

use crate::config::{Common, Defaults, SchedulerConfig};
use crate::error::Result;
use crate::noise::NoiseSource;
use crate::sigmas::{KarrasRange, SigmaState, delegate_to_sigma_state, pred_original};
use crate::{Scheduler, StepOutput, check_len};

/// diffusers' `LMSDiscreteScheduler` (order 4, optional Karras sigmas). The multistep
/// coefficients are exact integrals of the Lagrange polynomials (diffusers integrates the same
/// polynomials numerically with `scipy.integrate.quad`).
#[derive(Clone, Debug)]
pub struct LmsDiscreteScheduler {
    common: Common,
    config: SchedulerConfig,
    karras: bool,
    order: usize,
    state: SigmaState,
    derivatives: Vec<Vec<f32>>,
}

impl LmsDiscreteScheduler {
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
            karras: config.use_karras_sigmas.unwrap_or(false),
            order: 4,
            derivatives: Vec::new(),
        })
    }

    /// The integral from sigmas\[t\] to sigmas\[t+1\] of the Lagrange basis polynomial of node
    /// `current` among sigmas\[t\], sigmas\[t−1\], …, sigmas\[t−order+1\].
    fn coefficient(&self, order: usize, t: usize, current: usize) -> f64 {
        let s = &self.state.sigmas;
        let f = |tau: f64| {
            let mut prod = 1.0f64;
            for k in 0..order {
                if k == current {
                    continue;
                }
                prod *= (tau - s[t - k] as f64) / (s[t - current] as f64 - s[t - k] as f64);
            }
            prod
        };
        // 4-point Gauss–Legendre: exact for the polynomials of degree <= 3 used here.
        const X: [f64; 4] = [
            -0.861_136_311_594_052_6,
            -0.339_981_043_584_856_3,
            0.339_981_043_584_856_3,
            0.861_136_311_594_052_6,
        ];
        const W: [f64; 4] = [
            0.347_854_845_137_453_8,
            0.652_145_154_862_546_2,
            0.652_145_154_862_546_2,
            0.347_854_845_137_453_8,
        ];
        let (a, b) = (s[t] as f64, s[t + 1] as f64);
        let half = (b - a) / 2.0;
        let mid = (a + b) / 2.0;
        X.iter()
            .zip(W)
            .map(|(&x, w)| w * f(mid + half * x))
            .sum::<f64>()
            * half
    }
}

impl Scheduler for LmsDiscreteScheduler {
    fn name(&self) -> &'static str {
        "LMSDiscreteScheduler"
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let karras = self.karras.then_some(KarrasRange::Schedule);
        self.state
            .set_timesteps(&self.common, &self.config, n, karras, false)?;
        self.derivatives.clear();
        Ok(())
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
        let x0 = pred_original(self.common.prediction_type, sigma, sample, model_output);
        let derivative: Vec<f32> = sample
            .iter()
            .zip(&x0)
            .map(|(&s, &x)| (s - x) / sigma)
            .collect();
        self.derivatives.push(derivative);
        if self.derivatives.len() > self.order {
            self.derivatives.remove(0);
        }
        let order = (i + 1).min(self.order);
        let coeffs: Vec<f32> = (0..order)
            .map(|c| self.coefficient(order, i, c) as f32)
            .collect();
        let prev = (0..sample.len())
            .map(|j| {
                let mut acc = 0.0f32;
                for (c, d) in coeffs.iter().zip(self.derivatives.iter().rev()) {
                    acc += c * d[j];
                }
                sample[j] + acc
            })
            .collect();
        self.state.step_index = Some(i + 1);
        Ok(StepOutput {
            prev_sample: prev,
            pred_original_sample: Some(x0),
        })
    }
}
