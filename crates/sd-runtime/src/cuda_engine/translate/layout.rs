//! Data movement: reshape-like ops alias their input; transpose, slices, concat, split,
//! stack, tile, pad, nearest upsampling and gathers copy through ops.cu's strided kernels.

use super::elementwise::collapse;
use super::{Builder, KArg, Op, Strided3, TRef, axis, packed_strides};
use crate::kernels::shape::resolve_slice;

pub(super) fn translate(
    b: &mut Builder<'_>,
    o: &Op<'_>,
    op_type: &str,
) -> Option<Result<Vec<TRef>, String>> {
    Some(match op_type {
        "reshape" | "squeeze" | "expand_dims" | "flatten2d" | "reshape_like" => alias(b, o),
        "transpose" => transpose(b, o),
        "slice_by_index" => slice_by_index(b, o),
        "slice_by_size" => slice_by_size(b, o),
        "concat" => concat(b, o, false),
        "stack" => concat(b, o, true),
        "split" => split(b, o),
        "tile" => tile(b, o),
        "pad" => pad(b, o),
        "upsample_nearest_neighbor" => upsample(b, o),
        "gather" => gather(b, o),
        "gather_nd" => gather_nd(b, o),
        _ => return None,
    })
}

fn alias(b: &mut Builder<'_>, o: &Op<'_>) -> Result<Vec<TRef>, String> {
    let x = b.tensor(o, "x")?;
    let shape = o.out_shape(0)?;
    if shape.iter().product::<usize>() != x.len() {
        return Err(format!("{:?} cannot become {shape:?}", x.shape));
    }
    Ok(vec![TRef { shape, ..x }])
}

/// Copies `src` viewed through (dims, src strides, src base) into `dst` viewed through (dst
/// strides, dst base); `moduli` wrap source indices (tile).
#[allow(clippy::too_many_arguments)]
pub fn emit_copy(
    b: &mut Builder<'_>,
    dst: &TRef,
    dst_base: usize,
    dst_strides: &[i64],
    src: &TRef,
    src_base: usize,
    src_strides: &[i64],
    dims: &[usize],
    moduli: Option<&[i64]>,
) -> Result<(), String> {
    let n: usize = dims.iter().product();
    if n == 0 {
        return Ok(());
    }
    let zero = vec![0i64; dims.len()];
    let m = moduli.unwrap_or(&zero);
    let (d, s) = if moduli.is_some() {
        (
            dims.to_vec(),
            vec![dst_strides.to_vec(), src_strides.to_vec(), m.to_vec()],
        )
    } else {
        collapse(
            dims,
            &[dst_strides.to_vec(), src_strides.to_vec(), zero.clone()],
        )
    };
    let elem = src.dt.size();
    // A packed run copied whole: one device copy.
    if d.len() == 1 && s[0][0] == 1 && s[1][0] == 1 {
        b.push(super::Launch::Copy {
            dst: dst.addr.at(dst_base * elem),
            src: src.addr.at(src_base * elem),
            bytes: n * elem,
        });
        return Ok(());
    }
    let st = Strided3::new(&d, &s[0], &s[1], &s[2])?;
    b.kernel(
        "sd_copy",
        n,
        vec![
            KArg::i32(elem as i32),
            KArg::i64(n as i64),
            KArg::Ptr(dst.addr),
            KArg::Ptr(src.addr),
            KArg::i64(dst_base as i64),
            KArg::i64(src_base as i64),
            KArg::pod(&st),
        ],
    );
    Ok(())
}

fn strides_i64(shape: &[usize]) -> Vec<i64> {
    packed_strides(shape).iter().map(|v| *v as i64).collect()
}

fn transpose(b: &mut Builder<'_>, o: &Op<'_>) -> Result<Vec<TRef>, String> {
    let x = b.tensor(o, "x")?;
    let perm = b.ints(o, "perm")?;
    let r = x.shape.len();
    if perm.len() != r {
        return Err(format!("perm {perm:?} for rank {r}"));
    }
    let perm: Vec<usize> = perm.iter().map(|p| axis(*p, r)).collect::<Result<_, _>>()?;
    let out = b.output(o, 0)?;
    let xs = strides_i64(&x.shape);
    let dims: Vec<usize> = perm.iter().map(|p| x.shape[*p]).collect();
    if dims != out.shape {
        return Err(format!(
            "transpose of {:?} by {perm:?} is not {:?}",
            x.shape, out.shape
        ));
    }
    let src: Vec<i64> = perm.iter().map(|p| xs[*p]).collect();
    emit_copy(
        b,
        &out,
        0,
        &strides_i64(&out.shape),
        &x,
        0,
        &src,
        &dims,
        None,
    )?;
    Ok(vec![out])
}

/// Copies the strided selection (start, count, step) per axis of `x` into a fresh output.
fn strided_slice(
    b: &mut Builder<'_>,
    o: &Op<'_>,
    x: &TRef,
    sel: &[(i64, i64, i64)],
) -> Result<Vec<TRef>, String> {
    let out = b.output(o, 0)?;
    let xs = strides_i64(&x.shape);
    let dims: Vec<usize> = sel.iter().map(|s| s.1.max(0) as usize).collect();
    if dims.iter().product::<usize>() != out.len() {
        return Err(format!(
            "slice of {:?} gives {dims:?}, the op declares {:?}",
            x.shape, out.shape
        ));
    }
    let base: i64 = sel.iter().zip(&xs).map(|(s, st)| s.0 * st).sum();
    let src: Vec<i64> = sel.iter().zip(&xs).map(|(s, st)| s.2 * st).collect();
    emit_copy(
        b,
        &out,
        0,
        &strides_i64(&dims),
        x,
        base.max(0) as usize,
        &src,
        &dims,
        None,
    )?;
    Ok(vec![out])
}

fn slice_by_index(b: &mut Builder<'_>, o: &Op<'_>) -> Result<Vec<TRef>, String> {
    let x = b.tensor(o, "x")?;
    let r = x.shape.len();
    let begin = b.ints(o, "begin")?;
    let end = b.ints(o, "end")?;
    let stride = b.opt_ints(o, "stride")?.unwrap_or(vec![1; r]);
    let bm = b.opt_ints(o, "begin_mask")?.unwrap_or(vec![0; r]);
    let em = b.opt_ints(o, "end_mask")?.unwrap_or(vec![0; r]);
    let sq = b.opt_ints(o, "squeeze_mask")?.unwrap_or(vec![0; r]);
    let all = [&begin, &end, &stride, &bm, &em, &sq];
    if all.iter().any(|v| v.len() != r) {
        return Err(format!("slice parameters of the wrong length for rank {r}"));
    }
    let sel: Vec<(i64, i64, i64)> = (0..r)
        .map(|i| {
            if stride[i] == 0 {
                return Err("stride 0".to_string());
            }
            if sq[i] != 0 {
                let d = x.shape[i] as i64;
                let s = if begin[i] < 0 { begin[i] + d } else { begin[i] };
                if s < 0 || s >= d {
                    return Err(format!("index {} outside axis {i} of {d}", begin[i]));
                }
                return Ok((s, 1, 1));
            }
            Ok(resolve_slice(
                x.shape[i] as i64,
                begin[i],
                end[i],
                stride[i],
                bm[i] != 0,
                em[i] != 0,
            ))
        })
        .collect::<Result<_, _>>()?;
    strided_slice(b, o, &x, &sel)
}

fn slice_by_size(b: &mut Builder<'_>, o: &Op<'_>) -> Result<Vec<TRef>, String> {
    let x = b.tensor(o, "x")?;
    let begin = b.ints(o, "begin")?;
    let size = b.ints(o, "size")?;
    let r = x.shape.len();
    if begin.len() != r || size.len() != r {
        return Err(format!("begin/size of the wrong length for rank {r}"));
    }
    let sel: Vec<(i64, i64, i64)> = (0..r)
        .map(|i| {
            let d = x.shape[i] as i64;
            let s = if begin[i] < 0 { begin[i] + d } else { begin[i] };
            let n = if size[i] < 0 { d - s } else { size[i] };
            if s < 0 || n < 0 || s + n > d {
                return Err(format!("slice {s}+{n} outside axis {i} of {d}"));
            }
            Ok((s, n, 1))
        })
        .collect::<Result<_, _>>()?;
    strided_slice(b, o, &x, &sel)
}

fn concat(b: &mut Builder<'_>, o: &Op<'_>, stack: bool) -> Result<Vec<TRef>, String> {
    let xs = b.tensors(o, "values")?;
    let out = b.output(o, 0)?;
    let r = out.shape.len();
    let ax = axis(b.int(o, "axis")?, r)?;
    if !stack && b.flag(o, "interleave")? {
        return Err("interleaved concat".into());
    }
    let os = strides_i64(&out.shape);
    let mut at = 0usize;
    for x in &xs {
        // Stack inserts a unit axis at `ax`.
        let mut dims = x.shape.clone();
        if stack {
            dims.insert(ax, 1);
        }
        if dims.len() != r {
            return Err(format!("value of shape {:?} in a rank-{r} concat", x.shape));
        }
        let src = strides_i64(&dims);
        emit_copy(b, &out, at * os[ax] as usize, &os, x, 0, &src, &dims, None)?;
        at += dims[ax];
    }
    if at != out.shape[ax] {
        return Err(format!(
            "values add up to {at} along axis {ax}, the output has {}",
            out.shape[ax]
        ));
    }
    Ok(vec![out])
}

fn split(b: &mut Builder<'_>, o: &Op<'_>) -> Result<Vec<TRef>, String> {
    let x = b.tensor(o, "x")?;
    let r = x.shape.len();
    let ax = axis(b.int(o, "axis")?, r)?;
    let xs = strides_i64(&x.shape);
    let mut at = 0usize;
    let mut outs = Vec::new();
    for i in 0..o.op.outputs.len() {
        let out = b.output(o, i)?;
        if out.shape.len() != r {
            return Err(format!("split output {i} of rank {}", out.shape.len()));
        }
        emit_copy(
            b,
            &out,
            0,
            &strides_i64(&out.shape),
            &x,
            at * xs[ax] as usize,
            &xs,
            &out.shape.clone(),
            None,
        )?;
        at += out.shape[ax];
        outs.push(out);
    }
    if at != x.shape[ax] {
        return Err(format!(
            "split sizes add up to {at}, axis has {}",
            x.shape[ax]
        ));
    }
    Ok(outs)
}

fn tile(b: &mut Builder<'_>, o: &Op<'_>) -> Result<Vec<TRef>, String> {
    let x = b.tensor(o, "x")?;
    let out = b.output(o, 0)?;
    if out.shape.len() != x.shape.len() {
        return Err("tile changes the rank".into());
    }
    let m: Vec<i64> = x.shape.iter().map(|d| *d as i64).collect();
    let src = strides_i64(&x.shape);
    emit_copy(
        b,
        &out,
        0,
        &strides_i64(&out.shape),
        &x,
        0,
        &src,
        &out.shape.clone(),
        Some(&m),
    )?;
    Ok(vec![out])
}

fn pad(b: &mut Builder<'_>, o: &Op<'_>) -> Result<Vec<TRef>, String> {
    let x = b.tensor(o, "x")?;
    let out = b.output(o, 0)?;
    let pads = b.ints(o, "pad")?;
    let mode = b.opt_string(o, "mode")?.unwrap_or("constant".into());
    let value = b.opt_floats(o, "constant_val")?.map_or(0.0, |v| v[0]);
    let r = x.shape.len();
    let k = pads.len() / 2;
    if pads.len() % 2 != 0 || k > r {
        return Err(format!("pad {pads:?} for rank {r}"));
    }
    let mut lo = vec![0i64; r];
    for j in 0..k {
        lo[r - k + j] = pads[2 * j];
    }
    let mode = match mode.as_str() {
        "constant" => 0,
        "reflect" => 1,
        "replicate" => 2,
        m => return Err(format!("pad mode `{m}`")),
    };
    let dims: Vec<i64> = x.shape.iter().map(|d| *d as i64).collect();
    let s = Strided3::new(&out.shape, &lo, &strides_i64(&x.shape), &dims)?;
    let n = out.len();
    b.kernel(
        "sd_pad",
        n,
        vec![
            out.dt.code(),
            KArg::i32(mode),
            KArg::f32(value),
            KArg::i64(n as i64),
            KArg::Ptr(out.addr),
            KArg::Ptr(x.addr),
            KArg::pod(&s),
        ],
    );
    Ok(vec![out])
}

fn upsample(b: &mut Builder<'_>, o: &Op<'_>) -> Result<Vec<TRef>, String> {
    let x = b.tensor(o, "x")?;
    let out = b.output(o, 0)?;
    let (d, od) = (&x.shape, &out.shape);
    if d.len() != 4 || od.len() != 4 || d[..2] != od[..2] {
        return Err(format!("upsampling {d:?} to {od:?}"));
    }
    let n = out.len();
    b.kernel(
        "sd_upsample_nearest",
        n,
        vec![
            KArg::i32(x.dt.size() as i32),
            KArg::i64((d[0] * d[1]) as i64),
            KArg::i32(d[2] as i32),
            KArg::i32(d[3] as i32),
            KArg::i32(od[2] as i32),
            KArg::i32(od[3] as i32),
            KArg::Ptr(out.addr),
            KArg::Ptr(x.addr),
        ],
    );
    Ok(vec![out])
}

fn gather(b: &mut Builder<'_>, o: &Op<'_>) -> Result<Vec<TRef>, String> {
    let x = b.tensor(o, "x")?;
    let idx = b.tensor(o, "indices")?;
    let out = b.output(o, 0)?;
    let r = x.shape.len();
    let ax = axis(b.opt_ints(o, "axis")?.map_or(0, |v| v[0]), r)?;
    if b.opt_ints(o, "batch_dims")?.is_some_and(|v| v[0] != 0) {
        return Err("gather with batch_dims".into());
    }
    let outer: usize = x.shape[..ax].iter().product();
    let inner: usize = x.shape[ax + 1..].iter().product();
    let n_idx = idx.len();
    if outer * n_idx * inner != out.len() {
        return Err(format!(
            "gather of {:?} by {:?} is not {:?}",
            x.shape, idx.shape, out.shape
        ));
    }
    b.kernel(
        "sd_gather",
        out.len(),
        vec![
            KArg::i32(x.dt.size() as i32),
            idx.dt.code(),
            KArg::i64(outer as i64),
            KArg::i64(x.shape[ax] as i64),
            KArg::i64(inner as i64),
            KArg::i64(n_idx as i64),
            KArg::Ptr(out.addr),
            KArg::Ptr(x.addr),
            KArg::Ptr(idx.addr),
        ],
    );
    Ok(vec![out])
}

fn gather_nd(b: &mut Builder<'_>, o: &Op<'_>) -> Result<Vec<TRef>, String> {
    let x = b.tensor(o, "x")?;
    let idx = b.tensor(o, "indices")?;
    let out = b.output(o, 0)?;
    if b.opt_ints(o, "batch_dims")?.is_some_and(|v| v[0] != 0) {
        return Err("gather_nd with batch_dims".into());
    }
    let depth = *idx.shape.last().ok_or("scalar indices")?;
    if depth == 0 || depth > x.shape.len() || depth > 6 {
        return Err(format!("index depth {depth} for {:?}", x.shape));
    }
    let rows = idx.len() / depth;
    let inner: usize = x.shape[depth..].iter().product();
    if rows * inner != out.len() {
        return Err(format!(
            "gather_nd of {:?} by {:?} is not {:?}",
            x.shape, idx.shape, out.shape
        ));
    }
    let xs = strides_i64(&x.shape);
    let dims = &x.shape[..depth];
    let s = Strided3::new(dims, &xs[..depth], &xs[..depth], &xs[..depth])?;
    b.kernel(
        "sd_gather_nd",
        out.len(),
        vec![
            KArg::i32(x.dt.size() as i32),
            idx.dt.code(),
            KArg::i64(rows as i64),
            KArg::i32(depth as i32),
            KArg::i64(inner as i64),
            KArg::Ptr(out.addr),
            KArg::Ptr(x.addr),
            KArg::Ptr(idx.addr),
            KArg::pod(&s),
        ],
    );
    Ok(vec![out])
}
