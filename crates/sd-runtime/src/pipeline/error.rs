//! Typed errors of the pipelines: each names the file, model, input or request field at fault.

use std::path::PathBuf;

/// Everything that can go wrong loading a pipeline or generating an image.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The resource folder does not exist or is not a folder.
    #[error("{path}: not a folder of Core ML models")]
    NotAFolder {
        /// The path given.
        path: PathBuf,
    },
    /// A model the request needs is not in the folder.
    #[error("{folder}: no {model} model (looked for {looked_for})")]
    MissingModel {
        /// The resource folder.
        folder: PathBuf,
        /// Which model (text encoder, UNet, …).
        model: String,
        /// The names tried.
        looked_for: String,
    },
    /// The folder holds models of more than one conversion and none was chosen.
    #[error("{folder}: packages of several models ({ids}); keep one set per folder")]
    AmbiguousModels {
        /// The resource folder.
        folder: PathBuf,
        /// The model ids found.
        ids: String,
    },
    /// No tokenizer files were found.
    #[error(
        "no CLIP tokenizer (vocab.json + merges.txt) in {looked_in}; put them in the resource folder or name a tokenizer folder"
    )]
    MissingTokenizer {
        /// The folders searched.
        looked_in: String,
    },
    /// The tokenizer failed to load.
    #[error(transparent)]
    Tokenizer(#[from] super::tokenizer::TokenizerError),
    /// An image could not be read, written or used.
    #[error(transparent)]
    Image(#[from] super::image::ImageError),
    /// A model failed to load.
    #[error("loading the {model} ({path}): {source}")]
    Load {
        /// Which model.
        model: String,
        /// Its package.
        path: PathBuf,
        /// The runtime's error.
        #[source]
        source: Box<crate::RuntimeError>,
    },
    /// A model failed while running.
    #[error("running the {model}: {source}")]
    Predict {
        /// Which model.
        model: String,
        /// The runtime's error.
        #[source]
        source: Box<crate::RuntimeError>,
    },
    /// A model's signature is not what the pipeline needs.
    #[error("the {model} has an unexpected signature: {reason}")]
    Signature {
        /// Which model.
        model: String,
        /// What is wrong.
        reason: String,
    },
    /// A scheduler error (bad config, step count, strength).
    #[error("scheduler: {0}")]
    Scheduler(#[from] sd_sched::SchedError),
    /// A request field holds a value the pipeline cannot use.
    #[error("{field}: {reason}")]
    BadRequest {
        /// The request field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A config file could not be read.
    #[error("{path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The progress callback asked to stop.
    #[error("cancelled at step {step} of {total}")]
    Cancelled {
        /// Steps done.
        step: usize,
        /// Steps planned.
        total: usize,
    },
}

/// Result with [`PipelineError`].
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

impl PipelineError {
    /// A [`PipelineError::BadRequest`].
    pub fn bad(field: &'static str, reason: impl Into<String>) -> Self {
        PipelineError::BadRequest {
            field,
            reason: reason.into(),
        }
    }
}
