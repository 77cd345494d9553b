//! Reductions over axes (mean, sum, max, min, prod) and arg-reductions.

use super::util::{self, axis, reshape};
use super::{Ctx, KResult, Registry, Val};
use crate::backend::RtBackend;
use burn_tensor::ops::FloatTensor;

pub(super) fn register<B: RtBackend>(r: &mut Registry<B>) {
    r.insert("reduce_mean", |c| reduce(c, B::float_mean_dim));
    r.insert("reduce_sum", |c| reduce(c, B::float_sum_dim));
    r.insert("reduce_max", |c| reduce(c, B::float_max_dim));
    r.insert("reduce_min", |c| reduce(c, B::float_min_dim));
    r.insert("reduce_prod", |c| reduce(c, B::float_prod_dim));
    r.insert("reduce_argmax", |c| arg(c, true));
    r.insert("reduce_argmin", |c| arg(c, false));
}

fn reduce<B: RtBackend>(
    c: &mut Ctx<'_, B>,
    f: fn(FloatTensor<B>, usize) -> FloatTensor<B>,
) -> KResult<Vec<Val<B>>> {
    let x = c.tensor("x")?;
    let r = x.rank();
    let axes = match c.opt_ints("axes")? {
        Some(a) => a
            .into_iter()
            .map(|a| axis(a, r))
            .collect::<KResult<Vec<_>>>()?,
        None => (0..r).collect(),
    };
    let mut t = x.t;
    for a in axes {
        t = f(t, a);
    }
    let out = c.out(0)?.shape.clone();
    Ok(vec![c.val(reshape::<B>(t, &out), 0)?])
}

/// Index of the first maximum (minimum) along an axis, computed on the host so that ties go
/// to the first index as in numpy and Core ML.
fn arg<B: RtBackend>(c: &mut Ctx<'_, B>, max: bool) -> KResult<Vec<Val<B>>> {
    let x = c.tensor("x")?;
    let d = x.shape();
    let a = axis(c.int("axis")?, d.len())?;
    let v = util::to_vec::<B>(x.t);
    let outer: usize = d[..a].iter().product();
    let n = d[a];
    let inner: usize = d[a + 1..].iter().product();
    let mut res = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let mut best = 0;
            for j in 1..n {
                let (cand, cur) = (v[(o * n + j) * inner + i], v[(o * n + best) * inner + i]);
                if (max && cand > cur) || (!max && cand < cur) {
                    best = j;
                }
            }
            res.push(best as f32);
        }
    }
    let out = c.out(0)?.shape.clone();
    Ok(vec![c.val(util::from_vec::<B>(res, &out, c.device), 0)?])
}
