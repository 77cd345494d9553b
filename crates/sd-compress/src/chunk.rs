//! Cutting a model into two chunks of about equal weight size, as Apple's
//! `chunk_mlprogram.py` does for the Neural Engine, so each half stays under its size limit.
//!
//! The cut is the first op past half the cumulative weight size that is not a constant and
//! has one output with one consumer. Chunk 1 returns every non-constant value crossing the cut
//! (fp16 ones cast to fp32, under the same names); chunk 2 takes them as fp32 inputs (cast back
//! to fp16) beside the original inputs it still needs. Unlike Apple's tool, weights already
//! compressed by constexpr ops count toward the sizes (so compressing before chunking still
//! splits evenly) and values that are model outputs before the cut are kept.

use crate::CompressError;
use crate::weights::stored_bytes;
use sd_mil::graph::{consumers, eliminate_dead_code};
use sd_mil::{Binding, ConstValue, DType, Function, Model, Operation, TensorType, Var};
use std::collections::{BTreeMap, HashSet};

/// The two halves of a chunked model.
#[derive(Debug, Clone)]
pub struct Chunks {
    /// Runs first; its outputs are the values crossing the cut.
    pub first: Model,
    /// Takes the first chunk's outputs (plus original inputs) and gives the model's outputs.
    pub second: Model,
    /// Index (in the original main function) of the last op in the first chunk.
    pub cut_index: usize,
}

fn is_constant(op: &Operation) -> bool {
    op.op_type == "const" || op.op_type.starts_with("constexpr_")
}

/// The index of the op after which the model is cut (see the module docs).
pub fn cut_index(f: &Function) -> Result<usize, CompressError> {
    let total: u64 = f.operations.iter().map(stored_bytes).sum();
    let mut cumulative = 0u64;
    for (i, op) in f.operations.iter().enumerate() {
        cumulative += stored_bytes(op);
        if 2 * cumulative > total
            && !is_constant(op)
            && op.outputs.len() == 1
            && consumers(f, &op.outputs[0].name).len() == 1
        {
            return Ok(i);
        }
    }
    Err(CompressError::Chunk {
        reason: format!("no op qualifies as a cut point ({total} weight bytes)"),
    })
}

/// A `cast` of `input` to `to` named `name`, with its `dtype` parameter as a const op (the
/// form coremltools writes): returns the const op and the cast op.
fn cast_ops(name: &str, input: &str, to: DType, shape: &[usize]) -> [Operation; 2] {
    let dtype_name = format!("{name}_dtype_0");
    let dtype = Operation {
        op_type: "const".into(),
        name: dtype_name.clone(),
        inputs: Vec::new(),
        outputs: vec![Var::new(&dtype_name, TensorType::scalar(DType::String))],
        attributes: BTreeMap::from([("val".to_string(), ConstValue::string(to.name()))]),
    };
    let cast = Operation {
        op_type: "cast".into(),
        name: name.to_string(),
        inputs: vec![
            ("x".into(), vec![Binding::Name(input.to_string())]),
            ("dtype".into(), vec![Binding::Name(dtype_name)]),
        ],
        outputs: vec![Var::new(name, TensorType::new(to, shape.to_vec()))],
        attributes: BTreeMap::new(),
    };
    [dtype, cast]
}

/// Cuts `model` in two at [`cut_index`]. Both halves are checked against the catalogue.
pub fn chunk(model: &Model) -> Result<Chunks, CompressError> {
    let f = model.program.main().ok_or(CompressError::NoMain)?;
    let cut = cut_index(f)?;
    let inputs: HashSet<&str> = f.inputs.iter().map(|v| v.name.as_str()).collect();
    let later_reads: HashSet<&str> = f.operations[cut + 1..]
        .iter()
        .flat_map(|op| op.input_names())
        .chain(f.outputs.iter().map(String::as_str))
        .collect();
    let boundary: Vec<Var> = f.operations[..=cut]
        .iter()
        .filter(|op| !is_constant(op))
        .flat_map(|op| op.outputs.iter())
        .filter(|v| later_reads.contains(v.name.as_str()))
        .cloned()
        .collect();

    // Chunk 1: ops up to the cut; each boundary value returned as fp32 under its own name.
    let mut first = f.clone();
    first.operations.truncate(cut + 1);
    let mut first_outputs = Vec::new();
    for v in &boundary {
        if v.ty.dtype == DType::F16 {
            let inner = format!("{}_fp16", v.name);
            sd_mil::graph::rename(&mut first, &v.name, &inner).map_err(sd_mil::MilError::from)?;
            first
                .operations
                .extend(cast_ops(&v.name, &inner, DType::F32, &v.ty.shape));
        }
        first_outputs.push(v.name.clone());
    }
    first.outputs = first_outputs;
    eliminate_dead_code(&mut first);
    let first_reads: HashSet<&str> = first
        .operations
        .iter()
        .flat_map(|op| op.input_names())
        .collect();
    first
        .inputs
        .retain(|v| first_reads.contains(v.name.as_str()) || first.outputs.contains(&v.name));

    // Chunk 2: boundary values become fp32 inputs, cast back to fp16 where needed.
    let mut second = f.clone();
    let mut casts = Vec::new();
    for v in &boundary {
        if v.ty.dtype == DType::F16 {
            let cast_name = format!("{}_to_fp16", v.name);
            for op in &mut second.operations[cut + 1..] {
                for (_, bs) in &mut op.inputs {
                    for b in bs {
                        if matches!(b, Binding::Name(n) if *n == v.name) {
                            *b = Binding::Name(cast_name.clone());
                        }
                    }
                }
            }
            for o in &mut second.outputs {
                if *o == v.name {
                    o.clone_from(&cast_name);
                }
            }
            casts.extend(cast_ops(&cast_name, &v.name, DType::F16, &v.ty.shape));
        }
    }
    let kept: Vec<Operation> = second
        .operations
        .drain(..)
        .enumerate()
        .filter(|(i, op)| *i > cut || is_constant(op))
        .map(|(_, op)| op)
        .collect();
    second.operations = casts.into_iter().chain(kept).collect();
    eliminate_dead_code(&mut second);
    let second_reads: HashSet<&str> = second
        .operations
        .iter()
        .flat_map(|op| op.input_names())
        .collect();
    second
        .inputs
        .retain(|v| second_reads.contains(v.name.as_str()) && inputs.contains(v.name.as_str()));
    for v in &boundary {
        second.inputs.push(Var::new(
            &v.name,
            v.ty.with_dtype(if v.ty.dtype == DType::F16 {
                DType::F32
            } else {
                v.ty.dtype
            }),
        ));
    }
    sd_mil::graph::sort_topologically(&mut second).map_err(sd_mil::MilError::from)?;

    let wrap = |func: Function| -> Result<Model, CompressError> {
        sd_mil::graph::check_function(&func).map_err(sd_mil::MilError::from)?;
        let mut program = model.program.clone();
        program.functions.insert("main".into(), func);
        let mut m = Model::from_program(program)?;
        m.spec_version = model.spec_version;
        m.description.metadata = model.description.metadata.clone();
        for d in m
            .description
            .inputs
            .iter_mut()
            .chain(m.description.outputs.iter_mut())
        {
            if let Some(orig) = model
                .description
                .inputs
                .iter()
                .chain(&model.description.outputs)
                .find(|o| o.name == d.name)
            {
                d.short_description.clone_from(&orig.short_description);
            }
        }
        Ok(m)
    };
    Ok(Chunks {
        first: wrap(first)?,
        second: wrap(second)?,
        cut_index: cut,
    })
}
