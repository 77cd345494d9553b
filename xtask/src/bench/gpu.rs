//! `cargo xtask bench gpu`: prepares one call on the GPU machine, which has the driver, CUDA
//! libraries and PyTorch but no Rust toolchain and no network. Builds here what runs there —
//! `sd` with the CUDA engine (`--features cuda`) and the `cuda_engine` test binary, stripped
//! and xz-compressed — and packs Apple's tiny fixtures and the diffusers wheel beside them in
//! `target/bench-gpu/` (under the 64 MiB a call may carry, with the working tree).
//!
//! On the GPU machine, from the repository root, `bash xtask/bench/gpu/run.sh
//! target/bench-gpu` then runs, in one call: the apple-tiny PSNR table, the tiny pipeline
//! against diffusers and the CPU, `sd generate --device cuda` beside `--device cpu`, and on
//! random full-size SD 1.5 models made there (UNet in SPLIT_EINSUM and ORIGINAL, VAE decoder,
//! text encoder) the load, first prediction, graph-replay median, memory and per-op profile
//! of each, a timed 20-step 512² image, and PyTorch beside them (eager and torch.compile
//! "reduce-overhead") on the same card.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::venv::workspace_root;

/// Arguments of `cargo xtask bench gpu`.
#[derive(clap::Args)]
pub struct Args {
    /// Output folder (relative paths from the workspace root).
    #[arg(long, default_value = "target/bench-gpu")]
    out: PathBuf,
    /// Apple's tiny fixtures folder [default: ../shared/fixtures/apple-tiny or $SD_FIXTURES].
    #[arg(long)]
    fixtures: Option<PathBuf>,
    /// The diffusers wheel version fetched with pip (PyTorch's peer needs it there).
    #[arg(long, default_value = "0.35.2")]
    diffusers: String,
}

fn run_checked(cmd: &mut Command, what: &str) -> Result<std::process::Output> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// Strips `binary` into `out/name` and compresses it to `out/name.xz`.
fn pack_binary(binary: &Path, out: &Path, name: &str) -> Result<()> {
    let stripped = out.join(name);
    run_checked(
        Command::new("strip").arg("-o").arg(&stripped).arg(binary),
        "strip",
    )?;
    run_checked(
        Command::new("xz").args(["-T2", "-6", "-f"]).arg(&stripped),
        "xz",
    )?;
    Ok(())
}

/// The `cuda_engine` test executable cargo built (from its JSON messages).
fn test_executable(stdout: &[u8]) -> Option<PathBuf> {
    String::from_utf8_lossy(stdout).lines().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let name = v.get("target")?.get("name")?.as_str()?;
        (name == "cuda_engine")
            .then(|| v.get("executable")?.as_str().map(PathBuf::from))
            .flatten()
    })
}

/// Runs the command.
pub fn run(a: Args) -> Result<()> {
    let root = workspace_root();
    let out = root.join(&a.out);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("building sd with the CUDA engine …");
    run_checked(
        Command::new(&cargo).current_dir(&root).args([
            "build",
            "--release",
            "-p",
            "sd-cli",
            "--features",
            "cuda",
            "--bin",
            "sd",
        ]),
        "cargo build sd",
    )?;
    pack_binary(&root.join("target/release/sd"), &out, "sd")?;
    eprintln!("building the cuda_engine tests …");
    let built = run_checked(
        Command::new(&cargo).current_dir(&root).args([
            "test",
            "--release",
            "-p",
            "sd-runtime",
            "--features",
            "cuda-engine",
            "--test",
            "cuda_engine",
            "--no-run",
            "--message-format=json",
        ]),
        "cargo test --no-run",
    )?;
    let exe = test_executable(&built.stdout).context("no cuda_engine test executable built")?;
    pack_binary(&exe, &out, "cuda_engine")?;
    let fixtures = a
        .fixtures
        .or_else(|| std::env::var_os("SD_FIXTURES").map(PathBuf::from))
        .unwrap_or_else(|| root.join("../shared/fixtures/apple-tiny"));
    if !fixtures.join("packages").is_dir() {
        bail!(
            "no apple-tiny fixtures at {} (give --fixtures)",
            fixtures.display()
        );
    }
    eprintln!("packing {} …", fixtures.display());
    let parent = fixtures.parent().context("fixtures folder has no parent")?;
    let base = fixtures
        .file_name()
        .context("fixtures folder has no name")?;
    let tarball = out.join("apple-tiny.tar.xz");
    run_checked(
        Command::new("tar")
            .env("XZ_OPT", "-T2 -6")
            .arg("-cJf")
            .arg(&tarball)
            .arg("-C")
            .arg(parent)
            .arg(Path::new(base).join("packages"))
            .arg(Path::new(base).join("reference")),
        "tar",
    )?;
    let wheel = format!("diffusers-{}-py3-none-any.whl", a.diffusers);
    if !out.join(&wheel).is_file() {
        eprintln!("fetching {wheel} …");
        run_checked(
            Command::new("python3")
                .args(["-m", "pip", "download", "-q", "--no-deps", "-d"])
                .arg(&out)
                .arg(format!("diffusers=={}", a.diffusers)),
            "pip download diffusers",
        )?;
    }
    let anchor = root.join("../shared/tools/torch_gpu_anchor.py");
    if anchor.is_file() {
        // The source is read-only: replace an earlier copy rather than write through it.
        let dst = out.join("torch_gpu_anchor.py");
        let _ = std::fs::remove_file(&dst);
        std::fs::copy(&anchor, &dst)?;
    }
    let rel = a.out.display();
    println!(
        "ready: {}\non the GPU machine, from the repository root (carry `{rel}`):\n  bash xtask/bench/gpu/run.sh {rel}",
        out.display()
    );
    Ok(())
}
