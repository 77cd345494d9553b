//! `sd convert`: diffusers weights → Core ML packages, with the flags of Apple's `torch2coreml`.
//! The work is `sd_cli::conversion`; this file turns the flags into a job and prints its events.

use crate::hub_fetch::{Local, localize};
use crate::progress::ModelProgress;
use crate::recipe_file::{RecipeChoice, read_recipe};
use anyhow::{Result, bail};
use sd_cli::check::CheckRow;
use sd_cli::conversion::{
    CheckOptions, ComponentSelection, ConversionEvent, ConversionJob, ConversionOptions, chunks,
    needs_no_model, run_job,
};
use sd_cli::hub::RepoKind;
use sd_convert::clip::ClipOutputs;
use sd_convert::{AttentionImpl, Component, ConvertOptions, DeploymentTarget, Precision};
use std::path::PathBuf;

/// Arguments of `sd convert` (names as Apple's `python -m python_coreml_stable_diffusion.torch2coreml`).
#[derive(clap::Args)]
pub struct Args {
    /// A local diffusers folder or single-file checkpoint, or a Hugging Face Hub id (downloaded
    /// into the Hub cache: `HF_HOME`, `HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_OFFLINE` apply; with
    /// `--variant` only that weight variant is fetched).
    #[arg(long, default_value = "CompVis/stable-diffusion-v1-4")]
    model_version: String,
    /// With a Hub id: the branch, tag or commit (default main).
    #[arg(long)]
    revision: Option<String>,
    /// For a single-file checkpoint: a diffusers folder whose `<part>/config.json` (and
    /// `tokenizer/` for the Swift resources) describe it, as diffusers' `from_single_file(config=…)`.
    /// Without it the configuration is inferred from the tensors (standard SD 1.x/2.x sizes).
    #[arg(long, value_name = "DIR")]
    config: Option<PathBuf>,
    /// Output directory.
    #[arg(short = 'o', default_value = ".")]
    output: PathBuf,
    /// Convert the text encoder.
    #[arg(long)]
    convert_text_encoder: bool,
    /// Convert the UNet.
    #[arg(long)]
    convert_unet: bool,
    /// Convert the VAE decoder.
    #[arg(long)]
    convert_vae_decoder: bool,
    /// Convert the VAE encoder (image-to-image).
    #[arg(long)]
    convert_vae_encoder: bool,
    /// Convert the safety checker.
    #[arg(long)]
    convert_safety_checker: bool,
    /// Convert a multilingual text-encoder projection (the `Linear` Apple's
    /// `multilingual_projection.py --input-path` takes, saved as safetensors) into
    /// `MultilingualTextEncoderProjection.mlpackage`.
    #[arg(long, value_name = "PATH")]
    convert_multilingual_projection: Option<PathBuf>,
    /// Convert these ControlNets (local diffusers folders or Hub ids, fetched as `--model-version`).
    #[arg(long, num_args = 1..)]
    convert_controlnet: Vec<String>,
    /// Write a control-unet (with `additional_residual_*` inputs) instead of a plain UNet.
    #[arg(long)]
    unet_support_controlnet: bool,
    /// ORIGINAL, SPLIT_EINSUM or SPLIT_EINSUM_V2.
    #[arg(long, default_value = "SPLIT_EINSUM")]
    attention_implementation: String,
    /// Latent height (default: the UNet's sample_size; image = latent × 8).
    #[arg(long)]
    latent_h: Option<usize>,
    /// Latent width.
    #[arg(long)]
    latent_w: Option<usize>,
    /// UNet batch 1 instead of 2.
    #[arg(long)]
    unet_batch_one: bool,
    /// Text tokens.
    #[arg(long, default_value_t = 77)]
    text_token_sequence_length: usize,
    /// macOS13, macOS14, macOS15, iOS16, iOS17 or iOS18.
    #[arg(long, default_value = "macOS13")]
    min_deployment_target: String,
    /// The text encoder returns the penultimate hidden state as `hidden_embeds` (SDXL form).
    #[arg(long)]
    text_encoder_hidden_embeds: bool,
    /// Weight file variant to read ("fp16"); by default plain files, else the fp16 variant.
    #[arg(long)]
    variant: Option<String>,
    /// Compute in fp32 (weights and activations) instead of fp16.
    #[arg(long)]
    fp32: bool,
    /// Replace existing packages (by default they are skipped).
    #[arg(long)]
    force: bool,
    /// Also write Resources/ for Apple's Swift CLI: each package compiled to .mlmodelc under its
    /// Swift name (Unet.mlmodelc, UnetChunk1.mlmodelc, …), plus vocab.json and merges.txt.
    #[arg(long)]
    bundle_resources_for_swift_cli: bool,
    /// Run every written package against an fp32 ORIGINAL-attention build of the same network on
    /// random inputs and print PSNR; fail below 35 dB.
    #[arg(long)]
    check_output_correctness: bool,
    /// Also check against diffusers itself, run by this Python (default `python3`), which must
    /// import torch, diffusers, transformers and safetensors. Implies --check-output-correctness.
    #[arg(long, value_name = "PYTHON", num_args = 0..=1, default_missing_value = "python3")]
    torch_reference: Option<String>,
    /// Palettize text encoder, UNet and ControlNet weights with optimal k-means (1, 2, 4, 6, 8).
    #[arg(long)]
    quantize_nbits: Option<u8>,
    /// Palettize the UNet (and control-unet) by a mixed-bit recipe: a JSON {weight name: bits},
    /// or a pre-analysis file (`sd compress --analyze`) with --selected-recipe or --target-psnr.
    /// Weights it does not name use --quantize-nbits, or stay uncompressed without it
    #[arg(long, value_name = "RECIPE.json", alias = "pre-analysis-json-path")]
    mixed_bit_recipe: Option<PathBuf>,
    /// The recipe of a pre-analysis file to apply, by name (`recipe_4.50_bit_mixedpalette`).
    #[arg(long, requires = "mixed_bit_recipe", conflicts_with = "target_psnr")]
    selected_recipe: Option<String>,
    /// Apply the smallest recipe of a pre-analysis file whose measured PSNR reaches this (dB).
    #[arg(long, requires = "mixed_bit_recipe")]
    target_psnr: Option<f64>,
    /// Also write the UNet as two chunks (`…_unet_chunk1/2.mlpackage`), after compression.
    #[arg(long)]
    chunk_unet: bool,
}

impl Args {
    /// The job these flags describe.
    fn job(self) -> Result<ConversionJob> {
        let controlnets = self
            .convert_controlnet
            .iter()
            .map(|c| {
                Ok(localize(c, None, self.variant.as_deref())?
                    .path()
                    .to_string_lossy()
                    .into_owned())
            })
            .collect::<Result<Vec<_>>>()?;
        let selection = ComponentSelection {
            text_encoder: self.convert_text_encoder,
            unet: self.convert_unet,
            unet_support_controlnet: self.unet_support_controlnet,
            vae_decoder: self.convert_vae_decoder,
            vae_encoder: self.convert_vae_encoder,
            safety_checker: self.convert_safety_checker,
            controlnets,
            multilingual_projection: self.convert_multilingual_projection.clone(),
        };
        let components = selection.components()?;
        let unet_recipe = match &self.mixed_bit_recipe {
            None => None,
            Some(path) => {
                if !components.iter().any(chunks) {
                    bail!("--mixed-bit-recipe applies to the UNet: give --convert-unet");
                }
                let choice = RecipeChoice {
                    selected: self.selected_recipe.as_deref(),
                    target_psnr: self.target_psnr,
                };
                Some(read_recipe(path, choice)?)
            }
        };
        let (model, variant) = self.local_model(&components)?;
        let convert = ConvertOptions {
            attention: self.attention_implementation.parse::<AttentionImpl>()?,
            precision: if self.fp32 {
                Precision::Float32
            } else {
                Precision::Float16
            },
            target: self.min_deployment_target.parse::<DeploymentTarget>()?,
            latent_h: self.latent_h,
            latent_w: self.latent_w,
            unet_batch_one: self.unet_batch_one,
            seq_len: self.text_token_sequence_length,
            variant,
            text_outputs: if self.text_encoder_hidden_embeds {
                ClipOutputs::HiddenEmbeds
            } else {
                ClipOutputs::LastHidden
            },
            model_version: self.model_version.clone(),
        };
        let check = (self.check_output_correctness || self.torch_reference.is_some()).then_some(
            CheckOptions {
                torch_python: self.torch_reference,
            },
        );
        Ok(ConversionJob {
            model,
            config: self.config,
            components,
            output: self.output,
            options: ConversionOptions {
                convert,
                quantize_nbits: self.quantize_nbits,
                unet_recipe,
                chunk_unet: self.chunk_unet,
                force: self.force,
                check,
                bundle_resources_for_swift_cli: self.bundle_resources_for_swift_cli,
            },
        })
    }
}

impl Args {
    /// The model to read (a Hub id fetched) and the weight variant to read from it.
    fn local_model(&self, components: &[Component]) -> Result<(PathBuf, Option<String>)> {
        if needs_no_model(components) {
            return Ok((PathBuf::from(&self.model_version), self.variant.clone()));
        }
        match localize(
            &self.model_version,
            self.revision.as_deref(),
            self.variant.as_deref(),
        )? {
            Local::Path(p) => Ok((p, self.variant.clone())),
            Local::Hub(f) if f.kind == RepoKind::CoreMl => bail!(
                "{} holds Core ML packages already: there is nothing to convert (use it with \
                 `sd generate --model {}`)",
                f.repo,
                f.repo
            ),
            Local::Hub(f) => Ok((f.path, f.weight_variant)),
        }
    }
}

/// Runs `sd convert`.
pub fn run(a: Args) -> Result<()> {
    let job = a.job()?;
    let mut printer = Printer::default();
    run_job(&job, &mut |e| printer.show(e))?;
    Ok(())
}

/// Shows a job's events: a progress bar per model on stderr, the check's table on stdout.
#[derive(Default)]
struct Printer {
    bar: Option<ModelProgress>,
}

impl Printer {
    fn show(&mut self, e: ConversionEvent) {
        match e {
            ConversionEvent::Skipped {
                index,
                total,
                component,
                path,
            } => eprintln!(
                "[{index}/{total}] {}: {} exists, skipped (--force replaces it)",
                component.suffix(),
                path.display()
            ),
            ConversionEvent::ModelStarted {
                index,
                total,
                component,
                stages,
            } => {
                let label = format!("[{index}/{total}] {}", component.suffix());
                self.bar = Some(ModelProgress::new(label, stages));
            }
            ConversionEvent::Stage(s) => {
                if let Some(b) = &self.bar {
                    b.stage(s.to_string());
                }
            }
            ConversionEvent::StageDone(d) => {
                if let Some(b) = &self.bar {
                    b.done(d.to_string());
                }
            }
            ConversionEvent::ModelFinished(p) => {
                if let Some(b) = self.bar.take() {
                    b.finish(format!(
                        "{} ({:.1} MB) in {:.1} s",
                        p.path.display(),
                        p.weight_bytes as f64 / 1e6,
                        p.seconds
                    ));
                }
            }
            ConversionEvent::CheckStarted { torch_versions } => {
                if let Some(v) = torch_versions {
                    eprintln!("PyTorch reference: {v}");
                }
                println!(
                    "{:<28} {:<24} {:>16} {:>16}",
                    "model", "output", "vs fp32 (dB)", "vs PyTorch (dB)"
                );
            }
            ConversionEvent::CheckRow(r) => print_row(&r),
            ConversionEvent::MissingTokenizerFile { path } => eprintln!(
                "warning: {} not found; the Swift CLI needs it in Resources/ (for a single-file \
                 checkpoint, --config names a diffusers folder holding tokenizer/)",
                path.display()
            ),
            ConversionEvent::ResourcesWritten { dir, compiled } => {
                eprintln!(
                    "Resources for the Swift CLI written to {} ({} compiled models)",
                    dir.display(),
                    compiled.len()
                );
            }
        }
    }
}

/// One line of the check's table.
fn print_row(r: &CheckRow) {
    let vs_torch = r
        .vs_torch_db
        .map_or_else(|| "-".to_string(), |db| format!("{db:.1}"));
    println!(
        "{:<28} {:<24} {:>16.1} {vs_torch:>16}",
        r.component.suffix(),
        r.output,
        r.vs_fp32_db
    );
}
