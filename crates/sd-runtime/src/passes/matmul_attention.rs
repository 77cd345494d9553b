//! Fuses attention written with matmuls — ORIGINAL attention: `matmul` (scores), an optional
//! `mul` by a constant scale, `softmax` over the last axis, `matmul` with the values — into
//! one `sdrt_matmul_attention` op, which the runtimes run as one fused attention instead of
//! materialising the score matrix.
//!
//! Apple's ORIGINAL form keeps q, k and v channel-first, (B, H, d, S):
//!   s = matmul(q, k, transpose_x = true)          (B, H, Sq, Sk)
//!   p = softmax(mul(s, scale), axis = -1)
//!   o = matmul(v, p, transpose_y = true)           (B, H, dv, Sq)
//! The fused op records, for each operand, whether it is stored transposed against the
//! [.., rows = positions, cols = features] form: `q_t` (q as [.., d, Sq]), `k_t` (k as
//! [.., d, Sk]), `v_t` (v as [.., dv, Sk]) and `o_t` (the output as [.., dv, Sq]).

use super::MATMUL_ATTENTION_OP;
use super::common::{Index, const_floats, const_ints, fused_op, name_of};
use sd_mil::{ConstValue, Function};

fn only_reader(idx: &Index, name: &str) -> bool {
    idx.readers(name).len() == 1 && !idx.readers(name).contains(&usize::MAX)
}

fn flag(f: &Function, idx: &Index, op: &sd_mil::Operation, p: &str) -> Option<bool> {
    match op.input(p) {
        None => Some(false),
        Some(_) => const_ints(f, idx, op, p).map(|v| v.first() == Some(&1)),
    }
}

/// The fused op's operands for the value-side matmul at op `i`: (q, k, v, scale, q_t, k_t,
/// v_t, o_t).
type Found = (String, String, String, f32, [bool; 4]);

fn match_at(f: &Function, idx: &Index, i: usize) -> Option<Found> {
    let pv = &f.operations[i];
    let (x, y) = (name_of(pv, "x")?, name_of(pv, "y")?);
    let (tx, ty) = (
        flag(f, idx, pv, "transpose_x")?,
        flag(f, idx, pv, "transpose_y")?,
    );
    // p on the left: o = p·V' with o as [Sq, dv]; on the right (transposed): o = V''·pᵀ.
    let (p, v, v_t, o_t) = if idx.producer_of(f, x, "softmax").is_some() && !tx {
        (x, y, ty, false)
    } else if idx.producer_of(f, y, "softmax").is_some() && ty {
        (y, x, !tx, true)
    } else {
        return None;
    };
    let (_, sm) = idx.producer_of(f, p, "softmax")?;
    let rank = f.value_type(p)?.rank() as i64;
    let axis = const_ints(f, idx, sm, "axis")?;
    if (axis != [-1] && axis != [rank - 1]) || !only_reader(idx, p) {
        return None;
    }
    let mut logits = name_of(sm, "x")?;
    let mut scale = 1.0f32;
    if let Some((_, mul)) = idx.producer_of(f, logits, "mul") {
        if !only_reader(idx, logits) {
            return None;
        }
        let (a, other) = if idx.producer_of(f, name_of(mul, "x")?, "matmul").is_some() {
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
        logits = name_of(mul, a)?;
    }
    let (_, qk) = idx.producer_of(f, logits, "matmul")?;
    if !only_reader(idx, logits) {
        return None;
    }
    let (q, k) = (name_of(qk, "x")?, name_of(qk, "y")?);
    let (q_t, k_t) = (
        flag(f, idx, qk, "transpose_x")?,
        !flag(f, idx, qk, "transpose_y")?,
    );
    // Plain batched operands of one rank whose leading dims agree (no broadcasting).
    let out = f.value_type(&pv.outputs[0].name)?;
    let lead = out.rank().checked_sub(2)?;
    for n in [q, k, v] {
        let t = f.value_type(n)?;
        if t.rank() != out.rank() || t.shape[..lead] != out.shape[..lead] {
            return None;
        }
    }
    Some((q.into(), k.into(), v.into(), scale, [q_t, k_t, v_t, o_t]))
}

/// Fuses every matmul attention; returns how many were fused.
pub fn fuse_matmul_attention(f: &mut Function) -> usize {
    let mut count = 0;
    loop {
        let idx = Index::new(f);
        let found = (0..f.operations.len())
            .filter(|&i| f.operations[i].op_type == "matmul")
            .find_map(|i| match_at(f, &idx, i).map(|m| (i, m)));
        let Some((i, (q, k, v, scale, [q_t, k_t, v_t, o_t]))) = found else {
            break;
        };
        let op = &f.operations[i];
        let fused = fused_op(
            MATMUL_ATTENTION_OP,
            &format!("{}_attention", op.name),
            &[("q", &q), ("k", &k), ("v", &v)],
            vec![
                ("scale", ConstValue::scalar_f32(scale)),
                ("q_t", ConstValue::scalar_bool(q_t)),
                ("k_t", ConstValue::scalar_bool(k_t)),
                ("v_t", ConstValue::scalar_bool(v_t)),
                ("o_t", ConstValue::scalar_bool(o_t)),
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
    use super::super::common::test_support::fused_vs_unfused_in;
    use crate::Precision;

    #[test]
    fn unet_original_attention_fused_outputs_unchanged() {
        let (m, fp32) = fused_vs_unfused_in("original", "unet", Precision::Fp32);
        // 12 attention blocks in the tiny UNet: no matmul or softmax is left.
        assert_eq!(m.op_counts().get(super::MATMUL_ATTENTION_OP), Some(&12));
        assert!(!m.op_counts().contains_key("matmul"));
        assert!(!m.op_counts().contains_key("softmax"));
        assert!(fp32 > 100.0, "fp32 fused vs unfused: {fp32:.2} dB");
        let (_, p16) = fused_vs_unfused_in("original", "unet", Precision::Program);
        assert!(p16 > 40.0, "fp16 fused vs unfused: {p16:.2} dB");
    }
}
