//! Diffusion schedulers numerically equal to Hugging Face diffusers, and the numpy / torch /
//! nvidia Gaussian noise generators bit for bit — in pure Rust on `&[f32]` slices, usable with
//! any tensor backend.
//!
//! * Schedulers ([`Scheduler`]): [`PndmScheduler`] (PLMS), [`DdimScheduler`],
//!   [`DpmSolverMultistepScheduler`] (DPM-Solver++ 2M, Karras sigmas), [`EulerDiscreteScheduler`],
//!   [`EulerAncestralDiscreteScheduler`], [`LmsDiscreteScheduler`], [`LcmScheduler`]; configured
//!   from a diffusers `scheduler_config.json` ([`SchedulerConfig`], [`from_config`]). They compute
//!   in float32 where diffusers computes with float32 torch tensors and in float64 where it uses
//!   numpy, so timesteps are identical and steps agree to float32 rounding.
//! * Noise ([`noise`]): [`NumpyRng`], [`TorchRng`], [`NvidiaRng`] behind [`NoiseSource`], and the
//!   order in which a pipeline draws from them ([`pipeline`]).
//!
//! ```
//! use sd_sched::{from_config, pipeline, NoiseSource, Scheduler, SchedulerConfig, TorchRng};
//!
//! let config = SchedulerConfig::from_json(
//!     r#"{"_class_name": "EulerAncestralDiscreteScheduler", "beta_schedule": "scaled_linear",
//!         "beta_start": 0.00085, "beta_end": 0.012, "steps_offset": 1}"#,
//! )?;
//! let mut scheduler = from_config(&config)?;
//! scheduler.set_timesteps(20)?;
//!
//! let mut rng = TorchRng::new(93);
//! let mut latents = pipeline::initial_latents(&mut rng, 4 * 8 * 8, scheduler.init_noise_sigma());
//! for t in scheduler.timesteps().to_vec() {
//!     let input = scheduler.scale_model_input(&latents, t)?;
//!     let noise_pred: Vec<f32> = input.iter().map(|x| 0.1 * x).collect(); // the UNet goes here
//!     latents = scheduler.step(&noise_pred, t, &latents, &mut rng)?.prev_sample;
//! }
//! assert_eq!(latents.len(), 256);
//! # Ok::<(), sd_sched::SchedError>(())
//! ```

#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod noise;
pub mod pipeline;
pub mod schedule;

mod ddim;
mod dpm_solver;
mod euler;
mod euler_ancestral;
mod lcm;
mod lms;
mod pndm;
mod sigmas;

pub use config::{BetaSchedule, PredictionType, SchedulerConfig, TimestepSpacing};
pub use ddim::DdimScheduler;
pub use dpm_solver::DpmSolverMultistepScheduler;
pub use error::{Result, SchedError};
pub use euler::EulerDiscreteScheduler;
pub use euler_ancestral::EulerAncestralDiscreteScheduler;
pub use lcm::LcmScheduler;
pub use lms::LmsDiscreteScheduler;
pub use noise::{NoNoise, NoiseSource, NumpyRng, NvidiaRng, RecordedNoise, RngKind, TorchRng};
pub use pndm::PndmScheduler;

/// What one scheduler step produces.
#[derive(Clone, Debug, PartialEq)]
pub struct StepOutput {
    /// The sample for the next (lower-noise) timestep.
    pub prev_sample: Vec<f32>,
    /// The scheduler's estimate of the clean sample x0, where it makes one (LCM: `denoised`).
    pub pred_original_sample: Option<Vec<f32>>,
}

/// A diffusion scheduler: the sampling loop's arithmetic between UNet calls.
///
/// Use as diffusers does: `set_timesteps(n)`, sample `init_noise_sigma()`-scaled noise, then for
/// each `t` in `timesteps()`: `scale_model_input`, run the model, `step`.
pub trait Scheduler {
    /// diffusers' class name, e.g. `"EulerDiscreteScheduler"`.
    fn name(&self) -> &'static str;

    /// Builds the inference schedule of `num_inference_steps` steps and resets the state.
    fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<()>;

    /// The timesteps to run, in order (what the UNet receives).
    fn timesteps(&self) -> &[f32];

    /// The noise levels per step (followed by the final one), for sigma-based schedulers.
    fn sigmas(&self) -> Option<&[f32]> {
        None
    }

    /// The inference step count set by `set_timesteps` (`None` before).
    fn num_inference_steps(&self) -> Option<usize>;

    /// The standard deviation of the initial noise.
    fn init_noise_sigma(&self) -> f32 {
        1.0
    }

    /// The model input for `timestep` (the sample divided by sqrt(sigma²+1) for sigma-based
    /// schedulers; unchanged otherwise).
    fn scale_model_input(&mut self, sample: &[f32], timestep: f32) -> Result<Vec<f32>> {
        let _ = timestep;
        Ok(sample.to_vec())
    }

    /// One denoising step from `sample` at `timestep` given the model's output. Stochastic
    /// schedulers draw one tensor of noise from `noise` per step (deterministic ones draw none).
    fn step(
        &mut self,
        model_output: &[f32],
        timestep: f32,
        sample: &[f32],
        noise: &mut dyn NoiseSource,
    ) -> Result<StepOutput>;

    /// Forward diffusion: `original` noised to the level of `timestep`.
    fn add_noise(&self, original: &[f32], noise: &[f32], timestep: f32) -> Result<Vec<f32>>;

    /// Starts the next run at step `begin_index` (image-to-image); a no-op where diffusers has no
    /// begin index (PNDM, DDIM).
    fn set_begin_index(&mut self, begin_index: usize);

    /// Model evaluations per step (1 for every scheduler here).
    fn order(&self) -> usize {
        1
    }

    /// Image-to-image: validates `strength`, computes the first step as diffusers' pipelines do
    /// (`n − int(n·strength)`), sets the begin index and returns the index into
    /// [`timesteps`](Scheduler::timesteps) to start from (the latents are noised to that
    /// timestep with [`add_noise`](Scheduler::add_noise)).
    fn img2img_start(&mut self, strength: f64) -> Result<usize> {
        if !(0.0..=1.0).contains(&strength) {
            return Err(SchedError::StrengthOutOfRange(strength));
        }
        let n = self
            .num_inference_steps()
            .ok_or(SchedError::NotInitialized)?;
        let init = ((n as f64 * strength) as usize).min(n);
        let start = (n - init) * self.order();
        self.set_begin_index(start);
        Ok(start)
    }
}

/// Builds the scheduler named by the config's `_class_name`.
pub fn from_config(config: &SchedulerConfig) -> Result<Box<dyn Scheduler>> {
    let name = config.class_name.as_deref().unwrap_or("");
    Ok(match name {
        "PNDMScheduler" => Box::new(PndmScheduler::new(config)?),
        "DDIMScheduler" => Box::new(DdimScheduler::new(config)?),
        "DPMSolverMultistepScheduler" => Box::new(DpmSolverMultistepScheduler::new(config)?),
        "EulerDiscreteScheduler" => Box::new(EulerDiscreteScheduler::new(config)?),
        "EulerAncestralDiscreteScheduler" => {
            Box::new(EulerAncestralDiscreteScheduler::new(config)?)
        }
        "LMSDiscreteScheduler" => Box::new(LmsDiscreteScheduler::new(config)?),
        "LCMScheduler" => Box::new(LcmScheduler::new(config)?),
        other => return Err(SchedError::Unsupported(format!("_class_name={other:?}"))),
    })
}

pub(crate) fn check_len(expected: usize, got: usize) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(SchedError::LengthMismatch { expected, got })
    }
}

pub(crate) fn check_steps(n: usize, max: usize) -> Result<()> {
    if n == 0 {
        Err(SchedError::ZeroSteps)
    } else if n > max {
        Err(SchedError::TooManySteps { steps: n, max })
    } else {
        Ok(())
    }
}
