//! `cargo xtask bench compress`: k-means palettization of one package by `sd compress` and by
//! coremltools' `palettize_weights` (mode kmeans, the same weight threshold), in one run on the
//! same machine: wall time and peak RSS of each (GNU `time`), and the squared error of every
//! palettized weight against the original — total, and the worst ratio of ours to theirs.

use crate::venv::{ensure, workspace_root};
use anyhow::{Context, Result, bail};
use sd_mil::{ConstValue, DType, Function};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

/// Arguments of `cargo xtask bench compress`.
#[derive(clap::Args)]
pub struct Args {
    /// The package to palettize (e.g. a full-size SD 1.5 UNet from `sd convert`).
    #[arg(long)]
    package: PathBuf,
    /// Bit widths, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "6,4")]
    nbits: Vec<u32>,
    /// Where the outputs go.
    #[arg(long, default_value = "target/bench-compress")]
    out: PathBuf,
    /// Skip coremltools (ours only).
    #[arg(long)]
    no_coremltools: bool,
}

/// Seconds and peak RSS (bytes) of a command run under GNU time.
fn timed(cmd: Command) -> Result<(f64, u64)> {
    let mut time = Command::new("/usr/bin/time");
    time.arg("-f")
        .arg("@@%e %M")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            time.env(k, v);
        }
    }
    let out = time.output().context("running /usr/bin/time (GNU time)")?;
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("{:?} failed: {err}", cmd.get_program());
    }
    let line = err
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("@@"))
        .context("no GNU time line")?;
    let mut it = line.split_whitespace();
    let secs: f64 = it.next().unwrap_or("0").parse()?;
    let kib: u64 = it.next().unwrap_or("0").parse()?;
    Ok((secs, kib * 1024))
}

/// Every const of a function by output name.
fn consts(f: &Function) -> HashMap<String, ConstValue> {
    f.operations
        .iter()
        .filter_map(|op| Some((op.outputs.first()?.name.clone(), op.const_value()?.clone())))
        .collect()
}

/// The dense values of every palettized weight of `f`, by output name.
fn decompressed(f: &Function) -> Result<HashMap<String, Vec<f32>>> {
    let by_name = consts(f);
    let lookup = |n: &str| by_name.get(n).cloned();
    let mut out = HashMap::new();
    for op in &f.operations {
        if op.op_type != "constexpr_lut_to_dense" {
            continue;
        }
        let get = |p: &str| sd_runtime::kernels::constexpr::bound_const(op, p, &lookup);
        let (values, _) = sd_runtime::kernels::constexpr::decompress(op, &get)
            .map_err(|e| anyhow::anyhow!("{}: {e}", op.name))?;
        out.insert(op.outputs[0].name.clone(), values);
    }
    Ok(out)
}

fn sse(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = *x as f64 - *y as f64;
            d * d
        })
        .sum()
}

/// Runs the benchmark.
pub fn run(a: Args) -> Result<()> {
    let root = workspace_root();
    let sd = root.join("target/release/sd");
    if !sd.exists() {
        bail!("build the release binary first: cargo build --release -p sd-cli");
    }
    std::fs::create_dir_all(&a.out)?;
    let python = if a.no_coremltools {
        None
    } else {
        Some(ensure(
            "coremltools-bench-venv",
            &root.join("xtask/bench/requirements.txt"),
        )?)
    };
    let original = sd_mil::package::read_package(&a.package)
        .with_context(|| format!("reading {}", a.package.display()))?;
    let orig_main = original.program.main().context("no main")?;
    let weights: Vec<(String, Vec<f32>)> = orig_main
        .operations
        .iter()
        .filter_map(|op| {
            let v = op.const_value()?;
            (matches!(v.ty.dtype, DType::F16 | DType::F32)
                && v.ty.rank() >= 2
                && v.ty.element_count() > 2048)
                .then(|| Some((op.outputs[0].name.clone(), v.to_f32_vec()?)))?
        })
        .collect();
    println!(
        "| bits | tool | time (s) | peak RSS (MiB) | weights | total squared error | worst weight vs coremltools |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &nbits in &a.nbits {
        let ours_pkg = a.out.join(format!("ours-{nbits}.mlpackage"));
        let mut cmd = Command::new(&sd);
        cmd.arg("compress")
            .arg(&a.package)
            .args(["--nbits", &nbits.to_string(), "--force", "-o"])
            .arg(&ours_pkg);
        let (ours_s, ours_rss) = timed(cmd)?;
        let ours = decompressed(
            sd_mil::package::read_package(&ours_pkg)?
                .program
                .main()
                .context("no main")?,
        )?;
        let theirs = match &python {
            Some(py) => {
                let ct_pkg = a.out.join(format!("coremltools-{nbits}.mlpackage"));
                if ct_pkg.exists() {
                    std::fs::remove_dir_all(&ct_pkg)?;
                }
                let mut cmd = Command::new(py);
                cmd.arg(root.join("xtask/bench/palettize_coremltools.py"))
                    .arg(&a.package)
                    .arg(&ct_pkg)
                    .arg(nbits.to_string());
                let (s, rss) = timed(cmd)?;
                let m = sd_mil::package::read_package(&ct_pkg)?;
                let d = decompressed(m.program.main().context("no main")?)?;
                Some((s, rss, d))
            }
            None => None,
        };
        let (mut ours_total, mut theirs_total, mut worst) = (0f64, 0f64, (0f64, String::new()));
        let mut counted = 0;
        for (name, orig) in &weights {
            let Some(o) = ours.get(name) else { continue };
            let e_ours = sse(o, orig);
            ours_total += e_ours;
            counted += 1;
            if let Some((_, _, t)) = &theirs {
                let t = t
                    .get(&format!("{name}_palettized"))
                    .or_else(|| t.get(name))
                    .with_context(|| format!("coremltools did not palettize {name}"))?;
                let e_theirs = sse(t, orig);
                theirs_total += e_theirs;
                let ratio = if e_theirs > 0.0 {
                    e_ours / e_theirs
                } else {
                    1.0
                };
                if ratio > worst.0 {
                    worst = (ratio, name.clone());
                }
            }
        }
        println!(
            "| {nbits} | sd compress | {ours_s:.1} | {:.0} | {counted} | {ours_total:.6e} | {:.4} ({}) |",
            ours_rss as f64 / (1 << 20) as f64,
            worst.0,
            worst.1
        );
        if let Some((s, rss, _)) = &theirs {
            println!(
                "| {nbits} | coremltools palettize_weights | {s:.1} | {:.0} | {counted} | {theirs_total:.6e} | 1 |",
                *rss as f64 / (1 << 20) as f64
            );
            println!(
                "| {nbits} | ratio | {:.1}× faster | {:.2}× | | {:.4} | |",
                s / ours_s,
                ours_rss as f64 / *rss as f64,
                ours_total / theirs_total
            );
        }
    }
    Ok(())
}
