//! Fused attention (iOS18).

use super::p::{opt, req};
use super::{InferCtx, OpSpec, ParamForm, TypeSet};
use crate::error::ProgramError;
use crate::{Opset, TensorType};

fn sdpa(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let (q, k, v) = (ctx.ty("query")?, ctx.ty("key")?, ctx.ty("value")?);
    ctx.same_dtype("key", q.dtype, k.dtype)?;
    ctx.same_dtype("value", q.dtype, v.dtype)?;
    let r = q.rank();
    if r < 3 || k.rank() != r || v.rank() != r {
        return Err(ctx.invalid(
            "query",
            format!("query {q}, key {k}, value {v} need equal ranks ≥ 3"),
        ));
    }
    if q.shape[r - 1] != k.shape[r - 1]
        || k.shape[r - 2] != v.shape[r - 2]
        || q.shape[..r - 2] != k.shape[..r - 2]
    {
        return Err(ctx.invalid("key", format!("query {q}, key {k}, value {v} do not match")));
    }
    let mut shape = q.shape.clone();
    shape[r - 1] = v.shape[r - 1];
    Ok(vec![TensorType::new(q.dtype, shape)])
}

/// Attention ops.
pub(super) const OPS: &[OpSpec] = &[OpSpec {
    name: "scaled_dot_product_attention",
    params: &[
        req("query", TypeSet::FLOAT),
        req("key", TypeSet::FLOAT),
        req("value", TypeSet::FLOAT),
        opt("attn_mask", TypeSet::FLOAT.or(TypeSet::BOOL)),
    ],
    since: Opset::CoreML8,
    until: None,
    form: ParamForm::Inputs,
    infer: sdpa,
}];
