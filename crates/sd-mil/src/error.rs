//! Errors of this crate. Each names the file, op or parameter at fault.

use crate::blob::BlobError;
use std::path::PathBuf;

/// An error about one op or value of a program, found while building, reading or checking it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProgramError {
    /// The op type is not in the catalogue.
    #[error("op `{op}`: unknown op type `{op_type}`")]
    UnknownOp {
        /// Op name.
        op: String,
        /// Op type.
        op_type: String,
    },
    /// The op type exists, but not in this function's opset.
    #[error("op `{op}`: `{op_type}` does not exist in opset {opset}")]
    NotInOpset {
        /// Op name.
        op: String,
        /// Op type.
        op_type: String,
        /// The function's opset.
        opset: String,
    },
    /// A required parameter is not bound.
    #[error("op `{op}` ({op_type}): missing required input `{param}`")]
    MissingInput {
        /// Op name.
        op: String,
        /// Op type.
        op_type: String,
        /// Parameter name.
        param: String,
    },
    /// A bound parameter is not one the op has.
    #[error("op `{op}` ({op_type}): unknown input `{param}`")]
    UnknownParam {
        /// Op name.
        op: String,
        /// Op type.
        op_type: String,
        /// Parameter name.
        param: String,
    },
    /// A parameter has a type the op does not accept.
    #[error("op `{op}` ({op_type}): input `{param}` has type {found}, expected {expected}")]
    WrongType {
        /// Op name.
        op: String,
        /// Op type.
        op_type: String,
        /// Parameter name.
        param: String,
        /// What the op accepts.
        expected: String,
        /// What was bound.
        found: String,
    },
    /// A parameter's value or shape is not valid for the op.
    #[error("op `{op}` ({op_type}): input `{param}`: {reason}")]
    InvalidValue {
        /// Op name.
        op: String,
        /// Op type.
        op_type: String,
        /// Parameter name.
        param: String,
        /// What is wrong.
        reason: String,
    },
    /// A parameter must be a compile-time constant but is computed.
    #[error("op `{op}` ({op_type}): input `{param}` must be a constant")]
    NotConst {
        /// Op name.
        op: String,
        /// Op type.
        op_type: String,
        /// Parameter name.
        param: String,
    },
    /// A binding names a value that no earlier op or input defines.
    #[error("op `{op}`: input refers to undefined value `{name}`")]
    UndefinedValue {
        /// Op name (or "<outputs>" for the block outputs).
        op: String,
        /// The missing value.
        name: String,
    },
    /// Two values share a name.
    #[error("value `{name}` is defined twice")]
    DuplicateValue {
        /// The name.
        name: String,
    },
    /// An identifier does not match `[A-Za-z_][A-Za-z0-9_@]*`.
    #[error("`{name}` is not a valid MIL identifier")]
    BadIdentifier {
        /// The name.
        name: String,
    },
    /// A declared output type differs from the type the op produces.
    #[error(
        "op `{op}` ({op_type}): output `{output}` is declared {declared} but the op gives {inferred}"
    )]
    OutputMismatch {
        /// Op name.
        op: String,
        /// Op type.
        op_type: String,
        /// Output name.
        output: String,
        /// Declared type.
        declared: String,
        /// Inferred type.
        inferred: String,
    },
}

/// Any error of this crate.
#[derive(Debug, thiserror::Error)]
pub enum MilError {
    /// A file could not be read or written.
    #[error("{path}: {source}", path = path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An input file refused before parsing (not a regular file, too large, outside the
    /// package) or an output the tool must not replace.
    #[error(transparent)]
    File(#[from] crate::files::FileError),
    /// A `weight.bin` problem.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// `model.mlmodel` is not a valid protobuf.
    #[error("{path}: not a valid Core ML model protobuf: {source}", path = path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: prost::DecodeError,
    },
    /// MIL text (a compiled model's `model.mil`) that does not parse.
    #[error("{path}:{line}:{column}: {reason}", path = path.display(), line = source.line, column = source.column, reason = source.reason)]
    Text {
        /// The file.
        path: PathBuf,
        /// Where and what.
        source: crate::mil_text::TextError,
    },
    /// A file is readable but its content breaks a rule of the format.
    #[error("{path}: {field}: {reason}", path = path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// The field at fault (e.g. `itemInfoEntries`, `description.input[0]`).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A program error inside a file.
    #[error("{path}: {source}", path = path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// The error.
        source: Box<ProgramError>,
    },
    /// A program error.
    #[error(transparent)]
    Program(Box<ProgramError>),
    /// A constant whose data does not fit its type.
    #[error("invalid constant: {reason}")]
    InvalidConst {
        /// What is wrong.
        reason: String,
    },
    /// Something this crate does not support.
    #[error("unsupported: {what}")]
    Unsupported {
        /// What.
        what: String,
    },
    /// The output exists and overwriting was not asked for.
    #[error("{path} already exists (allow overwriting to replace it)", path = path.display())]
    AlreadyExists {
        /// The existing path.
        path: PathBuf,
    },
}

impl From<ProgramError> for MilError {
    fn from(e: ProgramError) -> Self {
        MilError::Program(Box::new(e))
    }
}

impl MilError {
    /// An I/O error on a path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        MilError::Io {
            path: path.into(),
            source,
        }
    }

    /// A format error on a path and field.
    pub fn format(
        path: impl Into<PathBuf>,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        MilError::Format {
            path: path.into(),
            field: field.into(),
            reason: reason.into(),
        }
    }
}
