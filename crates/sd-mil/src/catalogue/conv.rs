//! Spatial ops: convolution, nearest-neighbour upsampling, padding.

use super::p::{konst, opt, req, same, same_until};
use super::{Default, InferCtx, OpSpec, ParamForm, TypeSet};
use crate::error::ProgramError;
use crate::{Opset, TensorType};

fn conv(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let (x, w) = (ctx.ty("x")?, ctx.ty("weight")?);
    if x.rank() < 3 || w.rank() != x.rank() {
        return Err(ctx.invalid(
            "weight",
            format!("x {x} and weight {w} need equal ranks ≥ 3"),
        ));
    }
    let spatial = x.rank() - 2;
    let groups = ctx.int_or("groups", 1)?;
    if groups < 1
        || x.shape[1] as i64 != w.shape[1] as i64 * groups
        || w.shape[0] as i64 % groups != 0
    {
        return Err(ctx.invalid(
            "weight",
            format!(
                "weight {w} does not match {} input channels in {groups} group(s)",
                x.shape[1]
            ),
        ));
    }
    if let Some(b) = ctx.opt_ty("bias")
        && b.shape != [w.shape[0]]
    {
        return Err(ctx.invalid("bias", format!("expected shape ({},), got {b}", w.shape[0])));
    }
    let list = |name: &str, default: i64, len: usize| -> Result<Vec<i64>, ProgramError> {
        let v = ctx.ints(name)?.unwrap_or_else(|| vec![default; len]);
        if v.len() != len {
            return Err(ctx.invalid(name, format!("expected {len} values, got {}", v.len())));
        }
        Ok(v)
    };
    let strides = list("strides", 1, spatial)?;
    let dilations = list("dilations", 1, spatial)?;
    let pad_type = ctx.str_or("pad_type", "valid")?;
    let pad = list("pad", 0, 2 * spatial)?;
    let mut shape = vec![x.shape[0], w.shape[0]];
    for i in 0..spatial {
        let (input, k, s, d) = (
            x.shape[i + 2] as i64,
            w.shape[i + 2] as i64,
            strides[i],
            dilations[i],
        );
        if s < 1 || d < 1 {
            return Err(ctx.invalid("strides", "strides and dilations must be ≥ 1"));
        }
        let eff = d * (k - 1) + 1;
        let out = match pad_type {
            "valid" => (input - eff).div_euclid(s) + 1,
            "custom" => (input + pad[2 * i] + pad[2 * i + 1] - eff).div_euclid(s) + 1,
            "same" | "same_lower" => (input + s - 1) / s,
            other => return Err(ctx.invalid("pad_type", format!("unknown pad_type `{other}`"))),
        };
        if out < 1 {
            return Err(ctx.invalid(
                "x",
                format!("spatial size {input} is too small for kernel {k}"),
            ));
        }
        shape.push(out as usize);
    }
    Ok(vec![TensorType::new(x.dtype, shape)])
}

fn upsample(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let x = ctx.ty("x")?;
    if x.rank() < 3 {
        return Err(ctx.invalid("x", format!("expected rank ≥ 3, got {x}")));
    }
    let scale = |name: &str| -> Result<f32, ProgramError> {
        let v = ctx.floats(name)?.unwrap_or(vec![1.0]);
        match v.as_slice() {
            [s] if *s > 0.0 => Ok(*s),
            _ => Err(ctx.invalid(name, "expected one positive scale")),
        }
    };
    let (sh, sw) = (scale("scale_factor_height")?, scale("scale_factor_width")?);
    let mut shape = x.shape.clone();
    let r = shape.len();
    shape[r - 2] = (shape[r - 2] as f32 * sh).floor() as usize;
    shape[r - 1] = (shape[r - 1] as f32 * sw).floor() as usize;
    Ok(vec![TensorType::new(x.dtype, shape)])
}

fn pad(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let x = ctx.ty("x")?;
    let pad = ctx.req_ints("pad")?;
    if pad.len() % 2 != 0 || pad.len() / 2 > x.rank() || pad.iter().any(|p| *p < 0) {
        return Err(ctx.invalid(
            "pad",
            format!("{} non-negative values do not pad {x}", pad.len()),
        ));
    }
    let mode = ctx.str_or("mode", "constant")?;
    if !matches!(mode, "constant" | "reflect" | "replicate") {
        return Err(ctx.invalid("mode", format!("unknown pad mode `{mode}`")));
    }
    let mut shape = x.shape.clone();
    let first = x.rank() - pad.len() / 2;
    for (i, d) in shape.iter_mut().enumerate().skip(first) {
        let j = i - first;
        *d += (pad[2 * j] + pad[2 * j + 1]) as usize;
    }
    Ok(vec![TensorType::new(x.dtype, shape)])
}

/// Spatial ops.
pub(super) const OPS: &[OpSpec] = &[
    OpSpec {
        name: "conv",
        params: &[
            req("x", TypeSet::FLOAT),
            same_until(req("weight", TypeSet::FLOAT), "x", Opset::CoreML6),
            same_until(opt("bias", TypeSet::FLOAT), "x", Opset::CoreML6),
            konst("strides", TypeSet::INT32, Default::Derived),
            konst("pad_type", TypeSet::STRING, Default::Str("valid")),
            konst("pad", TypeSet::INT32, Default::Derived),
            konst("dilations", TypeSet::INT32, Default::Derived),
            konst("groups", TypeSet::INT32, Default::Int(1)),
        ],
        since: Opset::CoreML5,
        until: None,
        form: ParamForm::Inputs,
        infer: conv,
    },
    OpSpec {
        name: "upsample_nearest_neighbor",
        params: &[
            req("x", TypeSet::FLOAT),
            konst("scale_factor_height", TypeSet::NUMERIC, Default::Int(1)),
            konst("scale_factor_width", TypeSet::NUMERIC, Default::Int(1)),
        ],
        since: Opset::CoreML5,
        until: None,
        form: ParamForm::Inputs,
        infer: upsample,
    },
    OpSpec {
        name: "pad",
        params: &[
            req("x", TypeSet::FLOAT),
            konst("pad", TypeSet::INT32, Default::Required),
            konst("mode", TypeSet::STRING, Default::Str("constant")),
            same(
                konst("constant_val", TypeSet::FLOAT, Default::Float(0.0)),
                "x",
            ),
        ],
        since: Opset::CoreML5,
        until: None,
        form: ParamForm::Inputs,
        infer: pad,
    },
];
