//! Indexing: gather and gather_nd.

use super::p::{konst, req, since};
use super::{Default, InferCtx, OpSpec, ParamForm, TypeSet};
use crate::error::ProgramError;
use crate::{Opset, TensorType};

fn gather(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let (x, idx) = (ctx.ty("x")?, ctx.ty("indices")?);
    let axis = ctx.axis("axis", ctx.int_or("axis", 0)?, x.rank())?;
    let batch = ctx.int_or("batch_dims", 0)?;
    if batch < 0 || batch as usize > axis || batch as usize > idx.rank() {
        return Err(ctx.invalid("batch_dims", format!("{batch} is out of range")));
    }
    let mut shape = x.shape[..axis].to_vec();
    shape.extend_from_slice(&idx.shape[batch as usize..]);
    shape.extend_from_slice(&x.shape[axis + 1..]);
    Ok(vec![TensorType::new(x.dtype, shape)])
}

fn gather_nd(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let (x, idx) = (ctx.ty("x")?, ctx.ty("indices")?);
    let batch = ctx.int_or("batch_dims", 0)?.max(0) as usize;
    let k = *idx
        .shape
        .last()
        .ok_or_else(|| ctx.invalid("indices", "rank 0 indices"))?;
    if batch + k > x.rank() {
        return Err(ctx.invalid("indices", format!("index depth {k} exceeds {x}")));
    }
    let mut shape = idx.shape[..idx.rank() - 1].to_vec();
    shape.extend_from_slice(&x.shape[batch + k..]);
    Ok(vec![TensorType::new(x.dtype, shape)])
}

/// Indexing ops.
pub(super) const OPS: &[OpSpec] = &[
    OpSpec {
        name: "gather",
        params: &[
            req("x", TypeSet::ANY),
            req("indices", TypeSet::INDEX),
            konst("axis", TypeSet::INT32, Default::Int(0)),
            since(
                konst("batch_dims", TypeSet::INT32, Default::Int(0)),
                Opset::CoreML6,
            ),
            since(
                konst("validate_indices", TypeSet::BOOL, Default::Bool(false)),
                Opset::CoreML7,
            ),
        ],
        since: Opset::CoreML5,
        until: None,
        form: ParamForm::Inputs,
        infer: gather,
    },
    OpSpec {
        name: "gather_nd",
        params: &[
            req("x", TypeSet::ANY),
            req("indices", TypeSet::INDEX),
            since(
                konst("batch_dims", TypeSet::INT32, Default::Int(0)),
                Opset::CoreML6,
            ),
            since(
                konst("validate_indices", TypeSet::BOOL, Default::Bool(false)),
                Opset::CoreML7,
            ),
        ],
        since: Opset::CoreML5,
        until: None,
        form: ParamForm::Inputs,
        infer: gather_nd,
    },
];
