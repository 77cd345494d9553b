//! Recognizes CLIP's "quick GELU", x·σ(1.702·x), written out as `mul`, `sigmoid`, `mul`
//! (as converters emit transformers' `QuickGELUActivation`), and replaces the three ops by
//! one `gelu` with mode `SIGMOID_APPROXIMATION`, Core ML's op for exactly that function.
//! The activation pass then folds it into the `linear` that produces x. The scale must
//! be 1.702 up to fp16 rounding (fp16 stores it as 1.7012); the fused op uses 1.702, as
//! the reference implementation does.

use super::common::{Index, const_floats, name_of, remove_ops};
use sd_mil::{Binding, ConstValue, Function, Operation};

/// How far the program's scale may be from 1.702: a little over half an fp16 step at 1.7.
const SCALE_TOLERANCE: f32 = 1e-3;

/// The operand of a two-input `mul` other than `x`, if `x` is one of them.
fn other_operand<'a>(op: &'a Operation, x: &str) -> Option<&'a str> {
    match (name_of(op, "x"), name_of(op, "y")) {
        (Some(a), Some(b)) if a == x => Some(b),
        (Some(a), Some(b)) if b == x => Some(a),
        _ => None,
    }
}

/// Whether `op` multiplies by the scalar constant 1.702; returns the other operand.
fn times_1702<'a>(f: &Function, idx: &Index, op: &'a Operation) -> Option<&'a str> {
    if op.op_type != "mul" {
        return None;
    }
    for (value, scale) in [("x", "y"), ("y", "x")] {
        if let Some([c]) = const_floats(f, idx, op, scale).as_deref()
            && (c - 1.702).abs() <= SCALE_TOLERANCE
        {
            return name_of(op, value);
        }
    }
    None
}

/// Replaces every quick GELU chain by one `gelu`; returns how many.
pub fn fuse_quick_gelu(f: &mut Function) -> usize {
    let idx = Index::new(f);
    // (index of the product mul, x, indices of the scale mul and the sigmoid)
    let mut found: Vec<(usize, String, [usize; 2])> = Vec::new();
    for (si, sig) in f.operations.iter().enumerate() {
        if sig.op_type != "sigmoid" || sig.outputs.len() != 1 {
            continue;
        }
        let Some(a) = name_of(sig, "x") else { continue };
        let Some(&ai) = idx.producer.get(a) else {
            continue;
        };
        let Some(x) = times_1702(f, &idx, &f.operations[ai]) else {
            continue;
        };
        let s = &sig.outputs[0].name;
        let (&[mi], true) = (idx.readers(s), idx.readers(a) == [si]) else {
            continue;
        };
        if mi == usize::MAX {
            continue;
        }
        let product = &f.operations[mi];
        if product.op_type != "mul" || other_operand(product, s) != Some(x) {
            continue;
        }
        found.push((mi, x.to_string(), [ai, si]));
    }
    for (mi, x, _) in &found {
        let product = &mut f.operations[*mi];
        product.op_type = "gelu".to_string();
        product.inputs = vec![
            ("x".to_string(), vec![Binding::Name(x.clone())]),
            (
                "mode".to_string(),
                vec![Binding::Value(ConstValue::string("SIGMOID_APPROXIMATION"))],
            ),
        ];
    }
    remove_ops(f, &found.iter().flat_map(|t| t.2).collect());
    found.len()
}

#[cfg(test)]
mod tests {
    use super::super::common::test_support::{fused_vs_unfused, main_of};
    use super::*;
    use crate::Precision;

    #[test]
    fn text_encoder_quick_gelus_become_linear_activations() {
        let (m, fp32) = fused_vs_unfused("text_encoder", Precision::Fp32);
        // Each of the tiny encoder's five MLPs: linear + gelu_sigmoid, then linear.
        assert!(
            !m.op_counts().contains_key("sigmoid"),
            "{:?}",
            m.op_counts()
        );
        assert!(fp32 > 70.0, "fp32 fused vs unfused: {fp32:.2} dB");
        let (_, p16) = fused_vs_unfused("text_encoder", Precision::Program);
        assert!(p16 > 40.0, "fp16 fused vs unfused: {p16:.2} dB");
    }

    /// The scale `mul` of the first quick GELU: (its index, its scaled output's name).
    fn first_scale(f: &Function) -> (usize, String) {
        let idx = Index::new(f);
        let sig = f
            .operations
            .iter()
            .find(|o| o.op_type == "sigmoid")
            .unwrap();
        let a = name_of(sig, "x").unwrap();
        (idx.producer[a], a.to_string())
    }

    #[test]
    fn only_the_whole_chain_at_1702_is_replaced() {
        let main = main_of("text_encoder");
        let mut all = main.clone();
        assert_eq!(fuse_quick_gelu(&mut all), 5);
        assert!(all.operations.iter().all(|o| o.op_type != "sigmoid"));

        // Another scale: that chain stays.
        let mut other = main.clone();
        let (mi, _) = first_scale(&other);
        let idx = Index::new(&other);
        let scales: Vec<usize> = ["x", "y"]
            .into_iter()
            .filter_map(|p| name_of(&other.operations[mi], p))
            .filter_map(|n| idx.producer.get(n).copied())
            .filter(|&ci| other.operations[ci].op_type == "const")
            .collect();
        for ci in scales {
            other.operations[ci]
                .attributes
                .insert("val".into(), ConstValue::scalar_f16(1.5));
        }
        assert_eq!(fuse_quick_gelu(&mut other), 4);

        // The scaled value read elsewhere too (here: as a block output): that chain stays.
        let mut shared = main.clone();
        let (_, a) = first_scale(&shared);
        shared.outputs.push(a);
        assert_eq!(fuse_quick_gelu(&mut shared), 4);
    }
}
