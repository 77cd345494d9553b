//! Activations and softmax.

use super::p::{konst, req};
use super::{Default, InferCtx, OpSpec, ParamForm, TypeSet};
use crate::error::ProgramError;
use crate::{Opset, TensorType};

fn same_as_x(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    Ok(vec![ctx.ty("x")?.clone()])
}

fn gelu(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let mode = ctx.str_or("mode", "EXACT")?;
    if !matches!(
        mode,
        "EXACT" | "TANH_APPROXIMATION" | "SIGMOID_APPROXIMATION"
    ) {
        return Err(ctx.invalid("mode", format!("unknown gelu mode `{mode}`")));
    }
    same_as_x(ctx)
}

fn softmax(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let x = ctx.ty("x")?;
    ctx.axis("axis", ctx.int_or("axis", -1)?, x.rank())?;
    same_as_x(ctx)
}

const X: &[super::ParamSpec] = &[req("x", TypeSet::FLOAT)];

/// Activation ops.
pub(super) const OPS: &[OpSpec] = &[
    OpSpec {
        name: "silu",
        params: X,
        since: Opset::CoreML5,
        until: None,
        form: ParamForm::Inputs,
        infer: same_as_x,
    },
    OpSpec {
        name: "sigmoid",
        params: X,
        since: Opset::CoreML5,
        until: None,
        form: ParamForm::Inputs,
        infer: same_as_x,
    },
    OpSpec {
        name: "relu",
        params: X,
        since: Opset::CoreML5,
        until: None,
        form: ParamForm::Inputs,
        infer: same_as_x,
    },
    OpSpec {
        name: "gelu",
        params: &[
            req("x", TypeSet::FLOAT),
            konst("mode", TypeSet::STRING, Default::Str("EXACT")),
        ],
        since: Opset::CoreML5,
        until: None,
        form: ParamForm::Inputs,
        infer: gelu,
    },
    OpSpec {
        name: "softmax",
        params: &[
            req("x", TypeSet::FLOAT),
            konst("axis", TypeSet::INT32, Default::Int(-1)),
        ],
        since: Opset::CoreML5,
        until: None,
        form: ParamForm::Inputs,
        infer: softmax,
    },
];
