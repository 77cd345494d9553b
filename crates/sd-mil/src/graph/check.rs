//! Whole-program checks: names defined once and before use, every op valid for the catalogue,
//! declared output types equal to the inferred ones.

use crate::catalogue::{ValueInfo, infer_op};
use crate::error::ProgramError;
use crate::program::{Function, Program};
use crate::{ConstValue, TensorType};
use std::collections::HashMap;

/// Checks every function of a program (see [`check_function`]).
pub fn check_program(p: &Program) -> Result<(), ProgramError> {
    p.functions.values().try_for_each(check_function)
}

/// Checks a function: identifiers unique, inputs defined before use, each op valid against the
/// catalogue with declared output types equal to its type rule's, block outputs defined.
pub fn check_function(f: &Function) -> Result<(), ProgramError> {
    let mut values: HashMap<&str, (&TensorType, Option<&ConstValue>)> = HashMap::new();
    for v in &f.inputs {
        if values.insert(&v.name, (&v.ty, None)).is_some() {
            return Err(ProgramError::DuplicateValue {
                name: v.name.clone(),
            });
        }
    }
    for op in &f.operations {
        let inferred = {
            let lookup = |n: &str| {
                values
                    .get(n)
                    .map(|(ty, konst)| ValueInfo { ty, konst: *konst })
            };
            infer_op(op, f.opset, &lookup)?
        };
        if inferred.len() != op.outputs.len() {
            return Err(ProgramError::OutputMismatch {
                op: op.name.clone(),
                op_type: op.op_type.clone(),
                output: format!("{} outputs", op.outputs.len()),
                declared: op.outputs.len().to_string(),
                inferred: inferred.len().to_string(),
            });
        }
        for (v, ty) in op.outputs.iter().zip(&inferred) {
            if &v.ty != ty {
                return Err(ProgramError::OutputMismatch {
                    op: op.name.clone(),
                    op_type: op.op_type.clone(),
                    output: v.name.clone(),
                    declared: v.ty.to_string(),
                    inferred: ty.to_string(),
                });
            }
            if values.insert(&v.name, (&v.ty, op.const_value())).is_some() {
                return Err(ProgramError::DuplicateValue {
                    name: v.name.clone(),
                });
            }
        }
    }
    for o in &f.outputs {
        if !values.contains_key(o.as_str()) {
            return Err(ProgramError::UndefinedValue {
                op: "<outputs>".into(),
                name: o.clone(),
            });
        }
    }
    Ok(())
}
