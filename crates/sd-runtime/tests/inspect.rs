//! `Model::predict_inspect`: every value an op produces is reported once, in program order,
//! the reported model outputs equal `predict`'s, and — the use it exists for — the CPU
//! kernels agree with the generic burn-op backend value by value, not only at the outputs.

mod common;
use common::*;
use sd_runtime::generic::GenericCpu;
use sd_runtime::{Precision, Tensor, psnr};
use std::collections::{HashMap, HashSet};

fn check(folder: &str, component: &str) {
    let (path, ins) = (package(folder, component), reference(component).0);
    let (cpu, cpu_outs) = trace::<sd_runtime::Cpu>(&path, Precision::Fp32, &ins);
    let (generic, _) = trace::<GenericCpu>(&path, Precision::Fp32, &ins);
    let names: HashSet<&str> = cpu.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names.len(), cpu.len(), "a value was reported twice");
    assert!(cpu.iter().all(|(_, op, _)| !op.is_empty()));
    for (name, out) in &cpu_outs {
        let (_, _, t) = cpu
            .iter()
            .find(|(n, _, _)| n == name)
            .expect("output reported");
        assert_eq!(t.to_f32_vec(), out.to_f32_vec(), "{name}");
    }
    let reference: HashMap<&str, &Tensor> =
        generic.iter().map(|(n, _, t)| (n.as_str(), t)).collect();
    assert_eq!(
        reference.len(),
        cpu.len(),
        "both backends run the same plan"
    );
    let mut worst = (f64::INFINITY, String::new());
    for (name, op, t) in &cpu {
        let w = reference[name.as_str()];
        assert_eq!(t.shape, w.shape, "{name}");
        let p = psnr(&t.to_f32_vec(), &w.to_f32_vec());
        if p < worst.0 {
            worst = (p, format!("{name} ({op})"));
        }
    }
    println!(
        "{folder}/{component}: {} values, worst {:.1} dB at {}",
        cpu.len(),
        worst.0,
        worst.1
    );
    assert!(
        worst.0 >= 60.0,
        "{folder}/{component}: {} at {:.1} dB",
        worst.1,
        worst.0
    );
}

#[test]
fn text_encoder_values_match_generic_backend() {
    check("split_einsum", "text_encoder");
}

#[test]
fn unet_values_match_generic_backend() {
    check("original", "unet");
}
