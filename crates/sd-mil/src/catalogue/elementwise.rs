//! Elementwise ops: binary arithmetic and comparisons with broadcasting, unary math, cast,
//! select and clip.

use super::p::{konst, req, same};
use super::{Default, InferCtx, OpSpec, ParamForm, ParamSpec, TypeSet, broadcast_shapes};
use crate::error::ProgramError;
use crate::{DType, Opset, TensorType};

const BINARY: &[ParamSpec] = &[
    req("x", TypeSet::NUMERIC),
    same(req("y", TypeSet::NUMERIC), "x"),
];
const LOGICAL: &[ParamSpec] = &[req("x", TypeSet::BOOL), req("y", TypeSet::BOOL)];
const UNARY: &[ParamSpec] = &[req("x", TypeSet::FLOAT)];
const UNARY_NUMERIC: &[ParamSpec] = &[req("x", TypeSet::NUMERIC)];

fn broadcast(ctx: &InferCtx<'_>, out: Option<DType>) -> Result<Vec<TensorType>, ProgramError> {
    let (x, y) = (ctx.ty("x")?, ctx.ty("y")?);
    ctx.same_dtype("y", x.dtype, y.dtype)?;
    let shape = broadcast_shapes(&x.shape, &y.shape)
        .ok_or_else(|| ctx.invalid("y", format!("shape {y} does not broadcast with {x}")))?;
    Ok(vec![TensorType::new(out.unwrap_or(x.dtype), shape)])
}

fn arithmetic(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    broadcast(ctx, None)
}

fn comparison(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    broadcast(ctx, Some(DType::Bool))
}

fn same_as_x(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    Ok(vec![ctx.ty("x")?.clone()])
}

fn cast(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let name = ctx.str_or("dtype", "")?;
    let dtype = DType::from_name(name)
        .filter(|d| {
            matches!(
                d,
                DType::F16
                    | DType::F32
                    | DType::I32
                    | DType::Bool
                    | DType::I8
                    | DType::U8
                    | DType::I16
                    | DType::U16
            )
        })
        .ok_or_else(|| ctx.invalid("dtype", format!("cannot cast to `{name}`")))?;
    Ok(vec![ctx.ty("x")?.with_dtype(dtype)])
}

fn select(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let (c, a, b) = (ctx.ty("cond")?, ctx.ty("a")?, ctx.ty("b")?);
    ctx.same_dtype("b", a.dtype, b.dtype)?;
    let ab = broadcast_shapes(&a.shape, &b.shape)
        .ok_or_else(|| ctx.invalid("b", format!("shape {b} does not broadcast with {a}")))?;
    let shape = broadcast_shapes(&c.shape, &ab)
        .ok_or_else(|| ctx.invalid("cond", format!("shape {c} does not broadcast with {a}")))?;
    Ok(vec![TensorType::new(a.dtype, shape)])
}

macro_rules! ops {
    ($($name:literal => $params:expr, $infer:expr;)*) => {
        &[$(OpSpec { name: $name, params: $params, since: Opset::CoreML5, until: None, form: ParamForm::Inputs, infer: $infer },)*]
    };
}

/// Elementwise ops.
pub(super) const OPS: &[OpSpec] = ops! {
    "add" => BINARY, arithmetic;
    "sub" => BINARY, arithmetic;
    "mul" => BINARY, arithmetic;
    "real_div" => BINARY, arithmetic;
    "floor_div" => BINARY, arithmetic;
    "mod" => BINARY, arithmetic;
    "pow" => BINARY, arithmetic;
    "maximum" => BINARY, arithmetic;
    "minimum" => BINARY, arithmetic;
    "equal" => BINARY, comparison;
    "not_equal" => BINARY, comparison;
    "greater" => BINARY, comparison;
    "greater_equal" => BINARY, comparison;
    "less" => BINARY, comparison;
    "less_equal" => BINARY, comparison;
    "logical_and" => LOGICAL, arithmetic;
    "logical_or" => LOGICAL, arithmetic;
    "logical_not" => &[req("x", TypeSet::BOOL)], same_as_x;
    "sqrt" => UNARY, same_as_x;
    "exp" => UNARY, same_as_x;
    "log" => &[req("x", TypeSet::FLOAT), same(konst("epsilon", TypeSet::FLOAT, Default::Float(0.0)), "x")], same_as_x;
    "cos" => UNARY, same_as_x;
    "sin" => UNARY, same_as_x;
    "tanh" => UNARY, same_as_x;
    "erf" => UNARY, same_as_x;
    "floor" => UNARY, same_as_x;
    "ceil" => UNARY, same_as_x;
    "round" => UNARY, same_as_x;
    "square" => UNARY_NUMERIC, same_as_x;
    "abs" => UNARY_NUMERIC, same_as_x;
    "sign" => UNARY_NUMERIC, same_as_x;
    "rsqrt" => &[req("x", TypeSet::FLOAT), same(konst("epsilon", TypeSet::FLOAT, Default::Float(1e-12)), "x")], same_as_x;
    "inverse" => &[req("x", TypeSet::FLOAT), same(konst("epsilon", TypeSet::FLOAT, Default::Float(1e-4)), "x")], same_as_x;
    "clip" => &[req("x", TypeSet::FLOAT), same(konst("alpha", TypeSet::FLOAT, Default::Required), "x"), same(konst("beta", TypeSet::FLOAT, Default::Required), "x")], same_as_x;
    "cast" => &[req("x", TypeSet::ANY), konst("dtype", TypeSet::STRING, Default::Required)], cast;
    "select" => &[req("cond", TypeSet::BOOL), req("a", TypeSet::ANY), same(req("b", TypeSet::ANY), "a")], select;
    "identity" => &[req("x", TypeSet::ANY)], same_as_x;
};
