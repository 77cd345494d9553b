//! Errors of the compression passes.

/// Why a compression pass could not run.
#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    /// An error from the IR crate (reading a weight, building an op).
    #[error(transparent)]
    Mil(#[from] sd_mil::MilError),
    /// An option is outside what Core ML supports.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// The option.
        option: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A weight cannot be compressed (non-finite values, unsupported type).
    #[error("weight `{name}`: {reason}")]
    BadWeight {
        /// The const op's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The program has no `main` function.
    #[error("the program has no `main` function")]
    NoMain,
    /// The model cannot be cut into two chunks.
    #[error("cannot chunk: {reason}")]
    Chunk {
        /// Why.
        reason: String,
    },
    /// A recipe file could not be read.
    #[error("recipe {path}: {reason}")]
    Recipe {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A recipe names a weight the model does not have (or one too small to compress).
    #[error(
        "the recipe names `{name}`, which is no compressible weight of this model (a float const \
         of rank ≥ 2 above the weight threshold){hint}"
    )]
    UnknownWeight {
        /// The name.
        name: String,
        /// Similar names, when any.
        hint: String,
    },
    /// The pre-analysis could not run (the model failed, or nothing to measure).
    #[error("pre-analysis: {reason}")]
    Analysis {
        /// Why.
        reason: String,
    },
}
