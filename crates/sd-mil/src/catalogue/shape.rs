//! Shape ops: reshape, transpose, concat, split, slices, expand/squeeze, stack, fill, tile,
//! band_part.

use super::p::{konst, req, variadic};
use super::{Default, InferCtx, OpSpec, ParamForm, ParamSpec, TypeSet};
use crate::error::ProgramError;
use crate::{DType, Opset, TensorType};

fn reshape(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let x = ctx.ty("x")?;
    let target = ctx.req_ints("shape")?;
    let mut shape = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, &d) in target.iter().enumerate() {
        match d {
            -1 if infer_at.is_none() => {
                infer_at = Some(i);
                shape.push(1);
            }
            0 if i < x.rank() => shape.push(x.shape[i]),
            d if d > 0 => shape.push(d as usize),
            _ => {
                return Err(ctx.invalid("shape", format!("bad target dimension {d} in {target:?}")));
            }
        }
    }
    let known: usize = shape.iter().product();
    if let Some(i) = infer_at {
        if known == 0 || x.element_count() % known != 0 {
            return Err(ctx.invalid("shape", format!("cannot reshape {x} to {target:?}")));
        }
        shape[i] = x.element_count() / known;
    }
    if shape.iter().product::<usize>() != x.element_count() {
        return Err(ctx.invalid("shape", format!("cannot reshape {x} to {target:?}")));
    }
    Ok(vec![TensorType::new(x.dtype, shape)])
}

fn transpose(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let x = ctx.ty("x")?;
    let perm = ctx.req_ints("perm")?;
    let mut seen = vec![false; x.rank()];
    let mut shape = Vec::new();
    for &p in &perm {
        let a = ctx.axis("perm", p, x.rank())?;
        if std::mem::replace(&mut seen[a], true) {
            return Err(ctx.invalid("perm", format!("{perm:?} repeats axis {a}")));
        }
        shape.push(x.shape[a]);
    }
    if perm.len() != x.rank() {
        return Err(ctx.invalid(
            "perm",
            format!("{perm:?} is not a permutation of {} axes", x.rank()),
        ));
    }
    Ok(vec![TensorType::new(x.dtype, shape)])
}

fn concat(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let tys = ctx.tys("values");
    let first = tys[0];
    let axis = ctx.axis("axis", ctx.int_or("axis", 0)?, first.rank())?;
    let mut shape = first.shape.clone();
    shape[axis] = 0;
    for t in &tys {
        ctx.same_dtype("values", first.dtype, t.dtype)?;
        let same_rest = t.rank() == first.rank()
            && t.shape
                .iter()
                .zip(&first.shape)
                .enumerate()
                .all(|(i, (a, b))| i == axis || a == b);
        if !same_rest {
            return Err(ctx.invalid(
                "values",
                format!("{t} does not concatenate with {first} on axis {axis}"),
            ));
        }
        shape[axis] += t.shape[axis];
    }
    Ok(vec![TensorType::new(first.dtype, shape)])
}

fn split(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let x = ctx.ty("x")?;
    let axis = ctx.axis("axis", ctx.int_or("axis", 0)?, x.rank())?;
    let dim = x.shape[axis];
    let sizes: Vec<usize> = match (ctx.ints("split_sizes")?, ctx.ints("num_splits")?) {
        (Some(s), _) => {
            if s.iter().any(|v| *v < 0) || s.iter().sum::<i64>() != dim as i64 {
                return Err(ctx.invalid("split_sizes", format!("{s:?} do not add up to {dim}")));
            }
            s.into_iter().map(|v| v as usize).collect()
        }
        (None, Some(n)) => {
            let n = n.first().copied().unwrap_or(0);
            if n < 1 || dim % n as usize != 0 {
                return Err(ctx.invalid("num_splits", format!("{n} does not divide {dim}")));
            }
            vec![dim / n as usize; n as usize]
        }
        (None, None) => return Err(ctx.invalid("num_splits", "give num_splits or split_sizes")),
    };
    Ok(sizes
        .into_iter()
        .map(|s| {
            let mut shape = x.shape.clone();
            shape[axis] = s;
            TensorType::new(x.dtype, shape)
        })
        .collect())
}

/// Number of elements Python's `range(begin, end, stride)` slice takes from `dim`.
fn slice_len(dim: i64, begin: i64, end: i64, stride: i64, begin_all: bool, end_all: bool) -> i64 {
    let wrap = |v: i64| if v < 0 { v + dim } else { v };
    if stride > 0 {
        let b = if begin_all {
            0
        } else {
            wrap(begin).clamp(0, dim)
        };
        let e = if end_all {
            dim
        } else {
            wrap(end).clamp(0, dim)
        };
        ((e - b).max(0) + stride - 1) / stride
    } else {
        let b = if begin_all {
            dim - 1
        } else {
            wrap(begin).clamp(-1, dim - 1)
        };
        let e = if end_all {
            -1
        } else {
            wrap(end).clamp(-1, dim - 1)
        };
        ((b - e).max(0) + (-stride) - 1) / (-stride)
    }
}

fn slice_by_index(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let x = ctx.ty("x")?;
    let r = x.rank();
    let get = |name: &str, default: i64| -> Result<Vec<i64>, ProgramError> {
        let v = ctx.ints(name)?.unwrap_or_else(|| vec![default; r]);
        if v.len() != r {
            return Err(ctx.invalid(name, format!("expected {r} values, got {}", v.len())));
        }
        Ok(v)
    };
    let (begin, end, stride) = (get("begin", 0)?, get("end", 0)?, get("stride", 1)?);
    let (bm, em, sm) = (
        get("begin_mask", 0)?,
        get("end_mask", 0)?,
        get("squeeze_mask", 0)?,
    );
    let mut shape = Vec::new();
    for i in 0..r {
        if stride[i] == 0 {
            return Err(ctx.invalid("stride", "stride 0"));
        }
        let n = slice_len(
            x.shape[i] as i64,
            begin[i],
            end[i],
            stride[i],
            bm[i] != 0,
            em[i] != 0,
        );
        if sm[i] != 0 {
            continue;
        }
        shape.push(n as usize);
    }
    Ok(vec![TensorType::new(x.dtype, shape)])
}

fn slice_by_size(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let x = ctx.ty("x")?;
    let (begin, size) = (ctx.req_ints("begin")?, ctx.req_ints("size")?);
    if begin.len() != x.rank() || size.len() != x.rank() {
        return Err(ctx.invalid("size", format!("expected {} values", x.rank())));
    }
    let mut shape = Vec::new();
    for i in 0..x.rank() {
        let d = x.shape[i] as i64;
        let s = if size[i] == -1 { d - begin[i] } else { size[i] };
        if begin[i] < 0 || s < 0 || begin[i] + s > d {
            return Err(ctx.invalid("size", format!("slice {}+{} is outside {d}", begin[i], s)));
        }
        shape.push(s as usize);
    }
    Ok(vec![TensorType::new(x.dtype, shape)])
}

fn expand_dims(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let x = ctx.ty("x")?;
    let axes = ctx.req_ints("axes")?;
    let out_rank = x.rank() + axes.len();
    let mut at = axes
        .iter()
        .map(|&a| ctx.axis("axes", a, out_rank))
        .collect::<Result<Vec<_>, _>>()?;
    at.sort_unstable();
    at.dedup();
    if at.len() != axes.len() {
        return Err(ctx.invalid("axes", format!("{axes:?} repeats an axis")));
    }
    let mut shape = x.shape.clone();
    for a in at {
        shape.insert(a, 1);
    }
    Ok(vec![TensorType::new(x.dtype, shape)])
}

fn squeeze(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let x = ctx.ty("x")?;
    let drop: Vec<usize> = match ctx.ints("axes")? {
        Some(a) => a
            .into_iter()
            .map(|a| ctx.axis("axes", a, x.rank()))
            .collect::<Result<_, _>>()?,
        None => (0..x.rank()).filter(|&i| x.shape[i] == 1).collect(),
    };
    if drop.iter().any(|&i| x.shape[i] != 1) {
        return Err(ctx.invalid("axes", format!("cannot squeeze a dimension ≠ 1 of {x}")));
    }
    let shape = (0..x.rank())
        .filter(|i| !drop.contains(i))
        .map(|i| x.shape[i])
        .collect::<Vec<_>>();
    Ok(vec![TensorType::new(x.dtype, shape)])
}

fn stack(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let tys = ctx.tys("values");
    let first = tys[0];
    for t in &tys {
        ctx.same_dtype("values", first.dtype, t.dtype)?;
        if t.shape != first.shape {
            return Err(ctx.invalid("values", format!("{t} and {first} differ in shape")));
        }
    }
    let axis = ctx.axis("axis", ctx.int_or("axis", 0)?, first.rank() + 1)?;
    let mut shape = first.shape.clone();
    shape.insert(axis, tys.len());
    Ok(vec![TensorType::new(first.dtype, shape)])
}

fn fill(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let shape = ctx.req_ints("shape")?;
    if shape.iter().any(|d| *d < 0) {
        return Err(ctx.invalid("shape", format!("negative dimension in {shape:?}")));
    }
    let dtype = ctx.opt_ty("value").map_or(DType::F32, |t| t.dtype);
    Ok(vec![TensorType::new(
        dtype,
        shape.into_iter().map(|d| d as usize).collect::<Vec<_>>(),
    )])
}

fn tile(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let x = ctx.ty("x")?;
    let reps = ctx.req_ints("reps")?;
    if reps.len() != x.rank() || reps.iter().any(|r| *r < 1) {
        return Err(ctx.invalid("reps", format!("{reps:?} does not tile {x}")));
    }
    let shape = x
        .shape
        .iter()
        .zip(&reps)
        .map(|(d, r)| d * *r as usize)
        .collect::<Vec<_>>();
    Ok(vec![TensorType::new(x.dtype, shape)])
}

fn band_part(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let x = ctx.ty("x")?;
    if x.rank() < 2 {
        return Err(ctx.invalid("x", format!("expected rank ≥ 2, got {x}")));
    }
    Ok(vec![x.clone()])
}

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

const INTS: TypeSet = TypeSet::INT32;
const MASK: TypeSet = TypeSet::BOOL;

/// Shape ops.
pub(super) const OPS: &[OpSpec] = &[
    spec(
        "reshape",
        &[
            req("x", TypeSet::ANY),
            konst("shape", INTS, Default::Required),
        ],
        reshape,
    ),
    spec(
        "transpose",
        &[
            req("x", TypeSet::ANY),
            konst("perm", INTS, Default::Required),
        ],
        transpose,
    ),
    spec(
        "concat",
        &[
            variadic("values", TypeSet::ANY),
            konst("axis", INTS, Default::Required),
            konst("interleave", MASK, Default::Bool(false)),
        ],
        concat,
    ),
    spec(
        "split",
        &[
            req("x", TypeSet::ANY),
            konst("num_splits", INTS, Default::Absent),
            konst("split_sizes", INTS, Default::Absent),
            konst("axis", INTS, Default::Required),
        ],
        split,
    ),
    spec(
        "slice_by_index",
        &[
            req("x", TypeSet::ANY),
            konst("begin", INTS, Default::Required),
            konst("end", INTS, Default::Required),
            konst("stride", INTS, Default::Derived),
            konst("begin_mask", MASK, Default::Derived),
            konst("end_mask", MASK, Default::Derived),
            konst("squeeze_mask", MASK, Default::Derived),
        ],
        slice_by_index,
    ),
    spec(
        "slice_by_size",
        &[
            req("x", TypeSet::ANY),
            konst("begin", INTS, Default::Required),
            konst("size", INTS, Default::Required),
        ],
        slice_by_size,
    ),
    spec(
        "expand_dims",
        &[
            req("x", TypeSet::ANY),
            konst("axes", INTS, Default::Required),
        ],
        expand_dims,
    ),
    spec(
        "squeeze",
        &[
            req("x", TypeSet::ANY),
            konst("axes", INTS, Default::Derived),
        ],
        squeeze,
    ),
    spec(
        "stack",
        &[
            variadic("values", TypeSet::ANY),
            konst("axis", INTS, Default::Required),
        ],
        stack,
    ),
    spec(
        "fill",
        &[
            konst("shape", INTS, Default::Required),
            konst("value", TypeSet::NUMERIC.or(MASK), Default::Float(0.0)),
        ],
        fill,
    ),
    spec(
        "tile",
        &[
            req("x", TypeSet::ANY),
            konst("reps", INTS, Default::Required),
        ],
        tile,
    ),
    spec(
        "band_part",
        &[
            req("x", TypeSet::ANY),
            konst("lower", INTS, Default::Int(-1)),
            konst("upper", INTS, Default::Int(-1)),
        ],
        band_part,
    ),
];

#[cfg(test)]
mod tests {
    use super::slice_len;

    #[test]
    fn python_slice_lengths() {
        assert_eq!(slice_len(10, 0, 10, 1, false, false), 10);
        assert_eq!(slice_len(10, 2, -1, 3, false, false), 3);
        assert_eq!(slice_len(10, 0, 0, -1, true, true), 10);
        assert_eq!(slice_len(10, 8, 2, -2, false, false), 3);
        assert_eq!(slice_len(10, 5, 3, 1, false, false), 0);
    }
}
