//! Shape ops: reshape, transpose, concat, split, slices, expand_dims/squeeze, stack, fill,
//! tile, band_part.

use super::util::{self, axis, cat, dims, narrow, permute, reshape};
use super::{Ctx, KResult, KernelError, Registry, Val};
use crate::backend::RtBackend;
use burn_tensor::Slice;
use burn_tensor::ops::FloatTensor;

pub(super) fn register<B: RtBackend>(r: &mut Registry<B>) {
    // Reshape-like ops take the output shape the program declares (checked by sd-mil's
    // type rules when the package was read).
    r.insert("reshape", to_declared_shape);
    r.insert("expand_dims", to_declared_shape);
    r.insert("squeeze", to_declared_shape);
    r.insert("transpose", |c| {
        let x = c.tensor("x")?;
        let perm = c.ints("perm")?;
        let p = perm
            .iter()
            .map(|a| axis(*a, x.rank()))
            .collect::<KResult<Vec<_>>>()?;
        Ok(vec![c.val(permute::<B>(x.t, &p), 0)?])
    });
    r.insert("concat", concat);
    r.insert("split", split);
    r.insert("slice_by_index", slice_by_index);
    r.insert("slice_by_size", slice_by_size);
    r.insert("stack", |c| {
        let vals = c.tensors("values")?;
        let d = vals[0].shape();
        let a = axis(c.int("axis")?, d.len() + 1)?;
        let mut s = d.clone();
        s.insert(a, 1);
        let parts = vals.into_iter().map(|v| reshape::<B>(v.t, &s)).collect();
        Ok(vec![c.val(cat::<B>(parts, a), 0)?])
    });
    r.insert("fill", |c| {
        let shape = c.out(0)?.shape.clone();
        let v = c.float("value")?;
        Ok(vec![c.val(util::full::<B>(&shape, v, c.device), 0)?])
    });
    r.insert("tile", |c| {
        let x = c.tensor("x")?;
        let reps = c.ints("reps")?;
        let mut t = x.t;
        for (i, r) in reps.iter().enumerate() {
            if *r > 1 {
                t = B::float_repeat_dim(t, i, *r as usize);
            }
        }
        Ok(vec![c.val(t, 0)?])
    });
    r.insert("band_part", band_part);
}

fn to_declared_shape<B: RtBackend>(c: &mut Ctx<'_, B>) -> KResult<Vec<Val<B>>> {
    let x = c.tensor("x")?;
    let shape = c.out(0)?.shape.clone();
    if x.shape().iter().product::<usize>() != shape.iter().product::<usize>() {
        return Err(KernelError::param(
            "x",
            format!("cannot reshape {:?} to {shape:?}", x.shape()),
        ));
    }
    Ok(vec![c.val(reshape::<B>(x.t, &shape), 0)?])
}

fn concat<B: RtBackend>(c: &mut Ctx<'_, B>) -> KResult<Vec<Val<B>>> {
    let vals = c.tensors("values")?;
    let r = vals[0].rank();
    let a = axis(c.int("axis")?, r)?;
    let interleave = c.bool("interleave")?;
    if interleave {
        // Stack on a new axis after `a`, then merge: x0[0], x1[0], x0[1], x1[1], …
        let d = vals[0].shape();
        let mut s = d.clone();
        s.insert(a + 1, 1);
        let n = vals.len();
        let parts = vals.into_iter().map(|v| reshape::<B>(v.t, &s)).collect();
        let mut out = d;
        out[a] *= n;
        return Ok(vec![c.val(reshape::<B>(cat::<B>(parts, a + 1), &out), 0)?]);
    }
    let parts = vals.into_iter().map(|v| v.t).collect();
    Ok(vec![c.val(cat::<B>(parts, a), 0)?])
}

fn split<B: RtBackend>(c: &mut Ctx<'_, B>) -> KResult<Vec<Val<B>>> {
    let x = c.tensor("x")?;
    let a = axis(c.int("axis")?, x.rank())?;
    let n = c.out_types.len();
    let mut start = 0;
    let mut outs = Vec::with_capacity(n);
    for i in 0..n {
        let len = c.out(i)?.shape[a];
        outs.push(c.val(narrow::<B>(x.t.clone(), a, start, start + len), i)?);
        start += len;
    }
    if start != x.shape()[a] {
        return Err(KernelError::new(format!(
            "split sizes add up to {start}, axis has {}",
            x.shape()[a]
        )));
    }
    Ok(outs)
}

/// Python slicing of one axis: (start, count, step) with masks.
pub fn resolve_slice(
    dim: i64,
    begin: i64,
    end: i64,
    stride: i64,
    begin_all: bool,
    end_all: bool,
) -> (i64, i64, i64) {
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
        (b, ((e - b).max(0) + stride - 1) / stride, stride)
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
        (b, ((b - e).max(0) + (-stride) - 1) / (-stride), stride)
    }
}

/// Strided slice of every axis: `(start, count, step)` per axis (negative steps allowed).
pub fn strided<B: RtBackend>(x: FloatTensor<B>, s: &[(i64, i64, i64)]) -> FloatTensor<B> {
    let d = dims::<B>(&x);
    let mut flip = Vec::new();
    let slices: Vec<Slice> = s
        .iter()
        .enumerate()
        .map(|(i, &(start, count, step))| {
            if count == 0 {
                return Slice::new(0, Some(0), 1);
            }
            if step > 0 {
                Slice::new(
                    start as isize,
                    Some((start + (count - 1) * step + 1) as isize),
                    step as isize,
                )
            } else {
                // Take the same elements ascending, then flip the axis.
                flip.push(i);
                let last = start + (count - 1) * step;
                Slice::new(last as isize, Some((start + 1) as isize), (-step) as isize)
            }
        })
        .collect();
    let full = slices
        .iter()
        .zip(&d)
        .all(|(sl, n)| sl.start == 0 && sl.end == Some(*n as isize) && sl.step == 1);
    let y = if full { x } else { B::float_slice(x, &slices) };
    if flip.is_empty() {
        y
    } else {
        B::float_flip(y, &flip)
    }
}

fn slice_by_index<B: RtBackend>(c: &mut Ctx<'_, B>) -> KResult<Vec<Val<B>>> {
    let x = c.tensor("x")?;
    let d = x.shape();
    let r = d.len();
    let get = |c: &mut Ctx<'_, B>, p: &str, default: i64| -> KResult<Vec<i64>> {
        let v = c.opt_ints(p)?.unwrap_or(vec![default; r]);
        if v.len() != r {
            return Err(KernelError::param(
                p,
                format!("expected {r} values, got {v:?}"),
            ));
        }
        Ok(v)
    };
    let (begin, end, stride) = (get(c, "begin", 0)?, get(c, "end", 0)?, get(c, "stride", 1)?);
    let (bm, em) = (get(c, "begin_mask", 0)?, get(c, "end_mask", 0)?);
    let mut s = Vec::with_capacity(r);
    for i in 0..r {
        if stride[i] == 0 {
            return Err(KernelError::param("stride", "stride 0"));
        }
        s.push(resolve_slice(
            d[i] as i64,
            begin[i],
            end[i],
            stride[i],
            bm[i] != 0,
            em[i] != 0,
        ));
    }
    let y = strided::<B>(x.t, &s);
    let out = c.out(0)?.shape.clone();
    Ok(vec![c.val(reshape::<B>(y, &out), 0)?])
}

fn slice_by_size<B: RtBackend>(c: &mut Ctx<'_, B>) -> KResult<Vec<Val<B>>> {
    let x = c.tensor("x")?;
    let d = x.shape();
    let (begin, size) = (c.ints("begin")?, c.ints("size")?);
    if begin.len() != d.len() || size.len() != d.len() {
        return Err(KernelError::param(
            "size",
            format!("expected {} values", d.len()),
        ));
    }
    let s: Vec<(i64, i64, i64)> = (0..d.len())
        .map(|i| {
            let b = if begin[i] < 0 {
                begin[i] + d[i] as i64
            } else {
                begin[i]
            };
            let n = if size[i] == -1 {
                d[i] as i64 - b
            } else {
                size[i]
            };
            (b, n, 1)
        })
        .collect();
    if s.iter()
        .zip(&d)
        .any(|((b, n, _), dim)| *b < 0 || *n < 0 || b + n > *dim as i64)
    {
        return Err(KernelError::param(
            "size",
            format!("slice {begin:?}+{size:?} is outside {d:?}"),
        ));
    }
    Ok(vec![c.val(strided::<B>(x.t, &s), 0)?])
}

fn band_part<B: RtBackend>(c: &mut Ctx<'_, B>) -> KResult<Vec<Val<B>>> {
    let x = c.tensor("x")?;
    let (lower, upper) = (c.int("lower")?, c.int("upper")?);
    let d = x.shape();
    let r = d.len();
    let (m, n) = (d[r - 2], d[r - 1]);
    let mut keep = Vec::with_capacity(m * n);
    for i in 0..m as i64 {
        for j in 0..n as i64 {
            let ok = (lower < 0 || i - j <= lower) && (upper < 0 || j - i <= upper);
            keep.push(if ok { 1.0 } else { 0.0 });
        }
    }
    let mask = util::expand::<B>(util::from_vec::<B>(keep, &[m, n], c.device), &d);
    let zeros = util::full::<B>(&d, 0.0, c.device);
    // Where the mask is 0, take 0 (mask_where keeps inf/nan out of the product).
    let inv = util::to_mask::<B>(B::float_add_scalar(B::float_neg(mask), 1.0f32.into()));
    Ok(vec![c.val(B::float_mask_where(x.t, inv, zeros), 0)?])
}
