//! Fuses an activation (`silu`, `relu`, `gelu`) into the op that produces its input when
//! that op is a `conv`, a `linear` or a fused group norm and the activation is its only
//! reader: the producer becomes `sdrt_conv_act` / `sdrt_linear_act` (the same parameters,
//! with the catalogue's defaults bound explicitly) or keeps its type, gains an
//! `activation` parameter and takes over the activation's output. The kernel then applies
//! the activation to its result while it is in cache, and the intermediate value (and its
//! fp16 rounding in program precision) disappears.

use super::common::{Index, const_param, name_of, remove_ops};
use super::{CONV_ACT_OP, GROUP_NORM_OP, LINEAR_ACT_OP};
use crate::kernels::Activation;
use sd_mil::catalogue::{self, Default as PDefault};
use sd_mil::{Binding, ConstValue, Function, Operation};

/// The fused op type for a producer, if it can take an activation.
fn fused_type(op_type: &str) -> Option<&'static str> {
    match op_type {
        "conv" => Some(CONV_ACT_OP),
        "linear" => Some(LINEAR_ACT_OP),
        GROUP_NORM_OP => Some(GROUP_NORM_OP),
        _ => None,
    }
}

/// Binds every unbound parameter that has a plain catalogue default, so the op reads the
/// same under a type the catalogue does not know.
fn bind_defaults(op: &mut Operation, f: &Function) {
    let Some(spec) = catalogue::lookup(&op.op_type, f.opset) else {
        return;
    };
    for p in spec.params {
        if op.input(p.name).is_some_and(|b| !b.is_empty()) {
            continue;
        }
        let v = match p.default {
            PDefault::Int(i) => ConstValue::scalar_i32(i as i32),
            PDefault::Float(x) => ConstValue::scalar_f32(x as f32),
            PDefault::Bool(b) => ConstValue::scalar_bool(b),
            PDefault::Str(s) => ConstValue::string(s),
            _ => continue,
        };
        op.inputs
            .push((p.name.to_string(), vec![Binding::Value(v)]));
    }
}

/// Fuses every activation that follows a conv, linear or group norm it alone reads;
/// returns how many were fused.
pub fn fuse_activations(f: &mut Function) -> usize {
    let idx = Index::new(f);
    let mut fused: Vec<(usize, usize, Activation)> = Vec::new();
    for (ai, op) in f.operations.iter().enumerate() {
        let mode = if op.op_type == "gelu" {
            match const_param(f, &idx, op, "mode") {
                Some(v) => v.as_str().map(str::to_string),
                None => Some("EXACT".to_string()),
            }
        } else {
            None
        };
        let Some(act) = Activation::of_op(&op.op_type, mode.as_deref()) else {
            continue;
        };
        let Some(x) = name_of(op, "x") else { continue };
        let Some(&pi) = idx.producer.get(x) else {
            continue;
        };
        let p = &f.operations[pi];
        if fused_type(&p.op_type).is_none()
            || p.input("activation").is_some()
            || p.outputs.len() != 1
            || idx.readers(x) != [ai]
        {
            continue;
        }
        fused.push((pi, ai, act));
    }
    for &(pi, ai, act) in &fused {
        let outputs = f.operations[ai].outputs.clone();
        let mut p = f.operations[pi].clone();
        bind_defaults(&mut p, f);
        p.op_type = fused_type(&p.op_type).expect("checked").to_string();
        p.inputs.push((
            "activation".to_string(),
            vec![Binding::Value(ConstValue::string(act.name()))],
        ));
        p.outputs = outputs;
        f.operations[pi] = p;
    }
    remove_ops(f, &fused.iter().map(|t| t.1).collect());
    fused.len()
}

#[cfg(test)]
mod tests {
    use super::super::common::test_support::fused_vs_unfused;
    use crate::Precision;

    #[test]
    fn unet_activations_fused_outputs_unchanged() {
        let (m, fp32) = fused_vs_unfused("unet", Precision::Fp32);
        // Every SiLU of the tiny UNet follows a group norm or a linear layer.
        assert!(!m.op_counts().contains_key("silu"), "{:?}", m.op_counts());
        assert!(fp32 > 100.0, "fp32 fused vs unfused: {fp32:.2} dB");
        let (_, p16) = fused_vs_unfused("unet", Precision::Program);
        assert!(p16 > 40.0, "fp16 fused vs unfused: {p16:.2} dB");
    }

    #[test]
    fn vae_decoder_activations_fused_outputs_unchanged() {
        let (m, fp32) = fused_vs_unfused("vae_decoder", Precision::Fp32);
        assert!(!m.op_counts().contains_key("silu"), "{:?}", m.op_counts());
        assert!(fp32 > 100.0, "fp32 fused vs unfused: {fp32:.2} dB");
        let (_, p16) = fused_vs_unfused("vae_decoder", Precision::Program);
        assert!(p16 > 40.0, "fp16 fused vs unfused: {p16:.2} dB");
    }
}
