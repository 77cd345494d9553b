//! The native CUDA engine (`sd_runtime::cuda_engine`, feature `cuda-engine`) on an NVIDIA
//! GPU: every package of Apple's tiny fixtures against the PyTorch fp32 references (≥ 35 dB
//! in program precision, ≥ 60 dB in fp32; the palettized q6 packages ≥ 10 dB against PyTorch
//! and ≥ 35 / 60 dB against the CPU runtime on the same package).
//!
//! `cargo test --release -p sd-runtime --features cuda-engine --test cuda_engine --
//! --nocapture --test-threads 1`. The ignored tests need a package path:
//! - `engine_timing` (`SD_TIMING_PACKAGE`, optional `SD_TIMING_INPUTS`: safetensors with
//!   `in.*` inputs and `out.*` references): load and first-prediction times, median GPU time
//!   of graph replays (CUDA events), memory, per-op-kind profile, PSNR against `out.*`.
//! - `engine_bisect` (`SD_BISECT_PACKAGE`, `SD_BISECT_COMPONENT`: the fixture reference to
//!   feed it): every value of the GPU run against the CPU runtime in fp32, the first that
//!   departs named.
#![cfg(feature = "cuda-engine")]

mod common;
use common::*;
use sd_runtime::cuda_engine::CudaEngine;
use sd_runtime::{Model, Precision, Tensor, psnr};
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

fn engine(path: &Path, precision: Precision) -> Result<CudaEngine, String> {
    CudaEngine::load(path, 0, precision).map_err(|e| format!("load {}: {e}", path.display()))
}

fn inputs_of(e: &CudaEngine, all: &HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    e.description()
        .inputs
        .iter()
        .filter_map(|f| all.get(&f.name).map(|t| (f.name.clone(), t.clone())))
        .collect()
}

fn run(e: &CudaEngine, all: &HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>, String> {
    e.predict(&inputs_of(e, all))
        .map_err(|err| format!("predict: {err}"))
}

/// (label, output, PSNR or failure, floor).
type Row = (String, String, Result<f64, String>, f64);

fn compare(
    label: &str,
    got: Result<HashMap<String, Tensor>, String>,
    want: &HashMap<String, Tensor>,
    floor: f64,
) -> Vec<Row> {
    let got = match got {
        Ok(g) => g,
        Err(e) => return vec![(label.into(), "-".into(), Err(e), floor)],
    };
    let mut names: Vec<&String> = got.keys().filter(|k| want.contains_key(*k)).collect();
    names.sort();
    if names.is_empty() {
        return vec![(
            label.into(),
            "-".into(),
            Err("no output to compare".into()),
            floor,
        )];
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
            (label.into(), n.clone(), p, floor)
        })
        .collect()
}

fn floor_for(p: Precision) -> f64 {
    match p {
        Precision::Program => 35.0,
        Precision::Fp32 => 60.0,
    }
}

#[test]
fn engine_matches_references_on_apple_tiny() {
    let mut rows: Vec<Row> = Vec::new();
    let whole = [
        ("split_einsum", "text_encoder", "text_encoder"),
        ("split_einsum", "unet", "unet"),
        ("original", "unet", "unet"),
        ("split_einsum_v2", "unet", "unet"),
        ("split_einsum", "vae_decoder", "vae_decoder"),
        ("split_einsum", "vae_encoder", "vae_encoder"),
    ];
    for precision in [Precision::Program, Precision::Fp32] {
        let tag = format!("{precision:?}");
        for (folder, component, reference_of) in whole {
            let (ins, outs) = reference(reference_of);
            let got = engine(&package(folder, component), precision).and_then(|e| run(&e, &ins));
            let label = format!("{folder}/{component} {tag}");
            rows.extend(compare(&label, got, &outs, floor_for(precision)));
        }
        // The two UNet chunks one after the other.
        let (ins, outs) = reference("unet");
        let got = (|| {
            let c1 = engine(&package("split_einsum_chunk", "unet_chunk1"), precision)?;
            let c2 = engine(&package("split_einsum_chunk", "unet_chunk2"), precision)?;
            let mut merged = ins.clone();
            merged.extend(run(&c1, &ins)?);
            run(&c2, &merged)
        })();
        let label = format!("split_einsum_chunk/unet_chunk1+2 {tag}");
        rows.extend(compare(&label, got, &outs, floor_for(precision)));
        // Palettized: a sanity floor against PyTorch, the CPU runtime as the reference.
        for component in ["unet", "text_encoder"] {
            let (ins, outs) = reference(component);
            let path = package("split_einsum_q6", component);
            let label = format!("split_einsum_q6/{component} {tag}");
            let got = engine(&path, precision).and_then(|e| run(&e, &ins));
            rows.extend(compare(&label, got.clone(), &outs, 10.0));
            let cpu = Model::load_cpu(&path, Precision::Fp32).unwrap();
            let cpu_out = cpu.predict(&model_inputs(&cpu, &ins)).unwrap();
            rows.extend(compare(
                &format!("{label} vs CPU"),
                got,
                &cpu_out,
                floor_for(precision),
            ));
        }
    }
    println!("| package | output | PSNR (dB) | floor | result |\n|---|---|---|---|---|");
    let mut failed = Vec::new();
    for (label, output, p, floor) in &rows {
        let (shown, ok) = match p {
            Ok(v) => (format!("{v:.2}"), *v >= *floor),
            Err(e) => (e.clone(), false),
        };
        println!(
            "| {label} | {output} | {shown} | {floor} | {} |",
            if ok { "pass" } else { "FAIL" }
        );
        if !ok {
            failed.push(format!("{label} {output}"));
        }
    }
    assert!(failed.is_empty(), "below the floor: {failed:?}");
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
#[ignore = "needs SD_TIMING_PACKAGE and a GPU"]
fn engine_timing() {
    let path = std::env::var("SD_TIMING_PACKAGE").expect("SD_TIMING_PACKAGE");
    let runs: usize = std::env::var("SD_TIMING_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    for precision in [Precision::Program, Precision::Fp32] {
        let t = Instant::now();
        let e = engine(Path::new(&path), precision).unwrap();
        let load_s = t.elapsed().as_secs_f64();
        let (ins, outs) = match std::env::var("SD_TIMING_INPUTS")
            .ok()
            .filter(|f| !f.is_empty())
        {
            Some(f) => io_file(&f),
            None => {
                let ins = e
                    .description()
                    .inputs
                    .iter()
                    .map(|f| {
                        let n = f.shape.iter().product::<usize>();
                        // Token ids must be valid indices; other inputs small values.
                        let ids = f.name.contains("ids");
                        let data = (0..n)
                            .map(|i| {
                                if ids {
                                    (i % 13) as f32
                                } else {
                                    ((i % 13) as f32 - 6.0) / 7.0
                                }
                            })
                            .collect();
                        (f.name.clone(), Tensor::f32(f.shape.clone(), data))
                    })
                    .collect();
                (ins, HashMap::new())
            }
        };
        let ins = inputs_of(&e, &ins);
        let t = Instant::now();
        let out = e.predict(&ins).unwrap();
        let first_ms = t.elapsed().as_secs_f64() * 1e3;
        let mut wall: Vec<f64> = (0..runs.min(10))
            .map(|_| {
                let t = Instant::now();
                e.predict(&ins).unwrap();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        let _ = e.time_replays(3).unwrap();
        let mut gpu: Vec<f64> = e
            .time_replays(runs)
            .unwrap()
            .iter()
            .map(|v| *v as f64)
            .collect();
        let m = e.memory();
        println!(
            "{{\"package\": \"{path}\", \"precision\": \"{precision:?}\", \"load_s\": {load_s:.3}, \"first_predict_ms\": {first_ms:.1}, \"predict_wall_median_ms\": {:.3}, \"graph_gpu_median_ms\": {:.3}, \"graph_gpu_min_ms\": {:.3}, \"launches\": {}, \"arena_mb\": {:.1}, \"unplanned_mb\": {:.1}, \"weights_mb\": {:.1}, \"workspace_mb\": {:.1}}}",
            median(&mut wall),
            median(&mut gpu),
            gpu[0],
            e.launch_count(),
            m.arena as f64 / 1e6,
            m.unplanned as f64 / 1e6,
            m.weights as f64 / 1e6,
            m.workspace as f64 / 1e6,
        );
        for (name, want) in &outs {
            if let Some(got) = out.get(name) {
                println!(
                    "psnr {precision:?} {name}: {:.2} dB",
                    psnr(&got.to_f32_vec(), &want.to_f32_vec())
                );
            }
        }
        let profile = e.profile().unwrap();
        let total: f32 = profile.iter().map(|p| p.1).sum();
        println!("profile {precision:?} (eager, {total:.3} ms of kernels):");
        for (kind, ms, n) in profile.iter().take(25) {
            println!("  {ms:8.3} ms  {n:5}  {kind}");
        }
    }
}

#[test]
#[ignore = "needs SD_BISECT_PACKAGE and a GPU"]
fn engine_bisect() {
    let path = std::env::var("SD_BISECT_PACKAGE").expect("SD_BISECT_PACKAGE");
    let component = std::env::var("SD_BISECT_COMPONENT").unwrap_or("unet".into());
    let precision = match std::env::var("SD_BISECT_PRECISION").as_deref() {
        Ok("program") => Precision::Program,
        _ => Precision::Fp32,
    };
    // SAFETY: set before any other thread of this test process reads the environment.
    unsafe { std::env::set_var("SD_CUDA_KEEP_VALUES", "1") };
    let (ins, _) = reference(&component);
    let cpu = Model::load_cpu(&path, Precision::Fp32).unwrap();
    let mut values: Vec<(String, String, Tensor)> = Vec::new();
    cpu.predict_inspect(&model_inputs(&cpu, &ins), |p| {
        values.push((p.name.to_string(), p.op_type.to_string(), p.tensor()));
    })
    .unwrap();
    let e = engine(Path::new(&path), precision).unwrap();
    run(&e, &ins).unwrap();
    let mut shown = 0;
    for (name, op_type, want) in &values {
        let Some(got) = e.value(name).unwrap() else {
            continue;
        };
        let p = psnr(&got.to_f32_vec(), &want.to_f32_vec());
        if p < 40.0 && shown < 15 {
            println!("{name} ({op_type}) {:?}: {p:.2} dB", want.shape);
            shown += 1;
        }
    }
    println!("{} values compared", values.len());
}

/// The repository root (`SD_REPO` on a machine where the tests were not built).
fn repo() -> std::path::PathBuf {
    std::env::var_os("SD_REPO")
        .map(Into::into)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// Text-to-image on Apple's tiny packages with every model on the CUDA engine: the image
/// against the same pipeline on the CPU in the same precision (≥ 35 dB, both precisions) and,
/// in fp32, against diffusers' float32 run (`fixtures/pipelines/pndm.safetensors`, ≥ 35 dB).
#[test]
fn engine_pipeline_matches_diffusers_and_the_cpu() {
    use sd_runtime::pipeline::{Control, Engine, GenerationRequest, Pipeline, PipelineOptions};
    let root = repo();
    let config = std::fs::read_to_string(
        root.join("fixtures/models/sd1-tiny/scheduler/scheduler_config.json"),
    )
    .unwrap();
    let want: HashMap<String, Vec<f32>> =
        Tensor::read_safetensors(root.join("fixtures/pipelines/pndm.safetensors"))
            .unwrap()
            .into_iter()
            .map(|(k, t)| (k, t.to_f32_vec()))
            .collect();
    let mut r = GenerationRequest::new("a photo of an astronaut riding a horse on mars");
    r.negative_prompt = "blurry, low quality, watermark".into();
    r.seed = 93;
    r.steps = 20;
    r.guidance_scale = 7.5;
    r.scheduler = sd_runtime::pipeline::SchedulerKind::Pndm;
    r.rng = sd_sched::RngKind::Torch;
    let image = |precision: Precision, engine: Engine| -> Vec<f32> {
        let mut o = PipelineOptions::<sd_runtime::Cpu>::new(precision, Default::default());
        o.tokenizer = Some(root.join("fixtures/models/sd1-tiny/tokenizer"));
        o.scheduler_config = Some(sd_sched::SchedulerConfig::from_json(&config).unwrap());
        o.engine = engine;
        let mut pipe = Pipeline::load(fixtures().join("packages/split_einsum"), o).unwrap();
        let t = Instant::now();
        let out = pipe.generate(&r, &mut |_| Control::Continue).unwrap();
        println!(
            "{precision:?} {engine:?}: generated in {:.1} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
        out.images[0]
            .image
            .as_ref()
            .unwrap()
            .data
            .iter()
            .map(|&v| v as f32)
            .collect()
    };
    for precision in [Precision::Fp32, Precision::Program] {
        let gpu = image(precision, Engine::Cuda { gpu: 0 });
        let cpu = image(precision, Engine::Backend);
        let (vs_diffusers, vs_cpu) = (psnr(&gpu, &want["image"]), psnr(&gpu, &cpu));
        println!(
            "{precision:?}: image {vs_diffusers:.2} dB against diffusers, {vs_cpu:.2} dB against the CPU"
        );
        assert!(
            vs_cpu >= 35.0 && (precision == Precision::Program || vs_diffusers >= 35.0),
            "{precision:?}: {vs_diffusers:.2} / {vs_cpu:.2} dB"
        );
    }
}

/// Text-to-image timing on the CUDA engine: `SD_GENERATE_FOLDER` (packages), optional
/// `SD_GENERATE_TOKENIZER`; load, the first image (graphs captured on the way), then the
/// median of three 20-step images at guidance 7.5 (batch-2 UNet).
#[test]
#[ignore = "needs SD_GENERATE_FOLDER and a GPU"]
fn engine_generate_timing() {
    use sd_runtime::pipeline::{Control, Engine, GenerationRequest, Pipeline, PipelineOptions};
    let folder = std::env::var("SD_GENERATE_FOLDER").expect("SD_GENERATE_FOLDER");
    let mut o = PipelineOptions::<sd_runtime::Cpu>::new(Precision::Program, Default::default());
    o.tokenizer = std::env::var_os("SD_GENERATE_TOKENIZER").map(Into::into);
    o.engine = Engine::Cuda { gpu: 0 };
    let t = Instant::now();
    let mut pipe = Pipeline::load(&folder, o).unwrap();
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut r = GenerationRequest::new("a photo of an astronaut riding a horse on mars");
    r.steps = 20;
    r.scheduler = sd_runtime::pipeline::SchedulerKind::DpmppKarras;
    let mut once = || {
        let t = Instant::now();
        let out = pipe.generate(&r, &mut |_| Control::Continue).unwrap();
        assert!(out.images[0].image.is_some());
        t.elapsed().as_secs_f64() * 1e3
    };
    let first_ms = once();
    let mut times: Vec<f64> = (0..3).map(|_| once()).collect();
    println!(
        "{{\"folder\": \"{folder}\", \"load_ms\": {load_ms:.1}, \"first_image_ms\": {first_ms:.1}, \"image_20_steps_median_ms\": {:.1}}}",
        median(&mut times)
    );
}
