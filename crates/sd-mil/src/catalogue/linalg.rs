//! Linear algebra: linear, matmul, einsum.

use super::p::{konst, opt, req, same, same_until, variadic};
use super::{Default, InferCtx, OpSpec, ParamForm, TypeSet, broadcast_shapes};
use crate::error::ProgramError;
use crate::{Opset, TensorType};
use std::collections::BTreeMap;

fn linear(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let (x, w) = (ctx.ty("x")?, ctx.ty("weight")?);
    if x.rank() == 0 || w.rank() != 2 || x.shape[x.rank() - 1] != w.shape[1] {
        return Err(ctx.invalid("weight", format!("weight {w} does not apply to x {x}")));
    }
    if let Some(b) = ctx.opt_ty("bias")
        && b.shape != [w.shape[0]]
    {
        return Err(ctx.invalid("bias", format!("expected shape ({},), got {b}", w.shape[0])));
    }
    let mut shape = x.shape.clone();
    *shape.last_mut().expect("rank checked") = w.shape[0];
    Ok(vec![TensorType::new(x.dtype, shape)])
}

fn matmul(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let (x, y) = (ctx.ty("x")?, ctx.ty("y")?);
    ctx.same_dtype("y", x.dtype, y.dtype)?;
    if x.rank() == 0 || y.rank() == 0 {
        return Err(ctx.invalid("x", "matmul needs rank ≥ 1"));
    }
    let mut xs = x.shape.clone();
    let mut ys = y.shape.clone();
    let (x_vec, y_vec) = (xs.len() == 1, ys.len() == 1);
    if x_vec {
        xs.insert(0, 1);
    }
    if y_vec {
        ys.push(1);
    }
    let (rx, ry) = (xs.len(), ys.len());
    if ctx.bool_or("transpose_x", false)? {
        xs.swap(rx - 1, rx - 2);
    }
    if ctx.bool_or("transpose_y", false)? {
        ys.swap(ry - 1, ry - 2);
    }
    if xs[rx - 1] != ys[ry - 2] {
        return Err(ctx.invalid("y", format!("inner dimensions differ: {x} · {y}")));
    }
    let mut shape = broadcast_shapes(&xs[..rx - 2], &ys[..ry - 2]).ok_or_else(|| {
        ctx.invalid(
            "y",
            format!("batch dimensions of {x} and {y} do not broadcast"),
        )
    })?;
    if !x_vec {
        shape.push(xs[rx - 2]);
    }
    if !y_vec {
        shape.push(ys[ry - 1]);
    }
    Ok(vec![TensorType::new(x.dtype, shape)])
}

fn einsum(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let eq = ctx.str_or("equation", "")?.replace(' ', "");
    let tys = ctx.tys("values");
    let (lhs, rhs) = eq
        .split_once("->")
        .ok_or_else(|| ctx.invalid("equation", format!("`{eq}` has no `->`")))?;
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != tys.len() || tys.len() != 2 {
        return Err(ctx.invalid(
            "values",
            format!("`{eq}` needs {} values, got {}", terms.len(), tys.len()),
        ));
    }
    ctx.same_dtype("values", tys[0].dtype, tys[1].dtype)?;
    let mut sizes: BTreeMap<char, usize> = BTreeMap::new();
    for (term, ty) in terms.iter().zip(&tys) {
        if term.chars().count() != ty.rank() || !term.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(ctx.invalid("equation", format!("`{term}` does not index {ty}")));
        }
        for (c, &d) in term.chars().zip(&ty.shape) {
            let s = sizes.entry(c).or_insert(d);
            if *s != d {
                return Err(ctx.invalid("values", format!("index `{c}` is {s} and {d}")));
            }
        }
    }
    let shape = rhs
        .chars()
        .map(|c| {
            sizes.get(&c).copied().ok_or_else(|| {
                ctx.invalid(
                    "equation",
                    format!("output index `{c}` is not an input index"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(vec![TensorType::new(tys[0].dtype, shape)])
}

/// Linear algebra ops.
pub(super) const OPS: &[OpSpec] = &[
    OpSpec {
        name: "linear",
        params: &[
            req("x", TypeSet::FLOAT),
            same_until(req("weight", TypeSet::FLOAT), "x", Opset::CoreML6),
            same_until(opt("bias", TypeSet::FLOAT), "x", Opset::CoreML6),
        ],
        since: Opset::CoreML5,
        until: None,
        form: ParamForm::Inputs,
        infer: linear,
    },
    OpSpec {
        name: "matmul",
        params: &[
            req("x", TypeSet::NUMERIC),
            same(req("y", TypeSet::NUMERIC), "x"),
            konst("transpose_x", TypeSet::BOOL, Default::Bool(false)),
            konst("transpose_y", TypeSet::BOOL, Default::Bool(false)),
        ],
        since: Opset::CoreML5,
        until: None,
        form: ParamForm::Inputs,
        infer: matmul,
    },
    OpSpec {
        name: "einsum",
        params: &[
            variadic("values", TypeSet::FLOAT),
            konst("equation", TypeSet::STRING, Default::Required),
        ],
        since: Opset::CoreML5,
        until: None,
        form: ParamForm::Inputs,
        infer: einsum,
    },
];
