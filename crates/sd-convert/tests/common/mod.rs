//! Shared by the tests that run converted packages on sd-runtime against the reference
//! scripts' outputs: reading an io file (in.* / out.* tensors), picking a model's inputs from
//! it, and the PSNR check of the outputs.
#![allow(dead_code)]

use sd_runtime::{Model, Precision, Tensor, psnr};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The tensors of a reference io file, by name (`in.<input>`, `out.<output>`).
pub fn read_io(path: impl AsRef<Path>) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap()
        .into_iter()
        .collect()
}

/// `model`'s inputs, each taken from io's `in.<name>`.
pub fn inputs(model: &sd_mil::Model, io: &HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    model
        .description
        .inputs
        .iter()
        .map(|f| (f.name.clone(), io[&format!("in.{}", f.name)].clone()))
        .collect()
}

/// Output `name` of `out` must reach `floor` dB PSNR against io's `out.<name>`; `label` names
/// the run in the messages.
pub fn assert_psnr(
    label: &str,
    name: &str,
    out: &HashMap<String, Tensor>,
    io: &HashMap<String, Tensor>,
    precision: Precision,
    floor: f64,
) {
    let want = io[&format!("out.{name}")].to_f32_vec();
    let got = out[name].to_f32_vec();
    let db = psnr(&got, &want);
    eprintln!("PSNR {label} {name} {precision:?}: {db:.1} dB");
    assert!(
        db >= floor,
        "{label} {name} {precision:?}: {db:.1} dB < {floor}"
    );
}

/// Runs the package `model` written at `dest` on io's inputs with its own compute precision
/// (every output ≥ 35 dB against io's) and in fp32 (≥ 60 dB).
pub fn check_package(
    label: &str,
    model: &sd_mil::Model,
    dest: &Path,
    io: &HashMap<String, Tensor>,
) {
    let inputs = inputs(model, io);
    for (precision, floor) in [(Precision::Program, 35.0), (Precision::Fp32, 60.0)] {
        let out = Model::load_cpu(dest, precision)
            .unwrap()
            .predict(&inputs)
            .unwrap();
        for f in &model.description.outputs {
            assert_psnr(label, &f.name, &out, io, precision, floor);
        }
    }
}
