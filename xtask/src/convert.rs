//! `cargo xtask convert [MODEL]`: the maintainers' conversion run, end to end.
//!
//! Converts what image generation needs (text encoder, UNet, both VAE halves, the safety
//! checker when the model has one) with `sd_cli`'s conversion job, runs its correctness check
//! (each package in sd-runtime against an fp32 ORIGINAL-attention build: PSNR ≥ 35 dB), checks
//! every package (chunks included) with coremltools when its virtual environment can be had
//! (`cargo xtask check-mlpackage`'s; skipped, not failed, when it cannot), and prints one table:
//! model, size, ops, PSNR, coremltools, time — then generates one image from the packages
//! through the pipeline `sd generate` runs.

mod image;
mod table;

use anyhow::{Result, bail};
use sd_cli::conversion::{
    CheckOptions, ConversionError, ConversionEvent, ConversionJob, ConversionOptions,
    ConversionReport, open_pipeline, run_job,
};
use sd_cli::model_cache::key::readable_stem;
use sd_convert::{AttentionImpl, Component, ConvertOptions, Precision};
use std::collections::HashMap;
use std::path::PathBuf;
use table::CoremltoolsStatus;

/// Arguments of `cargo xtask convert`.
#[derive(clap::Args)]
pub struct Args {
    /// A diffusers folder or single-file checkpoint (relative paths from the workspace root).
    #[arg(default_value = "fixtures/models/sd1-tiny")]
    model: PathBuf,
    /// For a single-file checkpoint: a diffusers folder with its configs.
    #[arg(long, value_name = "DIR")]
    config: Option<PathBuf>,
    /// ORIGINAL, SPLIT_EINSUM or SPLIT_EINSUM_V2.
    #[arg(long, default_value = "SPLIT_EINSUM")]
    attention_implementation: String,
    /// Palettize text encoder and UNet weights to this many bits (1, 2, 4, 6, 8).
    #[arg(long)]
    quantize_nbits: Option<u8>,
    /// Also write the UNet as two chunks.
    #[arg(long)]
    chunk_unet: bool,
    /// Compute in fp32 instead of fp16.
    #[arg(long)]
    fp32: bool,
    /// Output folder (replaced packages; relative paths from the workspace root).
    #[arg(short = 'o', long = "output", default_value = "target/xtask-convert")]
    output: PathBuf,
    /// Skip the coremltools check.
    #[arg(long)]
    no_coremltools: bool,
    /// Denoising steps of the final image (0: no image).
    #[arg(long, default_value_t = 20)]
    image_steps: usize,
}

/// Runs the conversion, the checks and the table; fails when a check fails.
pub fn run(a: Args) -> Result<()> {
    let root = crate::venv::workspace_root();
    let model = root.join(&a.model);
    let config = a.config.as_ref().map(|c| root.join(c));
    let pipeline = open_pipeline(&model, config.as_deref())?;
    let mut components = vec![
        Component::TextEncoder,
        Component::Unet,
        Component::VaeDecoder,
        Component::VaeEncoder,
    ];
    if pipeline.has("safety_checker") {
        components.push(Component::SafetyChecker);
    }
    let job = ConversionJob {
        model: model.clone(),
        config,
        components,
        output: root.join(&a.output),
        options: ConversionOptions {
            convert: ConvertOptions {
                attention: a.attention_implementation.parse::<AttentionImpl>()?,
                precision: if a.fp32 {
                    Precision::Float32
                } else {
                    Precision::Float16
                },
                model_version: readable_stem(&model),
                ..ConvertOptions::default()
            },
            quantize_nbits: a.quantize_nbits,
            unet_recipe: None,
            chunk_unet: a.chunk_unet,
            force: true,
            check: Some(CheckOptions::default()),
            bundle_resources_for_swift_cli: false,
        },
    };
    let (report, psnr_failure) = match run_job(&job, &mut log_event) {
        Ok(r) => (r, None),
        Err(ConversionError::CheckFailed { worst_db, report }) => (*report, Some(worst_db)),
        Err(e) => return Err(e.into()),
    };
    let mut rows = table::rows(&report);
    if a.no_coremltools {
        eprintln!("coremltools check skipped (--no-coremltools)");
    } else if let Some(verdicts) = coremltools_verdicts(&report)? {
        table::set_verdicts(&mut rows, &verdicts);
    }
    println!("model: {}", model.display());
    print!("{}", table::render(&rows));
    if a.image_steps > 0 && psnr_failure.is_none() {
        let model_dir = job.config.clone().unwrap_or_else(|| model.clone());
        let row = image::generate_one(&job.output, &model_dir, a.image_steps)?;
        println!(
            "image: {} ({}x{}, {} UNet calls, {:.1} s with loading)",
            row.path.display(),
            row.width,
            row.height,
            row.steps,
            row.seconds
        );
    }
    let mut failures = Vec::new();
    if let Some(db) = psnr_failure {
        failures.push(format!(
            "PSNR {db:.1} dB < {} dB",
            sd_cli::check::PSNR_FLOOR_DB
        ));
    }
    for r in &rows {
        if let CoremltoolsStatus::Failed(e) = &r.coremltools {
            failures.push(format!("coremltools rejects {}: {e}", r.path.display()));
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("\n"));
    }
    Ok(())
}

/// One plain stderr line per step.
fn log_event(e: ConversionEvent) {
    match e {
        ConversionEvent::ModelStarted {
            index,
            total,
            component,
            ..
        } => eprintln!("[{index}/{total}] {}", component.suffix()),
        ConversionEvent::Stage(s) => eprintln!("  {s}"),
        ConversionEvent::StageDone(d) => eprintln!("    {d}"),
        ConversionEvent::CheckStarted { .. } => eprintln!("checking against fp32 ORIGINAL"),
        _ => {}
    }
}

/// coremltools' verdict per package path, or `None` (said on stderr) when coremltools cannot
/// be had here.
fn coremltools_verdicts(
    report: &ConversionReport,
) -> Result<Option<HashMap<PathBuf, Result<(), String>>>> {
    let python = match crate::check_mlpackage::coremltools_python() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("coremltools check skipped: {e:#}");
            return Ok(None);
        }
    };
    let packages: Vec<PathBuf> = report
        .packages
        .iter()
        .flat_map(|p| {
            std::iter::once(p.path.clone()).chain(p.chunks.iter().map(|c| c.path.clone()))
        })
        .collect();
    let verdicts = crate::check_mlpackage::verdicts(&python, &packages)?;
    Ok(Some(
        packages
            .iter()
            .zip(verdicts)
            .map(|(p, v)| {
                let result = if v.ok {
                    Ok(())
                } else {
                    Err(v.error.unwrap_or_else(|| "failed".into()))
                };
                (p.clone(), result)
            })
            .collect(),
    ))
}
