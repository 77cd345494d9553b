//! State shared by the sigma-based schedulers (Euler, Euler ancestral, LMS): the schedule and
//! diffusers' step-index bookkeeping.

use crate::config::{Common, SchedulerConfig, TimestepSpacing};
use crate::error::{Result, SchedError};
use crate::schedule::{
    index_for_timestep, karras_sigmas, log_sigmas, np_interp, sigma_scheduler_timesteps,
    sigma_to_t, train_sigmas,
};

#[derive(Clone, Debug)]
pub(crate) struct SigmaState {
    pub timesteps: Vec<f32>,
    pub sigmas: Vec<f32>,
    pub step_index: Option<usize>,
    pub begin_index: Option<usize>,
    pub num_inference_steps: Option<usize>,
}

/// Which sigma-range rule `_convert_to_karras` follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KarrasRange {
    /// Euler: `config.sigma_min/max` if set, else the interpolated schedule's ends.
    ConfigOrSchedule,
    /// LMS: always the interpolated schedule's ends.
    Schedule,
}

impl SigmaState {
    /// The state diffusers' constructor leaves (all training sigmas, descending, then 0).
    pub fn initial(common: &Common) -> Self {
        let mut sigmas: Vec<f32> = train_sigmas(&common.alphas_cumprod);
        sigmas.reverse();
        sigmas.push(0.0);
        Self {
            timesteps: (0..common.num_train_timesteps)
                .rev()
                .map(|t| t as f32)
                .collect(),
            sigmas,
            step_index: None,
            begin_index: None,
            num_inference_steps: None,
        }
    }

    /// `set_timesteps` of Euler / Euler ancestral / LMS.
    pub fn set_timesteps(
        &mut self,
        common: &Common,
        config: &SchedulerConfig,
        n: usize,
        karras: Option<KarrasRange>,
        final_sigma_min: bool,
    ) -> Result<()> {
        crate::check_steps(n, common.num_train_timesteps)?;
        if karras.is_none() {
            let make = |m| {
                sigma_scheduler_timesteps(
                    common.timestep_spacing,
                    m,
                    common.num_train_timesteps,
                    common.steps_offset,
                )
            };
            crate::schedule::check_timestep_range(n, common.num_train_timesteps, make)?;
        }
        let mut timesteps = sigma_scheduler_timesteps(
            common.timestep_spacing,
            n,
            common.num_train_timesteps,
            common.steps_offset,
        );
        let train = train_sigmas(&common.alphas_cumprod);
        let mut sig: Vec<f64> = timesteps
            .iter()
            .map(|&t| np_interp(t as f64, &train))
            .collect();
        if let Some(range) = karras {
            let (mut lo, mut hi) = (sig[sig.len() - 1], sig[0]);
            if range == KarrasRange::ConfigOrSchedule {
                lo = config.sigma_min.unwrap_or(lo);
                hi = config.sigma_max.unwrap_or(hi);
            }
            sig = karras_sigmas(lo, hi, n);
            let logs = log_sigmas(&train);
            timesteps = sig.iter().map(|&s| sigma_to_t(s, &logs) as f32).collect();
        }
        let last = if final_sigma_min {
            let a = common.alphas_cumprod[0];
            ((1.0 - a) / a).sqrt() as f64
        } else {
            0.0
        };
        sig.push(last);
        self.sigmas = sig.into_iter().map(|s| s as f32).collect();
        self.timesteps = timesteps;
        self.step_index = None;
        self.begin_index = None;
        self.num_inference_steps = Some(n);
        Ok(())
    }

    pub fn init_noise_sigma(&self, spacing: TimestepSpacing) -> f32 {
        let max = self
            .sigmas
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        match spacing {
            TimestepSpacing::Linspace | TimestepSpacing::Trailing => max,
            TimestepSpacing::Leading => (max * max + 1.0).sqrt(),
        }
    }

    /// The step index for `timestep`, initialised on first use as diffusers does.
    pub fn ensure_step_index(&mut self, timestep: f32) -> Result<usize> {
        if self.num_inference_steps.is_none() {
            return Err(SchedError::NotInitialized);
        }
        if let Some(i) = self.step_index {
            return Ok(i);
        }
        let i = match self.begin_index {
            Some(b) => b,
            None => index_for_timestep(&self.timesteps, timestep)
                .ok_or(SchedError::TimestepNotFound(timestep))?,
        };
        self.step_index = Some(i);
        Ok(i)
    }

    /// The sigma index `add_noise` uses for `timestep`.
    pub fn add_noise_index(&self, timestep: f32) -> Result<usize> {
        match self.begin_index {
            None => index_for_timestep(&self.timesteps, timestep)
                .ok_or(SchedError::TimestepNotFound(timestep)),
            Some(b) => Ok(self.step_index.unwrap_or(b)),
        }
    }

    /// `sample / sqrt(sigma² + 1)`.
    pub fn scale(&mut self, sample: &[f32], timestep: f32) -> Result<Vec<f32>> {
        let i = self.ensure_step_index(timestep)?;
        let sigma = self.sigmas[i];
        let c = (sigma * sigma + 1.0).sqrt();
        Ok(sample.iter().map(|&s| s / c).collect())
    }

    /// `original + noise * sigma`.
    pub fn add_noise(&self, original: &[f32], noise: &[f32], timestep: f32) -> Result<Vec<f32>> {
        crate::check_len(original.len(), noise.len())?;
        let sigma = self.sigmas[self.add_noise_index(timestep)?];
        Ok(original
            .iter()
            .zip(noise)
            .map(|(&x, &n)| x + n * sigma)
            .collect())
    }

    /// The index of the step about to be taken, checked against the schedule's end.
    pub fn checked_index(&mut self, timestep: f32) -> Result<usize> {
        let i = self.ensure_step_index(timestep)?;
        if i + 1 >= self.sigmas.len() {
            return Err(SchedError::Finished(self.timesteps.len()));
        }
        Ok(i)
    }
}

/// x0 from the model output at noise level `sigma` (epsilon or v-prediction), float32.
pub(crate) fn pred_original(
    prediction: crate::PredictionType,
    sigma: f32,
    sample: &[f32],
    model_output: &[f32],
) -> Vec<f32> {
    match prediction {
        crate::PredictionType::Epsilon => sample
            .iter()
            .zip(model_output)
            .map(|(&s, &m)| s - sigma * m)
            .collect(),
        crate::PredictionType::VPrediction => {
            let s2p1 = sigma * sigma + 1.0;
            let c_out = -sigma / s2p1.sqrt();
            sample
                .iter()
                .zip(model_output)
                .map(|(&s, &m)| m * c_out + s / s2p1)
                .collect()
        }
    }
}

/// The `Scheduler` methods every sigma-based scheduler (Euler, Euler ancestral, LMS) delegates
/// to its `state: SigmaState` and `common: Common` fields: timesteps, sigmas, step count, initial
/// noise sigma, input scaling, noise addition and the begin index.
macro_rules! delegate_to_sigma_state {
    () => {
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

        fn add_noise(&self, original: &[f32], noise: &[f32], timestep: f32) -> Result<Vec<f32>> {
            self.state.add_noise(original, noise, timestep)
        }

        fn set_begin_index(&mut self, begin_index: usize) {
            self.state.begin_index = Some(begin_index);
        }
    };
}
pub(crate) use delegate_to_sigma_state;
