//! Conversion between the IR and Core ML's protobuf messages (`coreml-proto`, prost).
//!
//! [`read`] turns a decoded `Model` into a checked [`crate::Model`]; [`write`] turns a model
//! back into protobuf, streaming large constants into a `weight.bin` writer.

pub mod read;
mod value;
pub mod write;

/// The generated protobuf types, re-exported for users that need raw access.
pub use coreml_proto::proto as pb;

/// The blob file name that `const` values refer to.
pub const WEIGHT_FILE_NAME: &str = "@model_path/weights/weight.bin";
