//! `cargo xtask reference`: regenerate the reference fixtures from diffusers / transformers /
//! numpy / PyTorch (CPU, float32, fixed seeds), or write a full-size random-weight model.
//!
//! Every `xtask/reference/gen_*.py` runs in name order with `--out <dir>`, inside a virtual
//! environment made from `xtask/reference/requirements.txt` (`target/reference-venv`). Two runs
//! give byte-identical files. `--full sd15|sd21` instead writes a full-size random-weight diffusers
//! folder (fp16 safetensors) under `target/full/<name>` for benchmarks; it is never committed.

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::venv;

/// Which full-size architecture `--full` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FullModel {
    /// Stable Diffusion 1.5 (CLIP ViT-L/14 text encoder, 860M-parameter UNet, 512x512).
    Sd15,
    /// Stable Diffusion 2.1 (OpenCLIP ViT-H text encoder, linear projections, v-prediction, 768x768).
    Sd21,
}

impl FullModel {
    fn name(self) -> &'static str {
        match self {
            FullModel::Sd15 => "sd15",
            FullModel::Sd21 => "sd21",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Write a full-size random-weight diffusers folder (fp16) to target/full/<name> instead of
    /// the fixtures (for benchmarks and scale tests; not committed).
    #[arg(long, value_enum)]
    pub full: Option<FullModel>,

    /// Fixtures folder to (re)write (relative paths are taken from the workspace root). With
    /// `--full`: the folder to write the model to (default target/full/<name>).
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// Run only the generators whose file name contains this text (e.g. `tokenizer`).
    #[arg(long)]
    pub only: Option<String>,
}

/// The generator scripts, `xtask/reference/gen_*.py`, in name order.
pub fn generators(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut scripts = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with("gen_") && name.ends_with(".py") && path.is_file() {
            scripts.push(path);
        }
    }
    scripts.sort();
    Ok(scripts)
}

pub fn run(args: Args) -> Result<()> {
    let root = venv::workspace_root();
    let scripts_dir = root.join("xtask/reference");
    let python = venv::ensure("reference-venv", &scripts_dir.join("requirements.txt"))?;
    let absolute = |p: PathBuf| if p.is_absolute() { p } else { root.join(p) };

    if let Some(full) = args.full {
        let out = absolute(
            args.out
                .unwrap_or_else(|| PathBuf::from("target/full").join(full.name())),
        );
        return run_script(
            &python,
            &scripts_dir.join("full_model.py"),
            &[
                "--model".as_ref(),
                full.name().as_ref(),
                "--out".as_ref(),
                out.as_os_str(),
            ],
        );
    }

    let out = absolute(args.out.unwrap_or_else(|| PathBuf::from("fixtures")));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let scripts = generators(&scripts_dir)?;
    if scripts.is_empty() {
        bail!("no gen_*.py in {}", scripts_dir.display());
    }
    for script in &scripts {
        let name = script.file_name().unwrap().to_string_lossy();
        if let Some(only) = &args.only
            && !name.contains(only.as_str())
        {
            continue;
        }
        run_script(&python, script, &["--out".as_ref(), out.as_os_str()])?;
    }
    println!("reference fixtures written to {}", out.display());
    Ok(())
}

fn run_script(python: &Path, script: &Path, args: &[&std::ffi::OsStr]) -> Result<()> {
    eprintln!("==> {} {}", script.display(), display_args(args));
    let status = Command::new(python)
        .arg(script)
        .args(args)
        .current_dir(script.parent().unwrap())
        // One thread and fixed hashing: the outputs must not depend on the machine's load.
        .env("OMP_NUM_THREADS", "1")
        .env("MKL_NUM_THREADS", "1")
        .env("PYTHONHASHSEED", "0")
        .env("HF_HUB_OFFLINE", "1")
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    if !status.success() {
        bail!("{} failed ({status})", script.display());
    }
    Ok(())
}

fn display_args(args: &[&std::ffi::OsStr]) -> String {
    args.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
