//! Errors of the converter: every variant names the file (and tensor or key) it is about.

use std::path::PathBuf;

/// Everything that can go wrong while reading weights and building a network.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An input file refused before reading: not a regular file, too large, or a path that
    /// leads outside its folder.
    #[error(transparent)]
    File(#[from] sd_mil::files::FileError),
    /// A JSON file did not parse, or a key is missing or has the wrong type.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong (serde names the key).
        message: String,
    },
    /// A configuration option this converter does not build.
    #[error("{path}: unsupported `{key}` = {value}: {why}")]
    Unsupported {
        /// The config file.
        path: PathBuf,
        /// The key.
        key: String,
        /// Its value.
        value: String,
        /// What is supported.
        why: String,
    },
    /// A safetensors file whose header is malformed.
    #[error("{path}: bad safetensors header: {message}")]
    BadHeader {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tensor whose data lies beyond the end of its file.
    #[error(
        "{path}: tensor `{tensor}` needs bytes {start}..{end} but the file holds only {available} data bytes (truncated file?)"
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// First data byte.
        start: usize,
        /// One past the last data byte.
        end: usize,
        /// Data bytes present.
        available: usize,
    },
    /// A tensor the network needs is absent.
    #[error("{path}: no tensor `{tensor}`")]
    MissingTensor {
        /// The weights directory or file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
    },
    /// A tensor whose shape does not fit the configuration.
    #[error("{path}: tensor `{tensor}` has shape {got:?}, the configuration needs {expected:?}")]
    TensorShape {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// What the configuration implies.
        expected: Vec<usize>,
        /// What the file holds.
        got: Vec<usize>,
    },
    /// A tensor of an element type the converter does not read.
    #[error("{path}: tensor `{tensor}` has element type {dtype}; expected F16, BF16 or F32")]
    TensorDtype {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// The safetensors dtype string.
        dtype: String,
    },
    /// A PyTorch pickle that `pytorch-reader` could not parse (truncated, not a checkpoint, …).
    #[error("{path}: cannot read PyTorch checkpoint: {message}")]
    Pickle {
        /// The file.
        path: PathBuf,
        /// The reader's message.
        message: String,
    },
    /// A single-file checkpoint whose layout is not a supported Stable Diffusion one.
    #[error("{path}: {message}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong, naming the tensors involved.
        message: String,
    },
    /// Something about the requested conversion is invalid (sizes, options).
    #[error("{0}")]
    Invalid(String),
    /// Building or writing the MIL program failed.
    #[error(transparent)]
    Mil(#[from] sd_mil::MilError),
}

impl From<sd_mil::ProgramError> for ConvertError {
    fn from(e: sd_mil::ProgramError) -> Self {
        ConvertError::Mil(e.into())
    }
}

/// Result with [`ConvertError`].
pub type Result<T, E = ConvertError> = std::result::Result<T, E>;
