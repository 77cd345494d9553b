//! Normalizations: layer, instance and batch norm.

use super::p::{konst, opt, req, same_until};
use super::{Default, InferCtx, OpSpec, ParamForm, TypeSet};
use crate::error::ProgramError;
use crate::{Opset, TensorType};

fn channel_param(ctx: &InferCtx<'_>, param: &str, channels: usize) -> Result<(), ProgramError> {
    if let Some(t) = ctx.opt_ty(param)
        && t.element_count() != channels
    {
        return Err(ctx.invalid(param, format!("expected {channels} values, got {t}")));
    }
    Ok(())
}

fn layer_norm(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let x = ctx.ty("x")?;
    let axes = ctx
        .ints("axes")?
        .unwrap_or_else(|| (0..x.rank() as i64).collect());
    let mut norm_shape = Vec::new();
    for a in axes {
        norm_shape.push(x.shape[ctx.axis("axes", a, x.rank())?]);
    }
    for p in ["gamma", "beta"] {
        if let Some(t) = ctx.opt_ty(p)
            && t.shape != norm_shape
        {
            return Err(ctx.invalid(p, format!("expected shape {norm_shape:?}, got {t}")));
        }
    }
    Ok(vec![x.clone()])
}

fn channel_norm(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let x = ctx.ty("x")?;
    if x.rank() < 3 {
        return Err(ctx.invalid("x", format!("expected rank ≥ 3, got {x}")));
    }
    for p in ["mean", "variance", "gamma", "beta"] {
        channel_param(ctx, p, x.shape[1])?;
    }
    Ok(vec![x.clone()])
}

/// Normalization ops.
pub(super) const OPS: &[OpSpec] = &[
    OpSpec {
        name: "layer_norm",
        params: &[
            req("x", TypeSet::FLOAT),
            konst("axes", TypeSet::INT32, Default::Derived),
            same_until(opt("gamma", TypeSet::FLOAT), "x", Opset::CoreML6),
            same_until(opt("beta", TypeSet::FLOAT), "x", Opset::CoreML6),
            same_until(
                konst("epsilon", TypeSet::FLOAT, Default::Float(1e-5)),
                "x",
                Opset::CoreML6,
            ),
        ],
        since: Opset::CoreML5,
        until: None,
        form: ParamForm::Inputs,
        infer: layer_norm,
    },
    OpSpec {
        name: "instance_norm",
        params: &[
            req("x", TypeSet::FLOAT),
            same_until(opt("gamma", TypeSet::FLOAT), "x", Opset::CoreML6),
            same_until(opt("beta", TypeSet::FLOAT), "x", Opset::CoreML6),
            same_until(
                konst("epsilon", TypeSet::FLOAT, Default::Float(1e-5)),
                "x",
                Opset::CoreML6,
            ),
        ],
        since: Opset::CoreML5,
        until: None,
        form: ParamForm::Inputs,
        infer: channel_norm,
    },
    OpSpec {
        name: "batch_norm",
        params: &[
            req("x", TypeSet::FLOAT),
            same_until(req("mean", TypeSet::FLOAT), "x", Opset::CoreML6),
            same_until(req("variance", TypeSet::FLOAT), "x", Opset::CoreML6),
            same_until(opt("gamma", TypeSet::FLOAT), "x", Opset::CoreML6),
            same_until(opt("beta", TypeSet::FLOAT), "x", Opset::CoreML6),
            same_until(
                konst("epsilon", TypeSet::FLOAT, Default::Float(1e-5)),
                "x",
                Opset::CoreML6,
            ),
        ],
        since: Opset::CoreML5,
        until: None,
        form: ParamForm::Inputs,
        infer: channel_norm,
    },
];
