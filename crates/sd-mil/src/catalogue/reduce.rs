//! Reductions over axes, and argmax.

use super::p::{konst, req};
use super::{Default, InferCtx, OpSpec, ParamForm, ParamSpec, TypeSet};
use crate::error::ProgramError;
use crate::{DType, Opset, TensorType};

fn reduce(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let x = ctx.ty("x")?;
    let axes = match ctx.ints("axes")? {
        Some(a) => a
            .into_iter()
            .map(|a| ctx.axis("axes", a, x.rank()))
            .collect::<Result<Vec<_>, _>>()?,
        None => (0..x.rank()).collect(),
    };
    let keep = ctx.bool_or("keep_dims", false)?;
    let mut shape = Vec::new();
    for (i, &d) in x.shape.iter().enumerate() {
        if !axes.contains(&i) {
            shape.push(d);
        } else if keep {
            shape.push(1);
        }
    }
    Ok(vec![TensorType::new(x.dtype, shape)])
}

fn argmax(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let x = ctx.ty("x")?;
    let axis = ctx.axis("axis", ctx.int_or("axis", -1)?, x.rank())?;
    let keep = ctx.bool_or("keep_dims", false)?;
    let mut shape = x.shape.clone();
    if keep {
        shape[axis] = 1;
    } else {
        shape.remove(axis);
    }
    Ok(vec![TensorType::new(DType::I32, shape)])
}

const REDUCE: &[ParamSpec] = &[
    req("x", TypeSet::NUMERIC),
    konst("axes", TypeSet::INT32, Default::Derived),
    konst("keep_dims", TypeSet::BOOL, Default::Bool(false)),
];
const ARG: &[ParamSpec] = &[
    req("x", TypeSet::NUMERIC),
    konst("axis", TypeSet::INT32, Default::Int(-1)),
    konst("keep_dims", TypeSet::BOOL, Default::Bool(false)),
];

const fn spec(name: &'static str, params: &'static [ParamSpec], infer: super::InferFn) -> OpSpec {
    OpSpec {
        name,
        params,
        since: Opset::CoreML5,
        until: None,
        form: ParamForm::Inputs,
        infer,
    }
}

/// Reduction ops.
pub(super) const OPS: &[OpSpec] = &[
    spec("reduce_mean", REDUCE, reduce),
    spec("reduce_sum", REDUCE, reduce),
    spec("reduce_max", REDUCE, reduce),
    spec("reduce_min", REDUCE, reduce),
    spec("reduce_prod", REDUCE, reduce),
    spec("reduce_argmax", ARG, argmax),
    spec("reduce_argmin", ARG, argmax),
];
