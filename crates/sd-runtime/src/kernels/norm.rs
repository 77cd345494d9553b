//! Normalizations: layer_norm, instance_norm, batch_norm, and the fused group norm that
//! `passes::group_norm` creates.

use super::activation::activation_param;
use super::util::{axis, dims, expand, reshape};
use super::{Activation, Ctx, KResult, KernelError, Registry, Val};
use crate::backend::RtBackend;
use burn_tensor::ops::FloatTensor;

pub(super) fn register<B: RtBackend>(r: &mut Registry<B>) {
    r.insert("layer_norm", layer_norm);
    r.insert("instance_norm", instance_norm);
    r.insert("batch_norm", batch_norm);
    r.insert(crate::passes::GROUP_NORM_OP, group_norm);
}

/// (x − mean)/sqrt(var + eps) over `axes` (biased variance).
pub fn normalize<B: RtBackend>(x: FloatTensor<B>, axes: &[usize], eps: f32) -> FloatTensor<B> {
    let mut mean = x.clone();
    for &a in axes {
        mean = B::float_mean_dim(mean, a);
    }
    let centered = B::float_sub(x, mean);
    let mut var = B::float_mul(centered.clone(), centered.clone());
    for &a in axes {
        var = B::float_mean_dim(var, a);
    }
    B::float_div(
        centered,
        B::float_sqrt(B::float_add_scalar(var, eps.into())),
    )
}

/// `t` (a vector of values along `axis`) shaped to broadcast over rank `r`.
fn along_axis<B: RtBackend>(t: FloatTensor<B>, r: usize, axis: usize) -> FloatTensor<B> {
    let c: usize = dims::<B>(&t).iter().product();
    let mut s = vec![1; r];
    s[axis] = c;
    reshape::<B>(t, &s)
}

/// y·gamma + beta with gamma/beta holding one value per position of `axis`.
fn affine<B: RtBackend>(
    y: FloatTensor<B>,
    gamma: Option<FloatTensor<B>>,
    beta: Option<FloatTensor<B>>,
    axis: usize,
) -> FloatTensor<B> {
    let d = dims::<B>(&y);
    let mut y = y;
    if let Some(g) = gamma {
        y = B::float_mul(y, expand::<B>(along_axis::<B>(g, d.len(), axis), &d));
    }
    if let Some(b) = beta {
        y = B::float_add(y, expand::<B>(along_axis::<B>(b, d.len(), axis), &d));
    }
    y
}

fn layer_norm<B: RtBackend>(c: &mut Ctx<'_, B>) -> KResult<Vec<Val<B>>> {
    let x = c.tensor("x")?;
    let d = x.shape();
    let r = d.len();
    let mut axes = match c.opt_ints("axes")? {
        Some(a) => a
            .into_iter()
            .map(|a| axis(a, r))
            .collect::<KResult<Vec<_>>>()?,
        None => (0..r).collect(),
    };
    let eps = c.float("epsilon")?;
    let (g, b) = (c.opt_tensor("gamma")?, c.opt_tensor("beta")?);
    if let [a] = axes[..] {
        for (p, t) in [("gamma", &g), ("beta", &b)] {
            if let Some(t) = t
                && t.shape().iter().product::<usize>() != d[a]
            {
                return Err(KernelError::param(p, format!("{} values expected", d[a])));
            }
        }
        let y = B::layer_norm_fused(x.t, a, eps, g.map(|v| v.t), b.map(|v| v.t))?;
        return Ok(vec![c.val(y, 0)?]);
    }
    let mut y = normalize::<B>(x.t, &axes, eps);
    // gamma/beta have the normalized axes' shape (in the order given); place them at their
    // axes with unit dimensions elsewhere.
    let order = axes.clone();
    axes.sort_unstable();
    let bshape: Vec<usize> = (0..r)
        .map(|i| if axes.contains(&i) { d[i] } else { 1 })
        .collect();
    let place = |t: FloatTensor<B>| -> KResult<FloatTensor<B>> {
        if order != axes {
            // Permute the parameter into ascending-axis order first.
            let perm: Vec<usize> = axes
                .iter()
                .map(|a| order.iter().position(|o| o == a).unwrap())
                .collect();
            let t = reshape::<B>(t, &order.iter().map(|a| d[*a]).collect::<Vec<_>>());
            return Ok(expand::<B>(
                reshape::<B>(B::float_permute(t, &perm), &bshape),
                &d,
            ));
        }
        Ok(expand::<B>(reshape::<B>(t, &bshape), &d))
    };
    if let Some(g) = g {
        y = B::float_mul(y, place(g.t)?);
    }
    if let Some(b) = b {
        y = B::float_add(y, place(b.t)?);
    }
    Ok(vec![c.val(y, 0)?])
}

/// Layer norm over one axis with burn's own ops (the default of
/// [`RtBackend::layer_norm_fused`]); gamma/beta hold one value per position of that axis.
pub fn layer_norm_generic<B: RtBackend>(
    x: FloatTensor<B>,
    axis: usize,
    eps: f32,
    gamma: Option<FloatTensor<B>>,
    beta: Option<FloatTensor<B>>,
) -> KResult<FloatTensor<B>> {
    let y = normalize::<B>(x, &[axis], eps);
    Ok(affine::<B>(y, gamma, beta, axis))
}

fn instance_norm<B: RtBackend>(c: &mut Ctx<'_, B>) -> KResult<Vec<Val<B>>> {
    let x = c.tensor("x")?;
    let r = x.rank();
    let eps = c.float("epsilon")?;
    let (g, b) = (c.opt_tensor("gamma")?, c.opt_tensor("beta")?);
    let axes: Vec<usize> = (2..r).collect();
    let y = normalize::<B>(x.t, &axes, eps);
    Ok(vec![c.val(
        affine::<B>(y, g.map(|v| v.t), b.map(|v| v.t), 1),
        0,
    )?])
}

fn batch_norm<B: RtBackend>(c: &mut Ctx<'_, B>) -> KResult<Vec<Val<B>>> {
    let x = c.tensor("x")?;
    let d = x.shape();
    let (mean, var) = (c.tensor("mean")?, c.tensor("variance")?);
    let eps = c.float("epsilon")?;
    let (g, b) = (c.opt_tensor("gamma")?, c.opt_tensor("beta")?);
    let m = expand::<B>(along_axis::<B>(mean.t, d.len(), 1), &d);
    let s = B::float_sqrt(B::float_add_scalar(var.t, eps.into()));
    let s = expand::<B>(along_axis::<B>(s, d.len(), 1), &d);
    let y = B::float_div(B::float_sub(x.t, m), s);
    Ok(vec![c.val(
        affine::<B>(y, g.map(|v| v.t), b.map(|v| v.t), 1),
        0,
    )?])
}

/// Group norm of x [N, C, …]: statistics over (C/G channels × spatial) per group, then
/// optional per-channel gamma/beta and `act`, on the backend's
/// [`RtBackend::group_norm_fused`]; x's shape is kept.
pub fn group_norm_fn<B: RtBackend>(
    x: FloatTensor<B>,
    groups: usize,
    eps: f32,
    gamma: Option<FloatTensor<B>>,
    beta: Option<FloatTensor<B>>,
    act: Activation,
) -> KResult<FloatTensor<B>> {
    let d = dims::<B>(&x);
    if d.len() < 2 || groups == 0 || !d[1].is_multiple_of(groups) {
        return Err(KernelError::param(
            "x",
            format!("{d:?} does not split into {groups} groups"),
        ));
    }
    for (p, t) in [("gamma", &gamma), ("beta", &beta)] {
        if let Some(t) = t
            && dims::<B>(t).iter().product::<usize>() != d[1]
        {
            return Err(KernelError::param(p, "one value per channel expected"));
        }
    }
    B::group_norm_fused(x, groups, eps, gamma, beta, act)
}

/// Group norm with burn's own ops, then `act` (the default of
/// [`RtBackend::group_norm_fused`]).
pub fn group_norm_generic<B: RtBackend>(
    x: FloatTensor<B>,
    groups: usize,
    eps: f32,
    gamma: Option<FloatTensor<B>>,
    beta: Option<FloatTensor<B>>,
    act: Activation,
) -> KResult<FloatTensor<B>> {
    let d = dims::<B>(&x);
    let n = d[0];
    let per: usize = d[1..].iter().product::<usize>() / groups;
    let y = normalize::<B>(reshape::<B>(x, &[n, groups, per]), &[2], eps);
    let y = affine::<B>(reshape::<B>(y, &d), gamma, beta, 1);
    Ok(act.apply::<B>(y))
}

fn group_norm<B: RtBackend>(c: &mut Ctx<'_, B>) -> KResult<Vec<Val<B>>> {
    let x = c.tensor("x")?;
    let groups = c.int("groups")? as usize;
    let eps = c.float("epsilon")?;
    let (g, b) = (c.opt_tensor("gamma")?, c.opt_tensor("beta")?);
    let act = activation_param(c)?;
    let y = group_norm_fn::<B>(x.t, groups, eps, g.map(|v| v.t), b.map(|v| v.t), act)?;
    let out = c.out(0)?.shape.clone();
    Ok(vec![c.val(reshape::<B>(y, &out), 0)?])
}
