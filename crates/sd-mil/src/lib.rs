//! `sd-mil`: the Core ML ML Program ("MIL") spine of the sd toolkit.
//!
//! It holds a typed program IR ([`Program`] → [`Function`] → [`Operation`] over named, typed
//! values), one [`catalogue`] of ops that serves the [`builder`], the protobuf reader's
//! validation and the executor, the protobuf reader and writer ([`proto`]), the `weight.bin`
//! blob format ([`blob`]), `.mlpackage` read/write ([`package`]), compiled `.mlmodelc` read/write ([`compiled`]), graph utilities ([`graph`]),
//! MIL text ([`mil_text`], written and parsed), bounded and confined reads of untrusted files ([`files`]) and the Stable Diffusion models' feature names ([`signature`]).
//!
//! ```
//! use sd_mil::{builder::FunctionBuilder, DType, Opset, TensorType};
//!
//! let mut f = FunctionBuilder::new(Opset::CoreML7);
//! let x = f.input("x", TensorType::new(DType::F16, [1, 4, 8, 8])).unwrap();
//! let y = f.op("silu").input("x", &x).build_one().unwrap();
//! assert_eq!(y.ty, TensorType::new(DType::F16, [1, 4, 8, 8]));
//! ```

pub mod blob;
pub mod builder;
pub mod catalogue;
pub mod compiled;
mod dtype;
mod error;
pub mod files;
pub mod graph;
pub mod mil_text;
mod model;
mod model_folder;
pub mod package;
mod program;
pub mod proto;
mod read_model;
pub mod signature;
mod types;
mod value;

pub use dtype::DType;
pub use error::{MilError, ProgramError};
pub use model::{ArrayDType, FeatureDescription, Metadata, Model, ModelDescription};
pub use program::{Binding, Function, Operation, Opset, Program, Var};
pub use read_model::read_model;
pub use types::TensorType;
pub use value::{ConstData, ConstValue, TensorSource, decode_f32_into};
