//! MIL text: the program as the `model.mil` of a compiled model (`.mlmodelc`) holds it.
//!
//! [`program_text`] writes the syntax Apple's compiler writes (`program(1.0)` with
//! `tensor<fp16, []>` scalars up to iOS17, `program(1.3)` with bare `fp16` scalars for iOS18;
//! floats in exact hexadecimal; weights as `BLOBFILE(…)` references placed by the caller).
//! [`parse_program`] reads either form back into the same [`Program`](crate::Program), with
//! errors naming line and column.
//!
//! ```
//! use sd_mil::builder::FunctionBuilder;
//! use sd_mil::mil_text::{parse_program, program_text, stored_offsets};
//! use sd_mil::{DType, Opset, Program, TensorType};
//!
//! let mut f = FunctionBuilder::new(Opset::CoreML7);
//! let x = f.input("x", TensorType::new(DType::F16, [1, 4])).unwrap();
//! let y = f.op("silu").input("x", &x).name("y").build_one().unwrap();
//! let program = Program::with_main(f.finish(&[&y]).unwrap());
//! let text = program_text(&program, &mut stored_offsets).unwrap();
//! assert!(text.contains("tensor<fp16, [1, 4]> y = silu(x = x)[name = tensor<string, []>(\"y\")];"));
//! let back = parse_program(&text, &mut |path| Err(format!("no weights for {path}"))).unwrap();
//! assert_eq!(back.main().unwrap().operations[0].op_type, "silu");
//! ```

mod lex;
pub mod literal;
mod parse;
mod write;

pub use parse::{BlobResolver, opset_from_text, parse_program};
pub use write::{BlobPlacement, elements, opset_text, program_text, stored_offsets, text_version};

/// A MIL text syntax or literal error, at a line and column (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {reason}")]
pub struct TextError {
    /// Line of the offending token.
    pub line: u32,
    /// Column (in characters) of the offending token.
    pub column: u32,
    /// What is wrong.
    pub reason: String,
}
