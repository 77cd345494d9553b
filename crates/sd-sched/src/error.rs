//! Errors.

/// Everything that can go wrong configuring or running a scheduler.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SchedError {
    /// `scheduler_config.json` is not valid JSON or has a field of the wrong type.
    #[error("invalid scheduler config: {0}")]
    Config(String),
    /// `beta_schedule` is none of linear, scaled_linear, squaredcos_cap_v2.
    #[error("unknown beta_schedule {0:?} (expected linear, scaled_linear or squaredcos_cap_v2)")]
    UnknownBetaSchedule(String),
    /// `prediction_type` is none of epsilon, v_prediction.
    #[error("unknown prediction_type {0:?} (expected epsilon or v_prediction)")]
    UnknownPredictionType(String),
    /// `timestep_spacing` is none of linspace, leading, trailing.
    #[error("unknown timestep_spacing {0:?} (expected linspace, leading or trailing)")]
    UnknownTimestepSpacing(String),
    /// A config option this crate does not implement (named with its value).
    #[error("unsupported scheduler option {0}")]
    Unsupported(String),
    /// `set_timesteps(0)`.
    #[error("num_inference_steps must be at least 1")]
    ZeroSteps,
    /// More inference steps than the scheduler allows.
    #[error("num_inference_steps {steps} is larger than the maximum {max}")]
    TooManySteps {
        /// Requested steps.
        steps: usize,
        /// Largest allowed.
        max: usize,
    },
    /// The spacing and `steps_offset` put a timestep beyond the training schedule (diffusers
    /// raises an IndexError there: SD's `leading` spacing with offset 1 at 1000 steps).
    #[error(
        "{steps} steps reach timestep {timestep}, beyond the {num_train} training timesteps (timestep_spacing and steps_offset of this config); use at most {max_ok} steps"
    )]
    TimestepOutOfRange {
        /// Requested steps.
        steps: usize,
        /// The offending timestep.
        timestep: i64,
        /// `num_train_timesteps`.
        num_train: usize,
        /// The most steps whose timesteps stay in range.
        max_ok: usize,
    },
    /// The spacing gives the same timestep twice (a step that does not move: diffusers' DPM-Solver
    /// makes NaN there).
    #[error(
        "{steps} steps repeat timesteps under this config's timestep_spacing (a step would not move); use at most {max_ok} steps"
    )]
    RepeatedTimesteps {
        /// Requested steps.
        steps: usize,
        /// The most steps without a repeat.
        max_ok: usize,
    },
    /// Image-to-image strength outside [0, 1].
    #[error("strength {0} is outside [0, 1]")]
    StrengthOutOfRange(f64),
    /// `step` / `scale_model_input` before `set_timesteps`.
    #[error("set_timesteps must be called before stepping")]
    NotInitialized,
    /// A timestep that is not in the schedule.
    #[error("timestep {0} is not in the schedule")]
    TimestepNotFound(f32),
    /// The scheduler has run all its steps.
    #[error("all {0} steps have been taken")]
    Finished(usize),
    /// Tensors of different lengths.
    #[error("length mismatch: expected {expected} values, got {got}")]
    LengthMismatch {
        /// Expected length.
        expected: usize,
        /// Actual length.
        got: usize,
    },
}

/// Result alias.
pub type Result<T, E = SchedError> = std::result::Result<T, E>;
