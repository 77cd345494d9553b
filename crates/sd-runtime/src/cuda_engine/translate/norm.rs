//! Normalisations and reductions: the fused group norm (+activation), layer norm, softmax
//! and the `reduce_*` ops, each over the middle axis of an [outer, n, inner] view.

use super::{Builder, Dt, KArg, Op, TRef, axis};
use crate::cuda_engine::program::{Addr, Region};
use crate::kernels::Activation;

pub(super) fn translate(
    b: &mut Builder<'_>,
    o: &Op<'_>,
    op_type: &str,
) -> Option<Result<Vec<TRef>, String>> {
    let red = match op_type {
        "reduce_sum" => 0,
        "reduce_mean" => 1,
        "reduce_max" => 2,
        "reduce_min" => 3,
        "reduce_prod" => 4,
        "reduce_argmax" => 5,
        "reduce_argmin" => 6,
        "reduce_sum_square" => 7,
        "reduce_l2_norm" => 8,
        "reduce_l1_norm" => 9,
        crate::passes::GROUP_NORM_OP => return Some(group_norm(b, o)),
        "layer_norm" => return Some(layer_norm(b, o)),
        "softmax" => return Some(softmax(b, o)),
        _ => return None,
    };
    Some(reduce(b, o, red))
}

/// [outer, n, inner] of `shape` reduced over the contiguous run of `axes`.
fn split3(shape: &[usize], axes: &[usize]) -> Result<(usize, usize, usize), String> {
    let mut a = axes.to_vec();
    a.sort_unstable();
    a.dedup();
    let (Some(&lo), Some(&hi)) = (a.first(), a.last()) else {
        return Ok((1, shape.iter().product(), 1));
    };
    if hi - lo + 1 != a.len() {
        return Err(format!("reduction over non-adjacent axes {axes:?}"));
    }
    Ok((
        shape[..lo].iter().product(),
        shape[lo..=hi].iter().product(),
        shape[hi + 1..].iter().product(),
    ))
}

fn axes_of(b: &Builder<'_>, o: &Op<'_>, p: &str, rank: usize) -> Result<Vec<usize>, String> {
    match b.opt_ints(o, p)? {
        Some(v) => v.iter().map(|a| axis(*a, rank)).collect(),
        None => Ok((0..rank).collect()),
    }
}

/// One block per row when the reduced axis is innermost, else one thread per output.
fn row_grid(b: &Builder<'_>, outer: usize, inner: usize) -> ((u32, u32, u32), u32) {
    if inner == 1 {
        ((outer.clamp(1, 65535 * 16) as u32, 1, 1), 256)
    } else {
        let n = outer * inner;
        (
            (
                n.div_ceil(256).clamp(1, b.device.sms as usize * 16) as u32,
                1,
                1,
            ),
            256,
        )
    }
}

fn reduce(b: &mut Builder<'_>, o: &Op<'_>, op: i32) -> Result<Vec<TRef>, String> {
    let x = b.tensor(o, "x")?;
    let out = b.output(o, 0)?;
    let r = x.shape.len();
    let axes = if op == 5 || op == 6 {
        vec![axis(b.opt_ints(o, "axis")?.map_or(-1, |v| v[0]), r)?]
    } else {
        axes_of(b, o, "axes", r)?
    };
    let (outer, n, inner) = split3(&x.shape, &axes)?;
    if outer * inner != out.len() {
        return Err(format!(
            "reduction of {:?} over {axes:?} is not {:?}",
            x.shape, out.shape
        ));
    }
    b.kernel(
        "sd_reduce",
        outer * inner,
        vec![
            KArg::i32(op),
            x.dt.code(),
            out.dt.code(),
            KArg::i64(outer as i64),
            KArg::i64(n as i64),
            KArg::i64(inner as i64),
            KArg::Ptr(out.addr),
            KArg::Ptr(x.addr),
        ],
    );
    Ok(vec![out])
}

/// Softmax of `x` over the middle axis of [outer, n, inner] into `out` (which may be `x`).
pub fn emit_softmax(
    b: &mut Builder<'_>,
    out: &TRef,
    x: &TRef,
    (outer, n, inner): (usize, usize, usize),
) {
    if inner == 1 && n <= 256 * 32 {
        b.kernel_grid(
            "sd_softmax_cached",
            (outer.clamp(1, 65535 * 16) as u32, 1, 1),
            256,
            0,
            vec![
                x.dt.code(),
                KArg::i64(outer as i64),
                KArg::i64(n as i64),
                KArg::Ptr(out.addr),
                KArg::Ptr(x.addr),
            ],
        );
        return;
    }
    let (grid, block) = row_grid(b, outer, inner);
    b.kernel_grid(
        "sd_softmax",
        grid,
        block,
        0,
        vec![
            x.dt.code(),
            KArg::i64(outer as i64),
            KArg::i64(n as i64),
            KArg::i64(inner as i64),
            KArg::Ptr(out.addr),
            KArg::Ptr(x.addr),
        ],
    );
}

fn softmax(b: &mut Builder<'_>, o: &Op<'_>) -> Result<Vec<TRef>, String> {
    let x = b.tensor(o, "x")?;
    let out = b.output(o, 0)?;
    let r = x.shape.len();
    let ax = axis(b.opt_ints(o, "axis")?.map_or(-1, |v| v[0]), r)?;
    let dims = split3(&x.shape, &[ax])?;
    emit_softmax(b, &out, &x, dims);
    Ok(vec![out])
}

/// The addresses of optional gamma and beta (null when absent), checked to hold `n` values
/// each of one element type, and that type.
fn gamma_beta(
    gamma: &Option<TRef>,
    beta: &Option<TRef>,
    n: usize,
) -> Result<(Addr, Addr, Dt), String> {
    for (p, t) in [("gamma", gamma), ("beta", beta)] {
        if let Some(t) = t
            && t.len() != n
        {
            return Err(format!("{p} has {} values, {n} expected", t.len()));
        }
    }
    if let (Some(g), Some(b)) = (gamma, beta)
        && g.dt != b.dt
    {
        return Err("gamma and beta of different types".into());
    }
    let dt = gamma.as_ref().or(beta.as_ref()).map_or(Dt::F32, |t| t.dt);
    let addr = |t: &Option<TRef>| t.as_ref().map_or(Addr::NULL, |t| t.addr);
    Ok((addr(gamma), addr(beta), dt))
}

fn layer_norm(b: &mut Builder<'_>, o: &Op<'_>) -> Result<Vec<TRef>, String> {
    let x = b.tensor(o, "x")?;
    let gamma = b.opt_tensor(o, "gamma")?;
    let beta = b.opt_tensor(o, "beta")?;
    let eps = b.opt_floats(o, "epsilon")?.map_or(1e-5, |v| v[0]);
    let out = b.output(o, 0)?;
    let r = x.shape.len();
    let axes = axes_of(b, o, "axes", r)?;
    let (outer, n, inner) = split3(&x.shape, &axes)?;
    let mut sorted = axes.clone();
    sorted.sort_unstable();
    if sorted != axes && (gamma.is_some() || beta.is_some()) {
        return Err(format!(
            "layer norm over unsorted axes {axes:?} with gamma/beta"
        ));
    }
    let (g, bt, dt_gb) = gamma_beta(&gamma, &beta, n)?;
    let (name, grid) = if inner == 1 {
        ("sd_layer_norm", row_grid(b, outer, inner).0)
    } else {
        let cols = inner.div_ceil(32).min(u32::MAX as usize) as u32;
        ("sd_layer_norm_cols", (cols, outer.min(65535) as u32, 1))
    };
    if inner > 1 && outer > 65535 {
        return Err(format!("layer norm over {outer} rows of columns"));
    }
    b.kernel_grid(
        name,
        grid,
        256,
        0,
        vec![
            x.dt.code(),
            dt_gb.code(),
            KArg::i64(outer as i64),
            KArg::i64(n as i64),
            KArg::i64(inner as i64),
            KArg::Ptr(out.addr),
            KArg::Ptr(x.addr),
            KArg::Ptr(g),
            KArg::Ptr(bt),
            KArg::f32(eps),
        ],
    );
    Ok(vec![out])
}

fn group_norm(b: &mut Builder<'_>, o: &Op<'_>) -> Result<Vec<TRef>, String> {
    let x = b.tensor(o, "x")?;
    let groups = b.int(o, "groups")? as usize;
    let eps = b.float(o, "epsilon")?;
    let gamma = b.opt_tensor(o, "gamma")?;
    let beta = b.opt_tensor(o, "beta")?;
    let act = match b.opt_string(o, "activation")? {
        None => Activation::None,
        Some(n) => Activation::parse(&n).ok_or_else(|| format!("unknown activation `{n}`"))?,
    };
    let out = b.output(o, 0)?;
    if x.shape.len() < 2 || groups == 0 || x.shape[1] % groups != 0 || out.len() != x.len() {
        return Err(format!("group norm of {:?} in {groups} groups", x.shape));
    }
    let (batch, channels) = (x.shape[0], x.shape[1]);
    let plane: usize = x.shape[2..].iter().product();
    let (g, bt, dt_gb) = gamma_beta(&gamma, &beta, channels)?;
    let bg = batch * groups;
    // Enough blocks to fill the GPU: each (batch, group) is summed by `splits` blocks.
    let per = channels / groups * plane;
    let splits = (b.device.sms as usize * 4)
        .div_ceil(bg)
        .clamp(1, per.div_ceil(2048).max(1));
    let stats = Addr {
        region: Region::Stats,
        offset: 0,
    };
    b.stats_bytes = b.stats_bytes.max(bg * 2 * 4);
    b.kernel_grid(
        "sd_group_norm_zero",
        ((bg * 2).div_ceil(256) as u32, 1, 1),
        256,
        0,
        vec![KArg::Ptr(stats), KArg::i32((bg * 2) as i32)],
    );
    b.kernel_grid(
        "sd_group_norm_stats",
        ((bg * splits) as u32, 1, 1),
        256,
        0,
        vec![
            x.dt.code(),
            KArg::i64(channels as i64),
            KArg::i64(plane as i64),
            KArg::i32(groups as i32),
            KArg::i32(splits as i32),
            KArg::Ptr(x.addr),
            KArg::Ptr(stats),
        ],
    );
    b.kernel(
        "sd_group_norm_apply",
        out.len(),
        vec![
            x.dt.code(),
            dt_gb.code(),
            KArg::i64(batch as i64),
            KArg::i64(channels as i64),
            KArg::i64(plane as i64),
            KArg::i32(groups as i32),
            KArg::f32(eps),
            KArg::i32(super::elementwise::act_code(act)),
            KArg::Ptr(out.addr),
            KArg::Ptr(x.addr),
            KArg::Ptr(g),
            KArg::Ptr(bt),
            KArg::Ptr(stats),
        ],
    );
    Ok(vec![out])
}

#[cfg(test)]
mod tests {
    use super::split3;

    #[test]
    fn reductions_view_the_shape_as_outer_n_inner() {
        assert_eq!(split3(&[2, 3, 4, 5], &[1, 2]).unwrap(), (2, 12, 5));
        assert_eq!(split3(&[2, 3, 4], &[2]).unwrap(), (6, 4, 1));
        assert!(split3(&[2, 3, 4], &[0, 2]).is_err());
    }
}
