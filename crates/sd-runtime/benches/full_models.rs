//! The full-size SD1.5-architecture networks (random weights) on the CPU: the UNet step
//! (batch 2, 64×64 latent, 77 tokens), the VAE decoder (one 512² image) and the CLIP text
//! encoder (77 tokens), each beside the CPU peers on the same weights and inputs in the same
//! run, every engine in its own process (`benches/peer_full_models.py` through the reference
//! venv): PyTorch fp32 and OpenVINO (f32, and bf16 when asked). Reports the median, the load
//! time, the first prediction, the peak resident set during the timed runs and the PSNR of
//! every output against PyTorch's. A network whose converted package is missing is skipped.
//! Every engine runs with malloc keeping freed memory (`sd_runtime::allocator`), as `sd` does.
//!
//! Make the packages once:
//! `cargo xtask reference --full sd15` (the diffusers folder `target/full/sd15`), then
//! `cargo run --release -p sd-cli -- convert --model-version target/full/sd15 --convert-unet
//! --convert-vae-decoder --convert-text-encoder -o target/full-packages`. Then
//! `cargo bench -p sd-runtime --bench full_models`. `SD_FULL_MODELS` picks the networks
//! (default `unet,vae_decoder,text_encoder`), `SD_FULL_RUNS` the timed runs (default 3,
//! after one warm-up), `SD_FULL_PEERS` the peers (default `torch,openvino-f32`; also
//! `openvino-bf16`; OpenVINO needs `pip install openvino` in the reference venv).

use sd_runtime::{Model, Precision, Tensor, psnr};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One network of the benchmark: how its package is named, where its diffusers weights lie
/// and which output is compared.
struct Network {
    /// The name `SD_FULL_MODELS` and the peer script use.
    name: &'static str,
    /// How the converted package's name ends.
    package_suffix: &'static str,
    /// The diffusers subfolder.
    folder: &'static str,
    /// The output compared across engines.
    output: &'static str,
}

const NETWORKS: [Network; 3] = [
    Network {
        name: "unet",
        package_suffix: "_unet.mlpackage",
        folder: "unet",
        output: "noise_pred",
    },
    Network {
        name: "vae_decoder",
        package_suffix: "_vae_decoder.mlpackage",
        folder: "vae",
        output: "image",
    },
    Network {
        name: "text_encoder",
        package_suffix: "_text_encoder.mlpackage",
        folder: "text_encoder",
        output: "last_hidden_state",
    },
];

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The first package under `target/full-packages` whose name ends in `suffix`.
fn package(suffix: &str) -> Option<PathBuf> {
    let dir = workspace().join("target/full-packages");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(suffix))
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

/// Deterministic pseudo-normal values (sum of uniforms), scaled.
fn noise(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed;
    let mut uni = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..n)
        .map(|_| ((0..4).map(|_| uni()).sum::<f32>() - 2.0) * scale * 1.7)
        .collect()
}

/// CLIP token ids of a 20-token prompt: start, 18 words, end, then end-of-text padding.
fn token_ids(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| match i {
            0 => 49406.0,
            1..=18 => (400 + (i * 7919) % 40000) as f32,
            _ => 49407.0,
        })
        .collect()
}

fn inputs(model: &Model) -> HashMap<String, Tensor> {
    let mut map = HashMap::new();
    for (i, f) in model.description().inputs.iter().enumerate() {
        let n: usize = f.shape.iter().product();
        let data = match f.name.as_str() {
            "timestep" => vec![500.0; n],
            "encoder_hidden_states" => noise(n, 7, 0.5),
            "input_ids" => token_ids(n),
            _ => noise(n, 100 + i as u64, 1.0),
        };
        map.insert(f.name.clone(), Tensor::f32(f.shape.clone(), data));
    }
    map
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Peak resident set size in MB: `VmHWM` of `/proc/self/status`.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Resets the kernel's peak-RSS mark, so that [`peak_rss_mb`] then reports the peak from now.
fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").ok();
}

/// Runs one peer engine (`benches/peer_full_models.py`) on one network in its own process:
/// its JSON report and its output.
fn peer(
    net: &Network,
    engine: &str,
    ins: &Path,
    out: &Path,
    runs: usize,
) -> Option<(serde_json::Value, Tensor)> {
    let python = workspace().join("target/reference-venv/bin/python");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/peer_full_models.py");
    let folder = workspace().join("target/full/sd15").join(net.folder);
    if !python.exists() || !folder.exists() {
        eprintln!(
            "{engine} peer skipped: no reference venv or no {}",
            folder.display()
        );
        return None;
    }
    let o = std::process::Command::new(python)
        .env("GLIBC_TUNABLES", sd_runtime::allocator::GLIBC_TUNABLES)
        .arg(script)
        .args([net.name, engine])
        .arg(folder)
        .arg(ins)
        .arg(out)
        .arg(runs.to_string())
        .output()
        .ok()?;
    if !o.status.success() {
        eprintln!(
            "{} {engine} peer failed: {}",
            net.name,
            String::from_utf8_lossy(&o.stderr)
        );
        return None;
    }
    let line = String::from_utf8(o.stdout).ok()?;
    let json: serde_json::Value = serde_json::from_str(line.lines().last()?).ok()?;
    let t = Tensor::read_safetensors(out)
        .ok()?
        .into_iter()
        .find(|(name, _)| name == net.output)?
        .1;
    Some((json, t))
}

/// One engine's line of the table.
struct Row {
    engine: String,
    median_ms: f64,
    load_s: f64,
    /// The first prediction after loading (our weights are widened during it).
    first_ms: f64,
    peak_rss_mb: f64,
    output: Vec<f32>,
}

/// Runs our runtime and then every peer on `net`, and prints the table.
fn bench(net: &Network, pkg: &Path, engines: &[String], runs: usize) {
    let t0 = Instant::now();
    let model = Model::load_cpu(pkg, Precision::Program).expect("package loads");
    let load_s = t0.elapsed().as_secs_f64();
    println!("{}: loaded {} in {load_s:.2} s", net.name, pkg.display());
    let ins = inputs(&model);
    let first = Instant::now();
    let mut out = model.predict(&ins).expect("predict");
    let first_ms = first.elapsed().as_secs_f64() * 1e3;
    println!("{}: first prediction {first_ms:.0} ms", net.name);
    reset_peak_rss();
    let times: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            out = model.predict(&ins).expect("predict");
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let ours = median(times.clone());
    let rss = peak_rss_mb();
    println!(
        "{}: sd-runtime CPU (program precision): {times:.0?} ms, median {ours:.0} ms",
        net.name
    );
    drop(model);
    let mine = out
        .get(net.output)
        .unwrap_or_else(|| panic!("{} has no output {}", net.name, net.output))
        .to_f32_vec();
    let dir = std::env::temp_dir().join(format!("sd-full-{}-{}", net.name, std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let in_path = dir.join("in.safetensors");
    Tensor::write_safetensors(&in_path, ins.iter().map(|(k, v)| (k.as_str(), v)))
        .expect("write inputs");
    let mut rows = vec![Row {
        engine: "sd-runtime (program precision)".into(),
        median_ms: ours,
        load_s,
        first_ms,
        peak_rss_mb: rss,
        output: mine,
    }];
    let mut torch_out: Option<Vec<f32>> = None;
    for engine in engines {
        let out_path = dir.join(format!("{engine}.safetensors"));
        let Some((json, theirs)) = peer(net, engine, &in_path, &out_path, runs) else {
            continue;
        };
        let median_ms = json["median_ms"].as_f64().unwrap_or(f64::NAN);
        println!(
            "{}: {engine} {} ({} threads): {} ms, median {median_ms:.0} ms",
            net.name, json["version"], json["threads"], json["ms"]
        );
        let theirs = theirs.to_f32_vec();
        if engine == "torch" {
            torch_out = Some(theirs.clone());
        }
        rows.push(Row {
            engine: format!("{engine} {}", json["version"].as_str().unwrap_or("")),
            median_ms,
            load_s: json["load_s"].as_f64().unwrap_or(f64::NAN),
            first_ms: json["first_ms"].as_f64().unwrap_or(f64::NAN),
            peak_rss_mb: json["peak_rss_step_mb"].as_f64().unwrap_or(f64::NAN),
            output: theirs,
        });
    }
    let base = rows
        .iter()
        .find(|r| r.engine.starts_with("openvino-f32"))
        .map(|r| r.median_ms);
    println!(
        "\n{}\n| engine | median (ms) | vs OpenVINO f32 | load (s) | first prediction (ms) | peak RSS in runs (MB) | PSNR vs PyTorch fp32 |\n|---|---|---|---|---|---|---|",
        net.name
    );
    for r in &rows {
        let psnr_db = torch_out.as_ref().map(|t| psnr(&r.output, t));
        println!(
            "| {} | {:.0} | {} | {:.2} | {:.0} | {:.0} | {} |",
            r.engine,
            r.median_ms,
            base.map_or("—".into(), |b| format!("{:.2}×", r.median_ms / b)),
            r.load_s,
            r.first_ms,
            r.peak_rss_mb,
            psnr_db.map_or("—".into(), |p| format!("{p:.1} dB")),
        );
    }
    println!();
    std::fs::remove_dir_all(dir).ok();
}

fn main() {
    // As the `sd` binary does; the peers get the same malloc settings (`peer`).
    sd_runtime::allocator::keep_freed_memory();
    let runs: usize = std::env::var("SD_FULL_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let list = |var: &str, default: &str| -> Vec<String> {
        std::env::var(var)
            .unwrap_or_else(|_| default.into())
            .split(',')
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let engines = list("SD_FULL_PEERS", "torch,openvino-f32");
    for name in list("SD_FULL_MODELS", "unet,vae_decoder,text_encoder") {
        let Some(net) = NETWORKS.iter().find(|n| n.name == name) else {
            eprintln!("full_models: unknown network {name} in SD_FULL_MODELS");
            continue;
        };
        match package(net.package_suffix) {
            Some(pkg) => bench(net, &pkg, &engines, runs),
            None => eprintln!(
                "{name} skipped: no *{} under target/full-packages (see the bench's doc \
                 comment for how to make it)",
                net.package_suffix
            ),
        }
    }
}
