//! Fuses Apple's SPLIT_EINSUM attention — one einsum pair per head over channel slices,
//! heads concatenated on channels — into one batched `sdrt_attention` op.
//!
//! Per head h (channels [h·d, (h+1)·d)):
//!   qh = slice(q, axis 1)            (B, d, 1, Sq)
//!   kh = slice(kt, axis 3)           (B, Sk, 1, d)   where kt is k in (B, Sk, 1, C)
//!   vh = slice(v, axis 1)            (B, d, 1, Sk)
//!   w  = einsum("bkhc,bchq->bkhq", kh, qh) · scale → softmax(axis 1)
//!   oh = einsum("bchk,bkhq->bchq", vh, w)
//! out = concat(o0 … oH−1, axis 1).
//!
//! SPLIT_EINSUM_V2 also cuts each head's queries into chunks along axis 3 (one einsum pair
//! per chunk, same kh and vh) and concatenates the chunks on axis 3 before the heads.

use super::ATTENTION_OP;
use super::common::{Index, const_floats, const_ints, fused_op, name_of};
use sd_mil::{Binding, ConstValue, Function, Operation};

/// (source value, begin, end) of a slice_by_index taking a contiguous range of one axis.
fn channel_slice(
    f: &Function,
    idx: &Index,
    name: &str,
    axis: usize,
) -> Option<(String, usize, usize)> {
    let (_, op) = idx.producer_of(f, name, "slice_by_index")?;
    let src = name_of(op, "x")?.to_string();
    let st = f.value_type(&src)?;
    let ot = &op.outputs[0].ty;
    if st.rank() != 4 || ot.rank() != 4 {
        return None;
    }
    if let Some(s) = const_ints(f, idx, op, "stride")
        && s.iter().any(|v| *v != 1)
    {
        return None;
    }
    if const_ints(f, idx, op, "squeeze_mask").is_some_and(|m| m.iter().any(|v| *v != 0)) {
        return None;
    }
    for a in 0..4 {
        if a != axis && ot.shape[a] != st.shape[a] {
            return None;
        }
    }
    let begin = const_ints(f, idx, op, "begin")?;
    let bm = const_ints(f, idx, op, "begin_mask").unwrap_or(vec![0; 4]);
    let b = if bm[axis] != 0 { 0 } else { begin[axis] };
    let b = if b < 0 { b + st.shape[axis] as i64 } else { b } as usize;
    Some((src, b, b + ot.shape[axis]))
}

struct Head {
    q: (String, usize, usize),
    k: (String, usize, usize),
    v: (String, usize, usize),
    scale: f32,
}

fn equation(f: &Function, idx: &Index, op: &Operation) -> Option<String> {
    match op.input("equation")? {
        [Binding::Value(v)] => v.as_str().map(str::to_string),
        [Binding::Name(n)] => f.operations[*idx.producer.get(n.as_str())?]
            .const_value()?
            .as_str()
            .map(|s| s.replace(' ', "")),
        _ => None,
    }
}

fn only_readers(idx: &Index, name: &str, n: usize) -> bool {
    idx.readers(name).len() == n && !idx.readers(name).contains(&usize::MAX)
}

/// The names an einsum reads (`""` for an inline constant operand).
fn operand_names(op: &Operation) -> Option<Vec<&str>> {
    Some(
        op.input("values")?
            .iter()
            .map(|b| match b {
                Binding::Name(n) => n.as_str(),
                _ => "",
            })
            .collect(),
    )
}

/// The operands of one einsum pair (scores, optional scale, softmax over axis 1, weighted
/// values) ending at `out`: the q, k and v values the einsums read, and the scale.
fn einsum_pair(f: &Function, idx: &Index, out: &str) -> Option<Pair> {
    let (_, pv) = idx.producer_of(f, out, "einsum")?;
    if equation(f, idx, pv)?.as_str() != "bchk,bkhq->bchq" || !only_readers(idx, out, 1) {
        return None;
    }
    let vals = operand_names(pv)?;
    let [vh, w] = vals.as_slice() else {
        return None;
    };
    let (_, sm) = idx.producer_of(f, w, "softmax")?;
    let ax = const_ints(f, idx, sm, "axis")?;
    if ax != [1] || !only_readers(idx, w, 1) {
        return None;
    }
    let mut logits = name_of(sm, "x")?.to_string();
    let mut scale = 1.0f32;
    if let Some((_, mul)) = idx.producer_of(f, &logits, "mul") {
        if !only_readers(idx, &logits, 1) {
            return None;
        }
        let (a, other) = if idx.producer_of(f, name_of(mul, "x")?, "einsum").is_some() {
            ("x", "y")
        } else {
            ("y", "x")
        };
        let s = const_floats(f, idx, mul, other)?;
        let first = *s.first()?;
        if s.iter().any(|v| *v != first) {
            return None;
        }
        scale = first;
        logits = name_of(mul, a)?.to_string();
    }
    let (_, qk) = idx.producer_of(f, &logits, "einsum")?;
    if equation(f, idx, qk)?.as_str() != "bkhc,bchq->bkhq" || !only_readers(idx, &logits, 1) {
        return None;
    }
    let vals = operand_names(qk)?;
    let [kh, qh] = vals.as_slice() else {
        return None;
    };
    Some(Pair {
        q: qh.to_string(),
        k: kh.to_string(),
        v: vh.to_string(),
        scale,
    })
}

struct Pair {
    q: String,
    k: String,
    v: String,
    scale: f32,
}

/// One head: a SPLIT_EINSUM einsum pair over channel slices, or (SPLIT_EINSUM_V2) a
/// concat on axis 3 of einsum pairs over consecutive query chunks of one head's q slice,
/// sharing that head's k and v slices.
fn head(f: &Function, idx: &Index, out: &str) -> Option<Head> {
    let (q, pair) = match einsum_pair(f, idx, out) {
        Some(p) => (channel_slice(f, idx, &p.q, 1)?, p),
        None => {
            let (_, cat) = idx.producer_of(f, out, "concat")?;
            let axis = const_ints(f, idx, cat, "axis")?;
            if (axis != [3] && axis != [-1])
                || const_ints(f, idx, cat, "interleave").is_some_and(|v| v != [0])
                || !only_readers(idx, out, 1)
            {
                return None;
            }
            let pairs: Vec<Pair> = cat
                .input("values")?
                .iter()
                .map(|b| match b {
                    Binding::Name(n) => einsum_pair(f, idx, n),
                    Binding::Value(_) => None,
                })
                .collect::<Option<_>>()?;
            let first = pairs.first()?;
            let mut end = 0;
            let mut src = None;
            for p in &pairs {
                let (s, b, e) = channel_slice(f, idx, &p.q, 3)?;
                if b != end
                    || src.as_ref().is_some_and(|x| *x != s)
                    || p.k != first.k
                    || p.v != first.v
                    || p.scale != first.scale
                {
                    return None;
                }
                end = e;
                src = Some(s);
            }
            let src = src?;
            if f.value_type(&src)?.shape[3] != end {
                return None;
            }
            let q = channel_slice(f, idx, &src, 1)?;
            let p = pairs.into_iter().next()?;
            (q, p)
        }
    };
    Some(Head {
        q,
        k: channel_slice(f, idx, &pair.k, 3)?,
        v: channel_slice(f, idx, &pair.v, 1)?,
        scale: pair.scale,
    })
}

/// Fuses every split-einsum attention block; returns how many were fused.
pub fn fuse_split_einsum_attention(f: &mut Function) -> usize {
    let mut count = 0;
    let mut skip = std::collections::HashSet::new();
    loop {
        let idx = Index::new(f);
        let mut found = None;
        for (i, op) in f.operations.iter().enumerate() {
            if op.op_type != "concat" || skip.contains(&op.name) {
                continue;
            }
            if const_ints(f, &idx, op, "axis") != Some(vec![1])
                || const_ints(f, &idx, op, "interleave").is_some_and(|v| v != [0])
            {
                continue;
            }
            let Some(vals) = op.input("values") else {
                continue;
            };
            let heads: Option<Vec<Head>> = vals
                .iter()
                .map(|b| {
                    if let Binding::Name(n) = b {
                        head(f, &idx, n)
                    } else {
                        None
                    }
                })
                .collect();
            let Some(heads) = heads else { continue };
            if heads.is_empty() {
                continue;
            }
            // Heads must tile q, kt and v in order, over whole tensors, with one scale.
            let (q0, k0, v0) = (&heads[0].q.0, &heads[0].k.0, &heads[0].v.0);
            let d = heads[0].q.2 - heads[0].q.1;
            let ok = heads.iter().enumerate().all(|(h, hd)| {
                [(&hd.q, q0), (&hd.k, k0), (&hd.v, v0)]
                    .iter()
                    .all(|((s, b, e), src)| s == *src && *b == h * d && *e == (h + 1) * d)
                    && hd.scale == heads[0].scale
            });
            let covers = |n: &str, axis: usize| {
                f.value_type(n)
                    .is_some_and(|t| t.shape[axis] == heads.len() * d)
            };
            if !ok || !covers(q0, 1) || !covers(k0, 3) || !covers(v0, 1) {
                skip.insert(op.name.clone());
                continue;
            }
            found = Some((
                i,
                q0.clone(),
                k0.clone(),
                v0.clone(),
                heads.len(),
                heads[0].scale,
            ));
            break;
        }
        let Some((i, q, k, v, heads, scale)) = found else {
            break;
        };
        let op = &f.operations[i];
        let fused = fused_op(
            ATTENTION_OP,
            &format!("{}_attention", op.name),
            &[("q", &q), ("kt", &k), ("v", &v)],
            vec![
                ("heads", ConstValue::scalar_i32(heads as i32)),
                ("scale", ConstValue::scalar_f32(scale)),
            ],
            op.outputs.clone(),
        );
        f.operations[i] = fused;
        sd_mil::graph::eliminate_dead_code(f);
        count += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::super::common::test_support::{fused_vs_unfused, fused_vs_unfused_in};
    use crate::Precision;

    #[test]
    fn unet_split_einsum_v2_query_chunks_fused_outputs_unchanged() {
        let (m, fp32) = fused_vs_unfused_in("split_einsum_v2", "unet", Precision::Fp32);
        assert_eq!(m.op_counts().get(super::ATTENTION_OP), Some(&12));
        assert!(!m.op_counts().contains_key("einsum"));
        assert!(fp32 > 100.0, "fp32 fused vs unfused: {fp32:.2} dB");
        let (_, p16) = fused_vs_unfused_in("split_einsum_v2", "unet", Precision::Program);
        assert!(p16 > 40.0, "fp16 fused vs unfused: {p16:.2} dB");
    }

    #[test]
    fn unet_split_einsum_attention_fused_outputs_unchanged() {
        let (m, fp32) = fused_vs_unfused("unet", Precision::Fp32);
        // 12 attention blocks (6 transformer blocks × self + cross) in the tiny UNet: no
        // per-head einsum is left.
        assert_eq!(m.op_counts().get(super::ATTENTION_OP), Some(&12));
        assert!(!m.op_counts().contains_key("einsum"));
        assert!(fp32 > 100.0, "fp32 fused vs unfused: {fp32:.2} dB");
        let (_, p16) = fused_vs_unfused("unet", Precision::Program);
        assert!(p16 > 40.0, "fp16 fused vs unfused: {p16:.2} dB");
    }
}
