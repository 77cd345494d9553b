//! Typed errors of the runtime: every variant names the package, op, parameter or feature.

use std::path::PathBuf;

/// Everything that can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The package could not be read or failed sd-mil's checks.
    #[error("reading package {path}: {source}")]
    Package {
        /// Package path.
        path: PathBuf,
        /// The reader's error.
        #[source]
        source: sd_mil::MilError,
    },
    /// The GPU or its libraries failed (the CUDA engine: driver, cuBLAS, cuDNN, NVRTC).
    #[error("GPU: {reason}")]
    Gpu {
        /// What went wrong.
        reason: String,
    },
    /// The program has no `main` function.
    #[error("the program has no `main` function")]
    NoMain,
    /// An op type with no kernel.
    #[error("op `{op}`: no kernel for op type `{op_type}`")]
    UnknownOp {
        /// Op name.
        op: String,
        /// Op type.
        op_type: String,
    },
    /// A parameter is missing, has the wrong form, or holds a value the kernel cannot use.
    #[error("op `{op}` ({op_type}), parameter `{param}`: {reason}")]
    BadParam {
        /// Op name.
        op: String,
        /// Op type.
        op_type: String,
        /// Parameter name.
        param: String,
        /// What is wrong.
        reason: String,
    },
    /// A kernel failed.
    #[error("op `{op}` ({op_type}): {reason}")]
    Kernel {
        /// Op name.
        op: String,
        /// Op type.
        op_type: String,
        /// What went wrong.
        reason: String,
    },
    /// A constant could not be read (missing or truncated blob, unsupported dtype).
    #[error("constant `{name}`: {reason}")]
    Const {
        /// Value name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A value is used before any op produces it.
    #[error("op `{op}` reads `{name}`, which nothing defines")]
    Undefined {
        /// Reading op.
        op: String,
        /// Value name.
        name: String,
    },
    /// A prediction input that the model does not have.
    #[error("input `{name}` is not a model input (inputs: {expected})")]
    UnknownInput {
        /// The name given.
        name: String,
        /// The model's inputs.
        expected: String,
    },
    /// A model input that was not given.
    #[error("missing model input `{name}`")]
    MissingInput {
        /// Feature name.
        name: String,
    },
    /// An input with the wrong shape.
    #[error("input `{name}`: shape {got:?}, the model expects {expected:?}")]
    InputShape {
        /// Feature name.
        name: String,
        /// Shape given.
        got: Vec<usize>,
        /// Shape expected.
        expected: Vec<usize>,
    },
    /// An input with an element type that cannot be converted to the feature's.
    #[error("input `{name}`: element type {got}, the model expects {expected}")]
    InputDType {
        /// Feature name.
        name: String,
        /// Element type given.
        got: String,
        /// Element type expected.
        expected: String,
    },
    /// An input value the model cannot use: NaN or infinity, or an index (a token id) outside
    /// the table it selects from.
    #[error("input `{name}`, element {index}: {reason}")]
    InputValue {
        /// Feature name.
        name: String,
        /// Flat index of the first bad element.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// [`crate::Model::predict_checked`]: the model produced NaN or infinity from finite
    /// inputs; `op` is the first op whose
    /// output held one (fp16 overflow is the usual cause: try fp32 compute).
    #[error("output `{output}` holds {what}; the first op to produce it is `{op}` ({op_type})")]
    NonFiniteOutput {
        /// The model output.
        output: String,
        /// "NaN" or "infinity".
        what: &'static str,
        /// The op that produced the first non-finite value.
        op: String,
        /// Its type.
        op_type: String,
    },
    /// Host tensor data whose length does not match its shape, or an unsupported dtype.
    #[error("tensor `{name}`: {reason}")]
    Tensor {
        /// Tensor name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A safetensors file could not be read or written.
    #[error("safetensors {path}: {reason}")]
    Safetensors {
        /// File path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The requested device is not compiled in.
    #[error("device `{0}` is not available in this build")]
    Device(String),
}

/// Result with [`RuntimeError`].
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
