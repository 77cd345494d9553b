//! gather (with batch_dims) and gather_nd; negative indices wrap, out-of-range ones fail.

use super::util::{self, axis, reshape, to_vec};
use super::{Ctx, KResult, KernelError, Registry, Val};
use crate::backend::RtBackend;

pub(super) fn register<B: RtBackend>(r: &mut Registry<B>) {
    r.insert("gather", gather);
    r.insert("gather_nd", gather_nd);
}

fn wrap(i: i64, n: usize) -> KResult<i64> {
    let v = if i < 0 { i + n as i64 } else { i };
    if (0..n as i64).contains(&v) {
        Ok(v)
    } else {
        Err(KernelError::param(
            "indices",
            format!("index {i} is out of range for a dimension of {n}"),
        ))
    }
}

fn gather<B: RtBackend>(c: &mut Ctx<'_, B>) -> KResult<Vec<Val<B>>> {
    let x = c.tensor("x")?;
    let idx = c.tensor("indices")?;
    let d = x.shape();
    let a = axis(c.int("axis")?, d.len())?;
    let bd = c.int("batch_dims")?.max(0) as usize;
    let id = idx.shape();
    let iv: Vec<f32> = to_vec::<B>(idx.t);
    let nb: usize = d[..bd].iter().product();
    let na: usize = d[bd..a].iter().product();
    let n = d[a];
    let rest: usize = d[a + 1..].iter().product();
    let ni = iv.len() / nb.max(1);
    // x as [nb·na·n, rest]: row (b, p, j) → b·na·n + p·n + j; output rows (b, p, i).
    let mut rows = Vec::with_capacity(nb * na * ni);
    for b in 0..nb {
        for p in 0..na {
            for i in 0..ni {
                let j = wrap(iv[b * ni + i] as i64, n)?;
                rows.push((b * na * n + p * n) as i64 + j);
            }
        }
    }
    let len = rows.len();
    let x2 = reshape::<B>(x.t, &[nb * na * n, rest]);
    let y = B::float_select(x2, 0, util::int_from_vec::<B>(rows, &[len], c.device));
    let out = c.out(0)?.shape.clone();
    let _ = id;
    Ok(vec![c.val(reshape::<B>(y, &out), 0)?])
}

fn gather_nd<B: RtBackend>(c: &mut Ctx<'_, B>) -> KResult<Vec<Val<B>>> {
    let x = c.tensor("x")?;
    let idx = c.tensor("indices")?;
    let d = x.shape();
    let id = idx.shape();
    let bd = c.int("batch_dims")?.max(0) as usize;
    let k = *id
        .last()
        .ok_or_else(|| KernelError::param("indices", "rank 0"))?;
    if bd + k > d.len() {
        return Err(KernelError::param(
            "indices",
            format!("index depth {k} exceeds {d:?}"),
        ));
    }
    let iv = to_vec::<B>(idx.t);
    let nb: usize = d[..bd].iter().product();
    let inner: usize = d[bd..bd + k].iter().product();
    let rest: usize = d[bd + k..].iter().product();
    let count = iv.len() / k.max(1);
    let per_batch = count / nb.max(1);
    let mut rows = Vec::with_capacity(count);
    for (t, chunk) in iv.chunks(k.max(1)).enumerate() {
        let b = t / per_batch.max(1);
        let mut lin = 0i64;
        for (j, v) in chunk.iter().enumerate() {
            lin = lin * d[bd + j] as i64 + wrap(*v as i64, d[bd + j])?;
        }
        rows.push((b * inner) as i64 + lin);
    }
    let len = rows.len();
    let x2 = reshape::<B>(x.t, &[nb * inner, rest]);
    let y = B::float_select(x2, 0, util::int_from_vec::<B>(rows, &[len], c.device));
    let out = c.out(0)?.shape.clone();
    Ok(vec![c.val(reshape::<B>(y, &out), 0)?])
}
