//! Every package of Apple's tiny fixtures on the CUDA backend against the PyTorch fp32
//! reference outputs: ≥ 35 dB in program precision, ≥ 60 dB in fp32 (the palettized q6
//! packages: ≥ 10 dB against PyTorch, as on the CPU, and ≥ 60 dB against the CPU backend
//! running the same package in fp32).
//!
//! Needs an NVIDIA GPU: `cargo test --release -p sd-runtime --features cuda --test
//! cuda_apple_tiny -- --nocapture --test-threads 1` prints the PSNR table; `SD_FIXTURES`
//! points at the apple-tiny folder when `../shared` is not beside the checkout. The ignored
//! test `cuda_timing` prints median prediction times (`-- --ignored --exact cuda_timing`), and
//! `cuda_timing_package` times any package. `apple_tiny_on_cuda_unfused` runs the table on
//! burn's CUDA backend without fusion, and `cuda_bisect` compares every intermediate value of
//! a package on both against the generic CPU backend (the first op that diverges names the
//! faulty kernel). `SD_CUDA_BACKEND=unfused` makes the timing tests use the unfused backend.
#![cfg(feature = "cuda")]

mod common;
use common::*;
use sd_runtime::generic::GenericCpu;
use sd_runtime::{Cuda, CudaUnfused, LoadOptions, Model, Precision, RtBackend, Tensor, psnr};
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

/// The backend the timing tests use (`SD_CUDA_BACKEND=unfused` picks [`CudaUnfused`]).
fn unfused_chosen() -> bool {
    std::env::var("SD_CUDA_BACKEND").as_deref() == Ok("unfused")
}

/// One PSNR measurement and the floor it must reach.
struct Row {
    label: String,
    precision: Precision,
    output: String,
    psnr: Result<f64, String>,
    floor: f64,
}

fn load<B: RtBackend>(path: &Path, precision: Precision) -> Result<Model<B>, String> {
    Model::load(path, LoadOptions::new(precision, Default::default()))
        .map_err(|e| format!("load {}: {e}", path.display()))
}

fn inputs_for<B: sd_runtime::RtBackend>(
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

fn predict<B: RtBackend>(
    model: &Model<B>,
    all: &HashMap<String, Tensor>,
) -> Result<HashMap<String, Tensor>, String> {
    model
        .predict(&inputs_for(model, all))
        .map_err(|e| format!("predict: {e}"))
}

/// Rows comparing every output present in both maps (or one failing row).
fn compare(
    label: &str,
    precision: Precision,
    got: Result<HashMap<String, Tensor>, String>,
    want: &HashMap<String, Tensor>,
    floor: f64,
) -> Vec<Row> {
    let row = |output: &str, psnr| Row {
        label: label.to_string(),
        precision,
        output: output.to_string(),
        psnr,
        floor,
    };
    let got = match got {
        Ok(g) => g,
        Err(e) => return vec![row("-", Err(e))],
    };
    let mut names: Vec<&String> = got.keys().filter(|k| want.contains_key(*k)).collect();
    names.sort();
    if names.is_empty() {
        return vec![row("-", Err("no output to compare".into()))];
    }
    names
        .into_iter()
        .map(|n| {
            let (a, b) = (&got[n], &want[n]);
            let p = if a.shape == b.shape {
                Ok(psnr(&a.to_f32_vec(), &b.to_f32_vec()))
            } else {
                Err(format!("shape {:?} vs {:?}", a.shape, b.shape))
            };
            row(n, p)
        })
        .collect()
}

fn floor_for(precision: Precision) -> f64 {
    match precision {
        Precision::Program => 35.0,
        Precision::Fp32 => 60.0,
    }
}

/// `folder/component` on its reference, in both precisions.
fn whole<B: RtBackend>(
    rows: &mut Vec<Row>,
    folder: &str,
    component: &str,
    reference_component: &str,
) {
    let (ins, outs) = reference(reference_component);
    for precision in [Precision::Program, Precision::Fp32] {
        let got = load::<B>(&package(folder, component), precision).and_then(|m| predict(&m, &ins));
        let label = format!("{folder}/{component}");
        rows.extend(compare(&label, precision, got, &outs, floor_for(precision)));
    }
}

/// The two UNet chunks run one after the other.
fn chunked<B: RtBackend>(rows: &mut Vec<Row>) {
    let (ins, outs) = reference("unet");
    for precision in [Precision::Program, Precision::Fp32] {
        let got = (|| {
            let c1 = load::<B>(&package("split_einsum_chunk", "unet_chunk1"), precision)?;
            let c2 = load::<B>(&package("split_einsum_chunk", "unet_chunk2"), precision)?;
            let mut merged = ins.clone();
            merged.extend(predict(&c1, &ins)?);
            predict(&c2, &merged)
        })();
        let label = "split_einsum_chunk/unet_chunk1+2";
        rows.extend(compare(label, precision, got, &outs, floor_for(precision)));
    }
}

/// Palettized packages: a sanity floor against PyTorch, and the CPU backend as the reference.
fn palettized<B: RtBackend>(rows: &mut Vec<Row>, component: &str) {
    let (ins, outs) = reference(component);
    let path = package("split_einsum_q6", component);
    let label = format!("split_einsum_q6/{component}");
    for precision in [Precision::Program, Precision::Fp32] {
        let got = load::<B>(&path, precision).and_then(|m| predict(&m, &ins));
        rows.extend(compare(&label, precision, got, &outs, 10.0));
    }
    let cpu = Model::load_cpu(&path, Precision::Fp32).unwrap();
    let cpu_out = cpu.predict(&inputs_for(&cpu, &ins)).unwrap();
    let got = load::<B>(&path, Precision::Fp32).and_then(|m| predict(&m, &ins));
    let label = format!("{label} vs CPU");
    rows.extend(compare(&label, Precision::Fp32, got, &cpu_out, 60.0));
}

fn shown(r: &Row) -> String {
    match &r.psnr {
        Ok(p) => format!("{p:.2}"),
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn apple_tiny_on_cuda() {
    table::<Cuda>();
}

#[test]
fn apple_tiny_on_cuda_unfused() {
    table::<CudaUnfused>();
}

/// The PSNR table of every case on backend `B`; fails if a row is below its floor.
fn table<B: RtBackend>() {
    let cases: [fn(&mut Vec<Row>); 9] = [
        |r| whole::<B>(r, "split_einsum", "text_encoder", "text_encoder"),
        |r| whole::<B>(r, "split_einsum", "unet", "unet"),
        |r| whole::<B>(r, "original", "unet", "unet"),
        |r| whole::<B>(r, "split_einsum_v2", "unet", "unet"),
        |r| whole::<B>(r, "split_einsum", "vae_decoder", "vae_decoder"),
        |r| whole::<B>(r, "split_einsum", "vae_encoder", "vae_encoder"),
        chunked::<B>,
        |r| palettized::<B>(r, "unet"),
        |r| palettized::<B>(r, "text_encoder"),
    ];
    // Rows are printed as they come, so a run cut short still shows what it measured.
    println!("| package | precision | output | PSNR (dB) | floor |");
    println!("|---|---|---|---|---|");
    let mut rows = Vec::new();
    for case in cases {
        let start = rows.len();
        case(&mut rows);
        for r in &rows[start..] {
            let (label, precision, output) = (&r.label, r.precision, &r.output);
            let (p, floor) = (shown(r), r.floor);
            println!("| {label} | {precision:?} | {output} | {p} | {floor} |");
        }
    }
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| !matches!(r.psnr, Ok(p) if p >= r.floor))
        .map(|r| format!("{} {:?} {}: {}", r.label, r.precision, r.output, shown(r)))
        .collect();
    assert!(failed.is_empty(), "below the floor: {failed:#?}");
}

/// Median wall time in milliseconds of `runs` predictions after `warmup` ones.
fn median_ms<B: RtBackend>(
    model: &Model<B>,
    inputs: &HashMap<String, Tensor>,
    warmup: usize,
    runs: usize,
) -> f64 {
    for _ in 0..warmup {
        model.predict(inputs).unwrap();
    }
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            model.predict(inputs).unwrap();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    t[runs / 2]
}

/// Median prediction time of the split-einsum text encoder, UNets and VAE decoder, host
/// tensors in and out (upload, kernels, synchronizing read-back), after autotuning warm-ups.
/// Prints one `TIMING` line per model and precision.
#[test]
#[ignore = "timing on a GPU; run explicitly"]
fn cuda_timing() {
    if unfused_chosen() {
        timing::<CudaUnfused>()
    } else {
        timing::<Cuda>()
    }
}

fn timing<B: RtBackend>() {
    let runs = std::env::var("SD_TIMING_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    for (folder, component) in [
        ("split_einsum", "text_encoder"),
        ("split_einsum", "unet"),
        ("original", "unet"),
        ("split_einsum", "vae_decoder"),
    ] {
        let (ins, _) = reference(component);
        for precision in [Precision::Program, Precision::Fp32] {
            let t0 = Instant::now();
            let model = load::<B>(&package(folder, component), precision).unwrap();
            let load_ms = t0.elapsed().as_secs_f64() * 1e3;
            let inputs = inputs_for(&model, &ins);
            let t1 = Instant::now();
            model.predict(&inputs).unwrap();
            let first_ms = t1.elapsed().as_secs_f64() * 1e3;
            let ms = median_ms(&model, &inputs, 3, runs);
            println!(
                "TIMING {folder}/{component} {precision:?}: median {ms:.3} ms of {runs} \
                 (load {load_ms:.0} ms, first predict {first_ms:.0} ms)"
            );
        }
    }
}

/// Times any package: `SD_TIMING_PACKAGE` (the .mlpackage), `SD_TIMING_INPUTS` (safetensors
/// with `in.<feature>` tensors; `out.<feature>` tensors there, if any, are compared by PSNR),
/// `SD_TIMING_PRECISION` (`program`, the default, or `fp32`), `SD_TIMING_RUNS` (default 10).
/// Prints one `TIMING` line and one `PSNR` line per compared output.
#[test]
#[ignore = "timing on a GPU; run explicitly with SD_TIMING_PACKAGE and SD_TIMING_INPUTS"]
fn cuda_timing_package() {
    if unfused_chosen() {
        timing_package::<CudaUnfused>()
    } else {
        timing_package::<Cuda>()
    }
}

fn timing_package<B: RtBackend>() {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("set {name}"));
    let package = var("SD_TIMING_PACKAGE");
    let precision = match std::env::var("SD_TIMING_PRECISION").as_deref() {
        Ok("fp32") => Precision::Fp32,
        _ => Precision::Program,
    };
    let runs = std::env::var("SD_TIMING_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let (mut ins, mut outs) = (HashMap::new(), HashMap::new());
    for (name, t) in Tensor::read_safetensors(var("SD_TIMING_INPUTS")).unwrap() {
        if let Some(n) = name.strip_prefix("in.") {
            ins.insert(n.to_string(), t);
        } else if let Some(n) = name.strip_prefix("out.") {
            outs.insert(n.to_string(), t);
        }
    }
    let t0 = Instant::now();
    let model = load::<B>(Path::new(&package), precision).unwrap();
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let inputs = inputs_for(&model, &ins);
    let t1 = Instant::now();
    let got = model.predict(&inputs).unwrap();
    let first_ms = t1.elapsed().as_secs_f64() * 1e3;
    let ms = median_ms(&model, &inputs, 2, runs);
    println!(
        "TIMING {package} {precision:?}: median {ms:.3} ms of {runs} (load {load_ms:.0} ms, \
         first predict {first_ms:.0} ms)"
    );
    for (name, want) in &outs {
        if let Some(g) = got.get(name).filter(|g| g.shape == want.shape) {
            let p = psnr(&g.to_f32_vec(), &want.to_f32_vec());
            println!("PSNR {package} {precision:?} {name}: {p:.2} dB");
        }
    }
}

/// Compares a backend's trace with the reference trace value by value and prints the first
/// values below 50 dB (the first one names the faulty kernel: its inputs were still right).
fn bisect_against(label: &str, got: &Trace, want: &Trace) {
    let reference: HashMap<&str, &Tensor> = want.iter().map(|(n, _, t)| (n.as_str(), t)).collect();
    let (mut compared, mut shown) = (0, 0);
    for (name, op_type, t) in got {
        let Some(w) = reference.get(name.as_str()).filter(|w| w.shape == t.shape) else {
            continue;
        };
        compared += 1;
        let (a, b) = (t.to_f32_vec(), w.to_f32_vec());
        let p = psnr(&a, &b);
        if p < 50.0 && shown < 12 {
            let max = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            println!(
                "BISECT {label}: {name} ({op_type}, {:?}) {p:.2} dB, max |diff| {max:.3e}",
                t.shape
            );
            shown += 1;
        }
    }
    println!("BISECT {label}: {compared} values compared, {shown} shown below 50 dB");
}

/// Runs a package (`SD_BISECT_PACKAGE`, default Apple's tiny SPLIT_EINSUM UNet, on
/// `SD_BISECT_INPUTS` or its reference inputs) on the generic CPU backend and on both CUDA
/// backends, value by value, in fp32 and program precision; prints where the GPU departs.
#[test]
#[ignore = "diagnosis on a GPU; run explicitly"]
fn cuda_bisect() {
    let path = std::env::var("SD_BISECT_PACKAGE")
        .map(Into::into)
        .unwrap_or_else(|_| package("split_einsum", "unet"));
    let ins = match std::env::var("SD_BISECT_INPUTS") {
        Ok(f) => Tensor::read_safetensors(f)
            .unwrap()
            .into_iter()
            .filter_map(|(n, t)| n.strip_prefix("in.").map(|n| (n.to_string(), t)))
            .collect(),
        Err(_) => reference("unet").0,
    };
    for precision in [Precision::Fp32, Precision::Program] {
        let (want, _) = trace::<GenericCpu>(&path, precision, &ins);
        for unfused in [true, false] {
            let label = format!(
                "{} {precision:?}",
                if unfused { "unfused" } else { "fused" }
            );
            let (got, _) = if unfused {
                trace::<CudaUnfused>(&path, precision, &ins)
            } else {
                trace::<Cuda>(&path, precision, &ins)
            };
            bisect_against(&label, &got, &want);
            // The same backend without inspection (fusion across ops intact): final outputs.
            let outs = if unfused {
                predict(&load::<CudaUnfused>(&path, precision).unwrap(), &ins)
            } else {
                predict(&load::<Cuda>(&path, precision).unwrap(), &ins)
            }
            .unwrap();
            for (name, _, w) in want.iter().filter(|(n, _, _)| outs.contains_key(n)) {
                let p = psnr(&outs[name].to_f32_vec(), &w.to_f32_vec());
                println!("BISECT {label}: plain predict {name} {p:.2} dB vs generic CPU");
            }
        }
    }
}
