//! One step of a full-size SD1.5-architecture UNet (batch 2, 64×64 latent, SPLIT_EINSUM,
//! random weights) on the CPU, and in the same run the PyTorch CPU peer on the same weights
//! and inputs (`benches/torch_unet_full.py` through the reference venv), with the PSNR of
//! the two outputs. Skipped when the converted package is missing.
//!
//! Make the package once:
//! `cargo xtask reference --full sd15` (the diffusers folder `target/full/sd15`), then
//! `cargo run --release -p sd-cli -- convert --model-version target/full/sd15 --convert-unet
//! -o target/full-packages`. Then `cargo bench -p sd-runtime --bench unet_full`;
//! `SD_FULL_RUNS` sets the timed runs (default 3, after one warm-up).

use sd_runtime::{Model, Precision, Tensor, psnr};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The first `*unet.mlpackage` under `target/full-packages`.
fn package() -> Option<PathBuf> {
    let dir = workspace().join("target/full-packages");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with("_unet.mlpackage"))
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

fn inputs(model: &Model) -> HashMap<String, Tensor> {
    let mut map = HashMap::new();
    for (i, f) in model.description().inputs.iter().enumerate() {
        let n: usize = f.shape.iter().product();
        let data = match f.name.as_str() {
            "timestep" => vec![500.0; n],
            "encoder_hidden_states" => noise(n, 7, 0.5),
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

fn peer(ins: &Path, out: &Path, runs: usize) -> Option<(serde_json::Value, Tensor)> {
    let python = workspace().join("target/reference-venv/bin/python");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/torch_unet_full.py");
    let folder = workspace().join("target/full/sd15/unet");
    if !python.exists() || !folder.exists() {
        eprintln!(
            "PyTorch peer skipped: no reference venv or no {}",
            folder.display()
        );
        return None;
    }
    let o = std::process::Command::new(python)
        .arg(script)
        .arg(folder)
        .arg(ins)
        .arg(out)
        .arg(runs.to_string())
        .output()
        .ok()?;
    if !o.status.success() {
        eprintln!(
            "PyTorch peer failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        return None;
    }
    let line = String::from_utf8(o.stdout).ok()?;
    let json: serde_json::Value = serde_json::from_str(line.lines().last()?).ok()?;
    let t = Tensor::read_safetensors(out).ok()?.into_iter().next()?.1;
    Some((json, t))
}

fn main() {
    let Some(pkg) = package() else {
        eprintln!(
            "unet_full skipped: no *_unet.mlpackage under target/full-packages (see the \
             bench's doc comment for how to make it)"
        );
        return;
    };
    let runs: usize = std::env::var("SD_FULL_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let t0 = Instant::now();
    let model = Model::load_cpu(&pkg, Precision::Program).expect("package loads");
    println!(
        "loaded {} in {:.1} s",
        pkg.display(),
        t0.elapsed().as_secs_f64()
    );
    let ins = inputs(&model);
    let first = Instant::now();
    let mut out = model.predict(&ins).expect("predict");
    println!(
        "warm-up step: {:.0} ms",
        first.elapsed().as_secs_f64() * 1e3
    );
    let times: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            out = model.predict(&ins).expect("predict");
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let ours = median(times.clone());
    println!("sd-runtime CPU (program precision): {times:.0?} ms, median {ours:.0} ms");
    drop(model);
    let dir = std::env::temp_dir().join(format!("sd-unet-full-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (in_path, out_path) = (dir.join("in.safetensors"), dir.join("out.safetensors"));
    Tensor::write_safetensors(&in_path, ins.iter().map(|(k, v)| (k.as_str(), v)))
        .expect("write inputs");
    if let Some((json, theirs)) = peer(&in_path, &out_path, runs) {
        let p = json["median_ms"].as_f64().unwrap_or(f64::NAN);
        let mine = out.values().next().expect("one output").to_f32_vec();
        println!(
            "PyTorch {} CPU fp32, {} threads: {} ms, median {p:.0} ms",
            json["torch"], json["threads"], json["ms"]
        );
        println!(
            "| UNet SD1.5 size (batch 2, 64×64, SPLIT_EINSUM) | {ours:.0} | {p:.0} | {:.2}× | \
             PSNR vs PyTorch {:.1} dB |",
            ours / p,
            psnr(&mine, &theirs.to_f32_vec())
        );
    }
    std::fs::remove_dir_all(dir).ok();
}
