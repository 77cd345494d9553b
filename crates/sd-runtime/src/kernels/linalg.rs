//! Linear algebra: linear, matmul, einsum (as permute + batched matmul), attention.

use super::activation::{activation_param, softmax};
use super::util::{self, axis, broadcast, dims, expand, permute, reshape, to_mask, to_rank};
use super::{Activation, Ctx, KResult, KernelError, Registry, Val};
use crate::backend::RtBackend;
use burn_tensor::ops::FloatTensor;

pub(super) fn register<B: RtBackend>(r: &mut Registry<B>) {
    r.insert("linear", linear);
    r.insert(crate::passes::LINEAR_ACT_OP, linear);
    r.insert("matmul", matmul);
    r.insert("einsum", einsum);
    r.insert("scaled_dot_product_attention", sdpa);
    r.insert(crate::passes::ATTENTION_OP, fused_attention);
    r.insert(crate::passes::MATMUL_ATTENTION_OP, matmul_attention);
}

/// Batched matmul with numpy batch broadcasting; both operands of rank ≥ 2. Runs on the
/// backend's [`RtBackend::matmul_batched`].
pub fn matmul_nd<B: RtBackend>(a: FloatTensor<B>, b: FloatTensor<B>) -> KResult<FloatTensor<B>> {
    let (da, db) = (dims::<B>(&a), dims::<B>(&b));
    let r = da.len().max(db.len());
    let (a, b) = (to_rank::<B>(a, r), to_rank::<B>(b, r));
    let (da, db) = (dims::<B>(&a), dims::<B>(&b));
    if da[r - 1] != db[r - 2] {
        return Err(KernelError::new(format!(
            "matmul of {da:?} and {db:?}: inner dimensions differ"
        )));
    }
    broadcast(&da[..r - 2], &db[..r - 2])?;
    B::matmul_batched(a, b)
}

/// Batched matmul of same-rank operands with burn's own ops (the default of
/// [`RtBackend::matmul_batched`]).
///
/// A right operand shared by every batch folds the left operand's batch dims into its rows
/// (one 2-D product). Any other broadcast batch dim is copied out to real data: CubeCL's
/// matmul (burn-cuda 0.21) reads a stride-0 batch dim of an expanded view as if it were
/// packed, which gave every batch after the first garbage.
pub fn matmul_generic<B: RtBackend>(
    a: FloatTensor<B>,
    b: FloatTensor<B>,
) -> KResult<FloatTensor<B>> {
    let (da, db) = (dims::<B>(&a), dims::<B>(&b));
    let r = da.len();
    let batch = broadcast(&da[..r - 2], &db[..r - 2])?;
    let (m, k, n) = (da[r - 2], da[r - 1], db[r - 1]);
    let rows = batch.iter().product::<usize>() * m;
    if db[..r - 2].iter().all(|&d| d == 1) && da[..r - 2] == batch[..] && rows > m {
        let y = B::float_matmul(reshape::<B>(a, &[rows, k]), reshape::<B>(b, &[k, n]));
        let mut out = batch;
        out.extend_from_slice(&[m, n]);
        return Ok(reshape::<B>(y, &out));
    }
    let mut sa = batch.clone();
    sa.extend_from_slice(&da[r - 2..]);
    let mut sb = batch;
    sb.extend_from_slice(&db[r - 2..]);
    Ok(B::float_matmul(
        util::repeat_to::<B>(a, &sa),
        util::repeat_to::<B>(b, &sb),
    ))
}

fn swap_last<B: RtBackend>(t: FloatTensor<B>) -> FloatTensor<B> {
    let r = dims::<B>(&t).len();
    B::float_swap_dims(t, r - 2, r - 1)
}

fn matmul<B: RtBackend>(c: &mut Ctx<'_, B>) -> KResult<Vec<Val<B>>> {
    let (tx, ty) = (c.bool("transpose_x")?, c.bool("transpose_y")?);
    let (x, y) = (c.tensor("x")?, c.tensor("y")?);
    let (xv, yv) = (x.rank() == 1, y.rank() == 1);
    let (xs, ys) = (x.shape(), y.shape());
    let mut a = if xv {
        reshape::<B>(x.t, &[1, xs[0]])
    } else {
        x.t
    };
    let mut b = if yv {
        reshape::<B>(y.t, &[ys[0], 1])
    } else {
        y.t
    };
    if tx && !xv {
        a = swap_last::<B>(a);
    }
    if ty && !yv {
        b = swap_last::<B>(b);
    }
    let out = matmul_nd::<B>(a, b)?;
    let shape = c.out(0)?.shape.clone();
    Ok(vec![c.val(reshape::<B>(out, &shape), 0)?])
}

/// x·Wᵀ + b, then `act`, for x of any rank ≥ 1 and W [Dout, Din], on the backend's
/// [`RtBackend::linear_fused`].
pub fn linear_fn<B: RtBackend>(
    x: FloatTensor<B>,
    w: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
    act: Activation,
) -> KResult<FloatTensor<B>> {
    let dx = dims::<B>(&x);
    let dw = dims::<B>(&w);
    let din = *dx.last().ok_or_else(|| KernelError::param("x", "rank 0"))?;
    if dw.len() != 2 || dw[1] != din {
        return Err(KernelError::param(
            "weight",
            format!("{dw:?} does not apply to {dx:?}"),
        ));
    }
    if let Some(b) = &bias
        && dims::<B>(b).iter().product::<usize>() != dw[0]
    {
        return Err(KernelError::param(
            "bias",
            "one value per output feature expected",
        ));
    }
    B::linear_fused(x, w, bias, act)
}

/// x·Wᵀ + b with burn's own ops, then `act` (the default of [`RtBackend::linear_fused`]).
pub fn linear_generic<B: RtBackend>(
    x: FloatTensor<B>,
    w: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
    act: Activation,
) -> KResult<FloatTensor<B>> {
    let dx = dims::<B>(&x);
    let dw = dims::<B>(&w);
    let din = *dx.last().ok_or_else(|| KernelError::param("x", "rank 0"))?;
    let m = dx.iter().product::<usize>() / din.max(1);
    let x2 = reshape::<B>(x, &[m, din]);
    let mut y = B::float_matmul(x2, permute::<B>(w, &[1, 0]));
    if let Some(b) = bias {
        y = B::float_add(y, expand::<B>(reshape::<B>(b, &[1, dw[0]]), &[m, dw[0]]));
    }
    let mut out = dx;
    *out.last_mut().unwrap() = dw[0];
    Ok(act.apply::<B>(reshape::<B>(y, &out)))
}

fn linear<B: RtBackend>(c: &mut Ctx<'_, B>) -> KResult<Vec<Val<B>>> {
    let x = c.tensor("x")?;
    let w = c.tensor("weight")?;
    let b = c.opt_tensor("bias")?;
    let act = activation_param(c)?;
    Ok(vec![
        c.val(linear_fn::<B>(x.t, w.t, b.map(|b| b.t), act)?, 0)?,
    ])
}

/// Two-operand einsum without repeated indices within a term: indices only in one input
/// and not in the output are summed first; then both operands are permuted to
/// [batch, free, contracted] / [batch, contracted, free] and multiplied.
pub fn einsum_fn<B: RtBackend>(
    eq: &str,
    a: FloatTensor<B>,
    b: FloatTensor<B>,
) -> KResult<FloatTensor<B>> {
    let eq: String = eq.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, out) = eq
        .split_once("->")
        .ok_or_else(|| KernelError::param("equation", format!("`{eq}` has no `->`")))?;
    let (ta, tb) = lhs
        .split_once(',')
        .ok_or_else(|| KernelError::param("equation", format!("`{eq}` needs two terms")))?;
    let (ta, tb, to): (Vec<char>, Vec<char>, Vec<char>) = (
        ta.chars().collect(),
        tb.chars().collect(),
        out.chars().collect(),
    );
    for t in [&ta, &tb, &to] {
        let mut s = t.clone();
        s.sort_unstable();
        s.dedup();
        if s.len() != t.len() {
            return Err(KernelError::param(
                "equation",
                format!("`{eq}`: repeated index within a term"),
            ));
        }
    }
    let (mut a, mut b) = (a, b);
    let (mut ta, mut tb) = (ta, tb);
    // Sum indices that appear in one operand only and not in the output.
    let tb0 = tb.clone();
    sum_lonely::<B>(&mut ta, &tb0, &to, &mut a);
    let ta0 = ta.clone();
    sum_lonely::<B>(&mut tb, &ta0, &to, &mut b);
    let (da, db) = (dims::<B>(&a), dims::<B>(&b));
    if da.len() != ta.len() || db.len() != tb.len() {
        return Err(KernelError::param(
            "values",
            format!("`{eq}` does not index shapes {da:?}, {db:?}"),
        ));
    }
    let size = |c: char| -> usize {
        ta.iter()
            .position(|x| *x == c)
            .map(|i| da[i])
            .or_else(|| tb.iter().position(|x| *x == c).map(|i| db[i]))
            .unwrap_or(1)
    };
    let batch: Vec<char> = to
        .iter()
        .copied()
        .filter(|c| ta.contains(c) && tb.contains(c))
        .collect();
    let free_a: Vec<char> = to
        .iter()
        .copied()
        .filter(|c| ta.contains(c) && !tb.contains(c))
        .collect();
    let free_b: Vec<char> = to
        .iter()
        .copied()
        .filter(|c| tb.contains(c) && !ta.contains(c))
        .collect();
    let contr: Vec<char> = ta
        .iter()
        .copied()
        .filter(|c| tb.contains(c) && !to.contains(c))
        .collect();
    if to.iter().any(|c| !ta.contains(c) && !tb.contains(c)) {
        return Err(KernelError::param(
            "equation",
            format!("`{eq}`: output index not in the inputs"),
        ));
    }
    let pos = |t: &[char], cs: &[char]| -> Vec<usize> {
        cs.iter()
            .map(|c| t.iter().position(|x| x == c).unwrap())
            .collect()
    };
    let prod = |cs: &[char]| cs.iter().map(|c| size(*c)).product::<usize>();
    let (nb, nfa, nfb, nc) = (prod(&batch), prod(&free_a), prod(&free_b), prod(&contr));
    let pa: Vec<usize> = [pos(&ta, &batch), pos(&ta, &free_a), pos(&ta, &contr)].concat();
    let pb: Vec<usize> = [pos(&tb, &batch), pos(&tb, &contr), pos(&tb, &free_b)].concat();
    let a3 = reshape::<B>(permute::<B>(a, &pa), &[nb, nfa, nc]);
    let b3 = reshape::<B>(permute::<B>(b, &pb), &[nb, nc, nfb]);
    let y = B::matmul_batched(a3, b3)?;
    let order: Vec<char> = [batch.clone(), free_a.clone(), free_b.clone()].concat();
    let shape: Vec<usize> = order.iter().map(|c| size(*c)).collect();
    let y = reshape::<B>(y, &shape);
    let perm: Vec<usize> = to
        .iter()
        .map(|c| order.iter().position(|x| x == c).unwrap())
        .collect();
    Ok(permute::<B>(y, &perm))
}

fn sum_lonely<B: RtBackend>(
    t: &mut Vec<char>,
    other: &[char],
    to: &[char],
    x: &mut FloatTensor<B>,
) {
    let mut i = 0;
    while i < t.len() {
        if !other.contains(&t[i]) && !to.contains(&t[i]) {
            let mut d = dims::<B>(x);
            let y = B::float_sum_dim(x.clone(), i);
            d.remove(i);
            *x = reshape::<B>(y, &d);
            t.remove(i);
        } else {
            i += 1;
        }
    }
}

fn einsum<B: RtBackend>(c: &mut Ctx<'_, B>) -> KResult<Vec<Val<B>>> {
    let eq = c.string("equation")?;
    let vals = c.tensors("values")?;
    let [a, b]: [Val<B>; 2] = vals
        .try_into()
        .map_err(|_| KernelError::param("values", "einsum needs two values"))?;
    Ok(vec![c.val(einsum_fn::<B>(&eq, a.t, b.t)?, 0)?])
}

/// softmax(q·kᵀ·scale + mask)·v over the last two axes; `mask` is additive. Runs on the
/// backend's [`RtBackend::attention_fused`].
pub fn attention<B: RtBackend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    scale: f32,
    mask: Option<FloatTensor<B>>,
) -> KResult<FloatTensor<B>> {
    let (dq, dk, dv) = (dims::<B>(&q), dims::<B>(&k), dims::<B>(&v));
    let r = dq.len().max(dk.len()).max(dv.len()).max(2);
    let (q, k, v) = (to_rank::<B>(q, r), to_rank::<B>(k, r), to_rank::<B>(v, r));
    let (dq, dk, dv) = (dims::<B>(&q), dims::<B>(&k), dims::<B>(&v));
    if dq[r - 1] != dk[r - 1] || dk[r - 2] != dv[r - 2] {
        return Err(KernelError::new(format!(
            "attention of q {dq:?}, k {dk:?}, v {dv:?}: sizes differ"
        )));
    }
    let batch = broadcast(&broadcast(&dq[..r - 2], &dk[..r - 2])?, &dv[..r - 2])?;
    if let Some(m) = &mask {
        let mut full = batch;
        full.extend([dq[r - 2], dk[r - 2]]);
        if broadcast(&dims::<B>(m), &full)? != full {
            return Err(KernelError::param(
                "attn_mask",
                format!("{:?} does not broadcast to {full:?}", dims::<B>(m)),
            ));
        }
    }
    B::attention_fused(q, k, v, scale, mask)
}

/// Attention with burn's own ops (the default of [`RtBackend::attention_fused`]).
pub fn attention_generic<B: RtBackend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    scale: f32,
    mask: Option<FloatTensor<B>>,
) -> KResult<FloatTensor<B>> {
    let mut s = matmul_generic::<B>(q, swap_last::<B>(k))?;
    if scale != 1.0 {
        s = B::float_mul_scalar(s, scale.into());
    }
    if let Some(m) = mask {
        let sd = dims::<B>(&s);
        s = B::float_add(s, expand::<B>(m, &sd));
    }
    let r = dims::<B>(&s).len();
    let p = softmax::<B>(s, r - 1);
    matmul_generic::<B>(p, v)
}

fn sdpa<B: RtBackend>(c: &mut Ctx<'_, B>) -> KResult<Vec<Val<B>>> {
    let (q, k, v) = (c.tensor("query")?, c.tensor("key")?, c.tensor("value")?);
    let e = *q.shape().last().unwrap_or(&1);
    let mask = match c.opt_tensor("attn_mask")? {
        Some(m) if m.dtype == sd_mil::DType::Bool => {
            // True takes part in attention; false gets −inf.
            let d = m.shape();
            let keep = to_mask::<B>(m.t);
            let zeros = util::full::<B>(&d, f32::NEG_INFINITY, c.device);
            Some(B::float_mask_where(
                zeros,
                keep,
                util::full::<B>(&d, 0.0, c.device),
            ))
        }
        Some(m) => Some(m.t),
        None => None,
    };
    Ok(vec![c.val(
        attention::<B>(q.t, k.t, v.t, 1.0 / (e as f32).sqrt(), mask)?,
        0,
    )?])
}

/// The fused split-einsum attention (see `passes::attention`): q (B, C, 1, Sq), kt
/// (B, Sk, 1, C), v (B, Cv, 1, Sk), `heads` heads; output (B, Cv, 1, Sq).
fn fused_attention<B: RtBackend>(c: &mut Ctx<'_, B>) -> KResult<Vec<Val<B>>> {
    let heads = c.int("heads")? as usize;
    let scale = c.float("scale")?;
    let (q, k, v) = (c.tensor("q")?, c.tensor("kt")?, c.tensor("v")?);
    let (dq, dk, dv) = (q.shape(), k.shape(), v.shape());
    if dq.len() != 4 || dk.len() != 4 || dv.len() != 4 || dq[1] % heads != 0 || dv[1] % heads != 0 {
        return Err(KernelError::new(format!(
            "fused attention needs (B, C, 1, S) operands, got {dq:?}, {dk:?}, {dv:?}"
        )));
    }
    let (b, ch, sq, sk) = (dq[0], dq[1], dq[3], dk[1]);
    let dh = ch / heads;
    let dvh = dv[1] / heads;
    let q = permute::<B>(reshape::<B>(q.t, &[b, heads, dh, sq]), &[0, 1, 3, 2]);
    let k = permute::<B>(reshape::<B>(k.t, &[b, sk, heads, dh]), &[0, 2, 1, 3]);
    let v = permute::<B>(reshape::<B>(v.t, &[b, heads, dvh, sk]), &[0, 1, 3, 2]);
    let o = attention::<B>(q, k, v, scale, None)?; // (B, H, Sq, dvh)
    let o = reshape::<B>(permute::<B>(o, &[0, 1, 3, 2]), &[b, heads * dvh, 1, sq]);
    let _ = axis;
    Ok(vec![c.val(o, 0)?])
}

/// The fused matmul attention (see `passes::matmul_attention`): q, k, v [.., positions,
/// features], each possibly stored transposed (`q_t`, `k_t`, `v_t`), output likewise (`o_t`).
fn matmul_attention<B: RtBackend>(c: &mut Ctx<'_, B>) -> KResult<Vec<Val<B>>> {
    let scale = c.float("scale")?;
    let mut flag = |p: &str| -> KResult<bool> { Ok(c.int(p)? != 0) };
    let (q_t, k_t, v_t, o_t) = (flag("q_t")?, flag("k_t")?, flag("v_t")?, flag("o_t")?);
    let (q, k, v) = (c.tensor("q")?, c.tensor("k")?, c.tensor("v")?);
    let upright = |t: FloatTensor<B>, transposed: bool| {
        if transposed { swap_last::<B>(t) } else { t }
    };
    let o = attention::<B>(
        upright(q.t, q_t),
        upright(k.t, k_t),
        upright(v.t, v_t),
        scale,
        None,
    )?;
    Ok(vec![c.val(upright(o, o_t), 0)?])
}

#[cfg(test)]
mod tests {
    use super::matmul_generic;
    use crate::generic::GenericCpu;
    use crate::kernels::util::{from_vec, to_vec};

    /// Deterministic, distinct values.
    fn data(n: usize, seed: f32) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * 0.37 + seed).sin()).collect()
    }

    /// Row-major batched product with broadcast batch dims, on the host.
    fn naive(a: &[f32], da: &[usize], b: &[f32], db: &[usize]) -> (Vec<f32>, Vec<usize>) {
        let r = da.len();
        let (m, k, n) = (da[r - 2], da[r - 1], db[r - 1]);
        let batch: Vec<usize> = (0..r - 2).map(|i| da[i].max(db[i])).collect();
        let count: usize = batch.iter().product();
        let mut out = Vec::with_capacity(count * m * n);
        for flat in 0..count {
            let (mut rest, mut oa, mut ob) = (flat, 0, 0);
            let (mut sa, mut sb) = (m * k, k * n);
            for i in (0..r - 2).rev() {
                let idx = rest % batch[i];
                rest /= batch[i];
                oa += if da[i] == 1 { 0 } else { idx * sa };
                ob += if db[i] == 1 { 0 } else { idx * sb };
                sa *= da[i];
                sb *= db[i];
            }
            for i in 0..m {
                for j in 0..n {
                    out.push((0..k).map(|p| a[oa + i * k + p] * b[ob + p * n + j]).sum());
                }
            }
        }
        let mut shape = batch;
        shape.extend_from_slice(&[m, n]);
        (out, shape)
    }

    /// Shared operands (folded rows), a shared left operand (a 1×1 convolution's weight) and
    /// batch dims broadcast both ways all equal the host product.
    #[test]
    fn broadcast_batches_equal_the_host_product() {
        let cases: [(&[usize], &[usize]); 4] = [
            (&[2, 3, 4, 5], &[1, 1, 5, 6]),
            (&[1, 7, 5], &[2, 5, 9]),
            (&[2, 1, 3, 4], &[1, 3, 4, 2]),
            (&[2, 3, 4], &[2, 4, 5]),
        ];
        let device = Default::default();
        for (da, db) in cases {
            let a = data(da.iter().product(), 0.1);
            let b = data(db.iter().product(), 1.3);
            let (want, shape) = naive(&a, da, &b, db);
            let ta = from_vec::<GenericCpu>(a, da, &device);
            let tb = from_vec::<GenericCpu>(b, db, &device);
            let y = matmul_generic::<GenericCpu>(ta, tb).unwrap();
            assert_eq!(
                crate::kernels::util::dims::<GenericCpu>(&y),
                shape,
                "{da:?}·{db:?}"
            );
            let got = to_vec::<GenericCpu>(y);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-5, "{da:?}·{db:?}: {g} vs {w}");
            }
        }
    }
}
