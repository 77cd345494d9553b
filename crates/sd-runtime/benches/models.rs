//! Times the tiny UNet, text encoder and VAE decoder (Apple's split-einsum packages, program
//! precision, CPU) and, in the same run, the PyTorch CPU peer on the same weights
//! (`benches/torch_peer.py` through the reference venv, when it exists), then prints the
//! ratios. `cargo bench -p sd-runtime --bench models`. Under `--profile-time` (criterion's
//! profiling mode) the peer comparison is left out.

use criterion::{Criterion, criterion_group};
use sd_runtime::{Model, Precision, Tensor};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn fixtures() -> PathBuf {
    std::env::var_os("SD_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/apple-tiny")
        })
}

fn load(component: &str) -> (Model, HashMap<String, Tensor>) {
    let root = fixtures();
    let pkg = root.join(format!(
        "packages/split_einsum/Stable_Diffusion_version_sd-tiny_{component}.mlpackage"
    ));
    let model = Model::load_cpu(pkg, Precision::Program).expect("package loads");
    let refs = Tensor::read_safetensors(root.join(format!("reference/{component}.io.safetensors")))
        .expect("reference");
    let inputs = refs
        .into_iter()
        .filter_map(|(n, t)| n.strip_prefix("in.").map(|n| (n.to_string(), t)))
        .collect();
    (model, inputs)
}

const COMPONENTS: [&str; 3] = ["text_encoder", "unet", "vae_decoder"];

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("apple_tiny_cpu");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    for comp in COMPONENTS {
        let (model, inputs) = load(comp);
        g.bench_function(comp, |b| b.iter(|| model.predict(&inputs).unwrap()));
    }
    g.finish();
}

/// Median wall time of `runs` predictions after one warm-up.
fn median_ms(model: &Model, inputs: &HashMap<String, Tensor>, runs: usize) -> f64 {
    model.predict(inputs).unwrap();
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            model.predict(inputs).unwrap();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[runs / 2]
}

fn peer_comparison() {
    let venv =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/reference-venv/bin/python");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/torch_peer.py");
    let ours: Vec<(&str, f64)> = COMPONENTS
        .iter()
        .map(|c| {
            let (m, i) = load(c);
            (*c, median_ms(&m, &i, 10))
        })
        .collect();
    let peer = if venv.exists() {
        std::process::Command::new(&venv)
            .arg(&script)
            .arg(fixtures())
            .arg("10")
            .output()
            .ok()
    } else {
        None
    };
    let peer: Option<serde_json::Value> = peer
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().last().and_then(|l| serde_json::from_str(l).ok()));
    println!("\n| model | sd-runtime CPU (ms) | PyTorch CPU fp32 (ms) | ratio |");
    println!("|---|---|---|---|");
    for (c, ms) in ours {
        match peer.as_ref().and_then(|p| p[c].as_f64()) {
            Some(p) => println!("| {c} | {ms:.2} | {p:.2} | {:.2}× |", ms / p),
            None => println!("| {c} | {ms:.2} | n/a | n/a |"),
        }
    }
    if let Some(p) = peer {
        println!("(torch {} with {} threads)", p["torch"], p["threads"]);
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if !std::env::args().any(|a| a == "--profile-time") {
        peer_comparison();
    }
}
