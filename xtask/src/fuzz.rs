//! `cargo xtask fuzz`: seed corpora for every fuzz target (from the fixtures), build the
//! libFuzzer binaries of `fuzz/` with `cargo +nightly fuzz`, and run each target for a given
//! time, reporting executions and any crash, hang or out-of-memory input it found.
//!
//! Corpora grow in `target/fuzz/corpus/<target>`; the small hand-picked seeds committed in
//! `fuzz/corpus/<target>` and every input that once failed (`fuzz/regressions/<target>`) are
//! read too, and replayed by `cargo test` (`xtask/tests/fuzz_replay.rs`).

#[path = "../../fuzz/targets.rs"]
#[allow(dead_code)]
mod targets;

use crate::venv::workspace_root;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Arguments of `cargo xtask fuzz`.
#[derive(clap::Args)]
pub struct Args {
    /// Seconds each target runs.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Only these targets (default: all).
    #[arg(long, value_delimiter = ',')]
    targets: Vec<String>,
    /// Targets run at once.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Write the seed corpora and stop.
    #[arg(long)]
    seed_only: bool,
    /// Use already built fuzz binaries in this folder instead of building them.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

/// Inputs larger than this are not tried (the seeds are smaller).
const MAX_LEN: usize = 1 << 20;

pub fn run(args: Args) -> Result<()> {
    let root = workspace_root();
    let targets: Vec<&str> = if args.targets.is_empty() {
        targets::TARGETS.to_vec()
    } else {
        for t in &args.targets {
            if !targets::TARGETS.contains(&t.as_str()) {
                bail!(
                    "no fuzz target `{t}` (targets: {})",
                    targets::TARGETS.join(", ")
                );
            }
        }
        args.targets.iter().map(String::as_str).collect()
    };
    let corpus_root = root.join("target/fuzz/corpus");
    for t in &targets {
        let dir = corpus_root.join(t);
        std::fs::create_dir_all(&dir)?;
        let n = seed(&root, t, &dir)?;
        println!("{t}: {n} seeds in {}", dir.display());
    }
    if args.seed_only {
        return Ok(());
    }
    let bin_dir = match args.bin_dir {
        Some(d) => d,
        None => build(&root)?,
    };
    let mut failed = Vec::new();
    let mut rows = Vec::new();
    for chunk in targets.chunks(args.jobs.max(1)) {
        let children = chunk
            .iter()
            .map(|t| spawn(&root, &bin_dir, t, args.seconds).map(|c| (*t, c)))
            .collect::<Result<Vec<_>>>()?;
        for (t, child) in children {
            let out = child.wait_with_output()?;
            let log = String::from_utf8_lossy(&out.stderr);
            let runs = log
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("Done ").and_then(|r| r.split(' ').next()))
                .unwrap_or("?")
                .to_string();
            let ok = out.status.success();
            if !ok {
                failed.push(t);
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!(
                    "{t} failed:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            rows.push(format!(
                "| {t} | {} | {runs} | {} |",
                args.seconds,
                if ok {
                    "no crash"
                } else {
                    "FAILED (see target/fuzz/artifacts)"
                }
            ));
        }
    }
    println!("| target | seconds | executions | result |\n|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    if !failed.is_empty() {
        bail!("fuzz targets failed: {}", failed.join(", "));
    }
    Ok(())
}

/// Builds every target with `cargo +nightly fuzz build` (installing cargo-fuzz when
/// missing) and returns the folder of the binaries.
fn build(root: &Path) -> Result<PathBuf> {
    let has_fuzz = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_fuzz {
        let status = Command::new("cargo")
            .args(["install", "cargo-fuzz", "--locked"])
            .status()
            .context("running cargo install cargo-fuzz")?;
        if !status.success() {
            bail!("cargo install cargo-fuzz failed");
        }
    }
    let status = Command::new("cargo")
        .current_dir(root)
        .args([
            "+nightly",
            "fuzz",
            "build",
            "--release",
            "--fuzz-dir",
            "fuzz",
        ])
        .status()
        .context("running cargo +nightly fuzz build (is the nightly toolchain installed?)")?;
    if !status.success() {
        bail!("cargo fuzz build failed");
    }
    Ok(root.join("fuzz/target/x86_64-unknown-linux-gnu/release"))
}

/// Starts target `t` on its corpora for `seconds`.
fn spawn(root: &Path, bin_dir: &Path, t: &str, seconds: u64) -> Result<std::process::Child> {
    let artifacts = root.join("target/fuzz/artifacts").join(t);
    std::fs::create_dir_all(&artifacts)?;
    let mut cmd = Command::new(bin_dir.join(t));
    cmd.arg(format!("-max_total_time={seconds}"))
        .arg(format!("-max_len={MAX_LEN}"))
        .arg(format!("-timeout={}", targets::timeout_seconds(t)))
        .arg("-rss_limit_mb=3072")
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg(root.join("target/fuzz/corpus").join(t));
    for committed in ["fuzz/corpus", "fuzz/regressions"] {
        let d = root.join(committed).join(t);
        if d.is_dir() {
            cmd.arg(d);
        }
    }
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    cmd.spawn()
        .with_context(|| format!("starting {}", bin_dir.join(t).display()))
}

/// Writes target `t`'s seeds into `dir`; returns how many.
fn seed(root: &Path, t: &str, dir: &Path) -> Result<usize> {
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    let shared = root.join("../shared/fixtures/apple-tiny");
    let fixtures = root.join("fixtures");
    let mut packages = small_packages(&shared.join("packages"));
    packages.extend(small_packages(&root.join("target/test-packages")));
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    match t {
        "weight_bin" => {
            for (i, p) in packages.iter().enumerate() {
                seeds.push((format!("pkg{i}"), read(&p.join(WEIGHTS))?));
            }
            let dir = root.join("crates/sd-mil/tests/fixtures/weights");
            for e in std::fs::read_dir(&dir)? {
                let p = e?.path();
                seeds.push((file_name(&p), read(&p)?));
            }
        }
        "model_proto" => {
            for (i, p) in all_packages(&shared.join("packages")).iter().enumerate() {
                seeds.push((format!("pkg{i}"), read(&p.join(MODEL))?));
            }
        }
        "manifest" => {
            for (i, p) in packages.iter().take(3).enumerate() {
                seeds.push((format!("pkg{i}"), read(&p.join("Manifest.json"))?));
            }
        }
        "package" => {
            for (i, p) in packages.iter().enumerate() {
                let joined = targets::join_package(
                    &read(&p.join("Manifest.json"))?,
                    &read(&p.join(MODEL))?,
                    &read(&p.join(WEIGHTS))?,
                );
                seeds.push((format!("pkg{i}"), joined));
            }
        }
        "safetensors" => {
            for p in files_under(&fixtures, "safetensors") {
                if std::fs::metadata(&p)?.len() as usize <= MAX_LEN {
                    seeds.push((file_name(&p), read(&p)?));
                }
            }
        }
        "pickle" => {
            for p in [
                "models/sd1-micro-bin/text_encoder/pytorch_model.bin",
                "models/single-file/sd1-micro.ckpt",
            ] {
                seeds.push((file_name(Path::new(p)), read(&fixtures.join(p))?));
            }
        }
        "config" => {
            for (kind, part) in [(0u8, "unet"), (2, "vae"), (3, "text_encoder")] {
                for model in ["sd1-tiny", "sd2-tiny"] {
                    let p = fixtures
                        .join("models")
                        .join(model)
                        .join(part)
                        .join("config.json");
                    let mut bytes = vec![kind];
                    bytes.extend(read(&p)?);
                    seeds.push((format!("{model}-{part}"), bytes));
                }
            }
            let p = fixtures.join("models/controlnet-tiny/controlnet/config.json");
            if p.is_file() {
                let mut bytes = vec![1u8];
                bytes.extend(read(&p)?);
                seeds.push(("controlnet".into(), bytes));
            }
            let p = fixtures.join("models/safety-checker-tiny/safety_checker/config.json");
            if p.is_file() {
                let mut bytes = vec![4u8];
                bytes.extend(read(&p)?);
                seeds.push(("safety".into(), bytes));
            }
        }
        "image" => {
            for (w, h) in [(8, 8), (3, 5), (16, 1)] {
                let img = sd_runtime::pipeline::image::RgbImage {
                    width: w,
                    height: h,
                    data: (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect(),
                };
                let png = sd_runtime::pipeline::image::encode_png(&img, &[("k", "v")])
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                seeds.push((format!("rgb{w}x{h}.png"), png));
            }
        }
        "prompt" => {
            for (i, p) in [
                "a photo of an astronaut riding a horse on mars",
                "",
                "UPPER lower 123 !!! ... émigré 日本語 🙂 <|endoftext|>",
                "word, word; word's (emphasis:1.2) [negative]",
            ]
            .iter()
            .enumerate()
            {
                seeds.push((format!("p{i}"), p.as_bytes().to_vec()));
            }
        }
        "tokenizer_files" => {
            let tok = fixtures.join("models/sd1-tiny/tokenizer");
            let mut bytes = read(&tok.join("vocab.json"))?;
            bytes.push(0);
            bytes.extend(read(&tok.join("merges.txt"))?);
            if bytes.len() <= MAX_LEN {
                seeds.push(("sd1-tiny".into(), bytes));
            }
        }
        "recipe" => {
            seeds.push((
                "plain".into(),
                br#"{"unet.conv_in.weight": 6, "w": 8, "x": 16}"#.to_vec(),
            ));
            seeds.push((
                "analysis".into(),
                br#"{"model_version":"m","baselines":{"original":40.0},"recipes":{"recipe_6.00_bit_mixedpalette":{"w":6}},"recipe_psnr":{"recipe_6.00_bit_mixedpalette":41.0}}"#.to_vec(),
            ));
        }
        "hub_listing" => {
            seeds.push((
                "listing".into(),
                br#"{"id":"o/n","sha":"0123456789abcdef0123456789abcdef01234567","siblings":[{"rfilename":"unet/diffusion_pytorch_model.safetensors","size":9,"blobId":"1111111111111111111111111111111111111111","lfs":{"sha256":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","size":9,"pointerSize":130}},{"rfilename":"model_index.json","size":3,"blobId":"2222222222222222222222222222222222222222"}]}"#.to_vec(),
            ));
        }
        "mil_text" => {
            let dir = root.join("crates/sd-mil/tests/fixtures/mil_text");
            for name in ["apple_ios16.mil", "apple_ios17.mil", "apple_ios18.mil"] {
                seeds.push((name.into(), read(&dir.join(name))?));
            }
        }
        "compiled" => {
            for (i, p) in compiled_models(&root.join("target/test-packages"))
                .iter()
                .enumerate()
            {
                let files = [
                    "model.mil",
                    "coremldata.bin",
                    "metadata.json",
                    "weights/weight.bin",
                ]
                .map(|f| read(&p.join(f)).unwrap_or_default());
                let joined = targets::join_files(&files.each_ref().map(Vec::as_slice));
                if joined.len() <= MAX_LEN {
                    seeds.push((format!("mlmodelc{i}"), joined));
                }
            }
        }
        // Its seeds are the hand-written requests committed in `fuzz/corpus/http_request`.
        "http_request" => {}
        other => bail!("no seeds for `{other}`"),
    }
    let n = seeds.len();
    for (name, bytes) in seeds {
        std::fs::write(dir.join(format!("seed-{name}")), bytes)?;
    }
    Ok(n)
}

const MODEL: &str = "Data/com.apple.CoreML/model.mlmodel";
const WEIGHTS: &str = "Data/com.apple.CoreML/weights/weight.bin";

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Paths under `dir` (any depth) that `keep` accepts, sorted; accepted folders are not
/// entered.
fn find(dir: &Path, keep: &dyn Fn(&Path, bool) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let (p, is_dir) = (e.path(), e.file_type().is_ok_and(|t| t.is_dir()));
            if keep(&p, is_dir) {
                out.push(p);
            } else if is_dir {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `.mlpackage` folders with a model under `dir` (any depth), sorted.
fn all_packages(dir: &Path) -> Vec<PathBuf> {
    find(dir, &|p, is_dir| {
        is_dir && p.extension().is_some_and(|x| x == "mlpackage") && p.join(MODEL).is_file()
    })
}

/// The `.mlmodelc` folders under `dir` (the tests compile some into `target/test-packages`).
fn compiled_models(dir: &Path) -> Vec<PathBuf> {
    find(dir, &|p, is_dir| {
        is_dir && p.extension().is_some_and(|e| e == "mlmodelc")
    })
}

/// [`all_packages`] whose three files together fit [`MAX_LEN`].
fn small_packages(dir: &Path) -> Vec<PathBuf> {
    all_packages(dir)
        .into_iter()
        .filter(|p| {
            let size = |r: &str| {
                std::fs::metadata(p.join(r))
                    .map(|m| m.len())
                    .unwrap_or(u64::MAX)
            };
            size("Manifest.json")
                .saturating_add(size(MODEL))
                .saturating_add(size(WEIGHTS))
                < MAX_LEN as u64
        })
        .take(12)
        .collect()
}

/// Files under `dir` (any depth) with extension `ext`, sorted.
fn files_under(dir: &Path, ext: &str) -> Vec<PathBuf> {
    find(dir, &|p, is_dir| {
        !is_dir && p.extension().is_some_and(|x| x == ext)
    })
}
