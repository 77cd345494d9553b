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
}
