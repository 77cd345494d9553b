//! Fixture helpers shared by the integration tests.
#![allow(dead_code)]

use sd_runtime::{LoadOptions, Model, Precision, RtBackend, Tensor, psnr};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The apple-tiny fixture folder (`SD_FIXTURES` overrides).
pub fn fixtures() -> PathBuf {
    std::env::var_os("SD_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/apple-tiny")
        })
}

/// A package: `folder` (split_einsum, original, …) and component (unet, text_encoder, …).
pub fn package(folder: &str, component: &str) -> PathBuf {
    fixtures().join("packages").join(folder).join(format!(
        "Stable_Diffusion_version_sd-tiny_{component}.mlpackage"
    ))
}

/// Reference inputs and outputs of a component, without the `in.`/`out.` prefixes.
pub fn reference(component: &str) -> (HashMap<String, Tensor>, HashMap<String, Tensor>) {
    io_file(
        fixtures()
            .join("reference")
            .join(format!("{component}.io.safetensors")),
    )
}

/// Inputs (`in.*`) and outputs (`out.*`) of a safetensors file, without the prefixes.
pub fn io_file(path: impl AsRef<Path>) -> (HashMap<String, Tensor>, HashMap<String, Tensor>) {
    let (mut ins, mut outs) = (HashMap::new(), HashMap::new());
    for (name, t) in Tensor::read_safetensors(path.as_ref()).unwrap() {
        if let Some(n) = name.strip_prefix("in.") {
            ins.insert(n.to_string(), t);
        } else if let Some(n) = name.strip_prefix("out.") {
            outs.insert(n.to_string(), t);
        }
    }
    (ins, outs)
}

/// Only the inputs the model declares.
pub fn model_inputs<B: sd_runtime::RtBackend>(
    model: &Model<B>,
    all: &HashMap<String, Tensor>,
) -> HashMap<String, Tensor> {
    model
        .description()
        .inputs
        .iter()
        .filter_map(|f| all.get(&f.name).map(|t| (f.name.clone(), t.clone())))
        .collect()
}

/// PSNR of every output present in both maps, printed as a table row.
pub fn report(
    label: &str,
    precision: Precision,
    got: &HashMap<String, Tensor>,
    want: &HashMap<String, Tensor>,
) -> Vec<(String, f64)> {
    let mut rows = Vec::new();
    let mut names: Vec<&String> = got.keys().filter(|k| want.contains_key(*k)).collect();
    names.sort();
    for name in names {
        let (a, b) = (&got[name], &want[name]);
        assert_eq!(a.shape, b.shape, "{label} {name}");
        let p = psnr(&a.to_f32_vec(), &b.to_f32_vec());
        println!(
            "PSNR | {label:<40} | {name:<20} | {:<7} | {p:7.2} dB",
            format!("{precision:?}")
        );
        rows.push((name.clone(), p));
    }
    assert!(!rows.is_empty(), "{label}: no output to compare");
    rows
}

/// Loads and runs a package on its component's reference inputs.
pub fn run(
    folder: &str,
    component: &str,
    reference_component: &str,
    precision: Precision,
) -> Vec<(String, f64)> {
    let model = Model::load_cpu(package(folder, component), precision).unwrap();
    let (ins, outs) = reference(reference_component);
    let got = model.predict(&model_inputs(&model, &ins)).unwrap();
    report(&format!("{folder}/{component}"), precision, &got, &outs)
}

/// Asserts every PSNR reaches `floor`.
pub fn assert_floor(rows: &[(String, f64)], floor: f64, what: &str) {
    for (name, p) in rows {
        assert!(*p >= floor, "{what} {name}: PSNR {p:.2} dB < {floor} dB");
    }
}

/// Runs a package on backend `B` in program precision (floor 35 dB) and in fp32 (floor 60 dB)
/// against its component's PyTorch reference outputs.
pub fn check_floors<B: sd_runtime::RtBackend>(
    label: &str,
    folder: &str,
    component: &str,
    io: &str,
    device: B::Device,
) {
    let (ins, outs) = reference(io);
    for (precision, floor) in [(Precision::Program, 35.0), (Precision::Fp32, 60.0)] {
        let options = sd_runtime::LoadOptions::<B>::new(precision, device.clone());
        let model = Model::load(package(folder, component), options).unwrap();
        let got = model.predict(&model_inputs(&model, &ins)).unwrap();
        let what = format!("{label}{folder}/{component}");
        let rows = report(&what, precision, &got, &outs);
        assert_floor(&rows, floor, &format!("{what} {precision:?}"));
    }
}

/// Every value of a prediction in program order: (name, op type, host tensor).
pub type Trace = Vec<(String, String, Tensor)>;

/// Loads a package on backend `B` (default device) and runs it on the model's share of
/// `all`, recording every value (`Model::predict_inspect`); returns the trace and the outputs.
pub fn trace<B: RtBackend>(
    path: &Path,
    precision: Precision,
    all: &HashMap<String, Tensor>,
) -> (Trace, HashMap<String, Tensor>) {
    let options = LoadOptions::<B>::new(precision, Default::default());
    let model = Model::load(path, options).unwrap();
    let mut values = Vec::new();
    let outs = model
        .predict_inspect(&model_inputs(&model, all), |p| {
            values.push((p.name.to_string(), p.op_type.to_string(), p.tensor()));
        })
        .unwrap();
    (values, outs)
}
