//! `sd convert`: diffusers weights → Core ML packages, with the flags of Apple's `torch2coreml`.

use crate::check::{CheckSetup, Written, check_correctness};
use crate::progress::ModelProgress;
use crate::torch_reference::TorchReference;
use anyhow::{Context, Result, bail};
use sd_convert::clip::ClipOutputs;
use sd_convert::{AttentionImpl, Component, ConvertOptions, DeploymentTarget, Pipeline, Precision};
use sd_mil::package::{WriteOptions, write_package};
use std::path::{Path, PathBuf};

/// Arguments of `sd convert` (names as Apple's `python -m python_coreml_stable_diffusion.torch2coreml`).
#[derive(clap::Args)]
pub struct Args {
    /// Local diffusers folder, or a Hub id already in the Hugging Face cache.
    #[arg(long, default_value = "CompVis/stable-diffusion-v1-4")]
    model_version: String,
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
    /// Convert these ControlNets (local diffusers folders or cached Hub ids).
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
    /// Lay the packages out as the Swift CLI's Resources/ (plus vocab.json and merges.txt).
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
    /// Also write the UNet as two chunks (`…_unet_chunk1/2.mlpackage`), after compression.
    #[arg(long)]
    chunk_unet: bool,
}

/// Resolves `--model-version`: a local folder, a single-file checkpoint (`.safetensors`,
/// `.ckpt`, … in the original LDM layout), or a Hub id found in the Hugging Face cache.
fn resolve(model_version: &str) -> Result<PathBuf> {
    let p = PathBuf::from(model_version);
    if p.is_dir() || p.is_file() {
        return Ok(p);
    }
    let hub = std::env::var_os("HF_HUB_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
        });
    if let Some(hub) = hub {
        let repo = hub.join(format!("models--{}", model_version.replace('/', "--")));
        let rev = std::fs::read_to_string(repo.join("refs/main")).ok();
        if let Some(rev) = rev {
            let snap = repo.join("snapshots").join(rev.trim());
            if snap.is_dir() {
                return Ok(snap);
            }
        }
    }
    bail!(
        "`{model_version}` is neither a local diffusers folder or checkpoint file nor in the Hugging Face cache; download it first \
         (e.g. `huggingface-cli download {model_version}`) or pass its folder"
    )
}

/// Runs `sd convert`.
pub fn run(a: Args) -> Result<()> {
    // The projection alone needs no diffusers folder.
    let projection_only = a.convert_multilingual_projection.is_some()
        && !(a.convert_text_encoder
            || a.convert_unet
            || a.convert_vae_decoder
            || a.convert_vae_encoder
            || a.convert_safety_checker
            || !a.convert_controlnet.is_empty());
    let dir = if projection_only {
        std::env::current_dir()?
    } else {
        resolve(&a.model_version)?
    };
    let pipeline = if dir.is_file() {
        Pipeline::open_single_file(&dir, a.config.as_deref())?
    } else {
        if a.config.is_some() {
            bail!(
                "--config applies to single-file checkpoints; {} is a folder",
                dir.display()
            );
        }
        Pipeline::open(&dir)?
    };
    if a.torch_reference.is_some() && dir.is_file() {
        bail!(
            "--torch-reference runs diffusers on a diffusers folder; {} is a single file \
             (convert the folder, or check against the fp32 reference alone)",
            dir.display()
        );
    }
    // Probe the Python stack before converting anything, so a missing package fails fast.
    let torch = match &a.torch_reference {
        Some(python) => {
            let work = std::env::temp_dir().join(format!("sd-torch-ref-{}", std::process::id()));
            Some(TorchReference::find(python, &work)?)
        }
        None => None,
    };
    let opts = ConvertOptions {
        attention: a.attention_implementation.parse::<AttentionImpl>()?,
        precision: if a.fp32 {
            Precision::Float32
        } else {
            Precision::Float16
        },
        target: a.min_deployment_target.parse::<DeploymentTarget>()?,
        latent_h: a.latent_h,
        latent_w: a.latent_w,
        unet_batch_one: a.unet_batch_one,
        seq_len: a.text_token_sequence_length,
        variant: a.variant.clone(),
        text_outputs: if a.text_encoder_hidden_embeds {
            ClipOutputs::HiddenEmbeds
        } else {
            ClipOutputs::LastHidden
        },
        model_version: a.model_version.clone(),
    };
    let mut components = Vec::new();
    if a.convert_text_encoder {
        components.push(Component::TextEncoder);
    }
    if a.convert_unet {
        components.push(if a.unet_support_controlnet {
            Component::ControlUnet
        } else {
            Component::Unet
        });
    }
    if a.convert_vae_decoder {
        components.push(Component::VaeDecoder);
    }
    if a.convert_vae_encoder {
        components.push(Component::VaeEncoder);
    }
    for c in &a.convert_controlnet {
        components.push(Component::ControlNet(resolve(c)?));
    }
    if a.convert_safety_checker {
        components.push(Component::SafetyChecker);
    }
    if let Some(p) = &a.convert_multilingual_projection {
        components.push(Component::MultilingualProjection(p.clone()));
    }
    if components.is_empty() {
        bail!(
            "nothing to convert: pass --convert-text-encoder, --convert-unet, --convert-vae-decoder, --convert-vae-encoder, --convert-safety-checker, --convert-controlnet or --convert-multilingual-projection"
        );
    }
    std::fs::create_dir_all(&a.output)
        .with_context(|| format!("creating {}", a.output.display()))?;
    let mut written = Vec::new();
    let total = components.len();
    for (i, c) in components.into_iter().enumerate() {
        let dest = a.output.join(c.package_name(&a.model_version));
        let label = format!("[{}/{total}] {}", i + 1, c.suffix());
        if dest.exists() && !a.force {
            eprintln!(
                "{label}: {} exists, skipped (--force replaces it)",
                dest.display()
            );
            written.push(Written {
                component: c,
                path: dest,
            });
            continue;
        }
        let is_unet = matches!(c, Component::Unet | Component::ControlUnet);
        // Compress first, then chunk (Apple's tool chunks first and leaves the chunks
        // uncompressed). VAE halves and the safety checker stay uncompressed, as in Apple's
        // converter; so does the projection (Apple's script never compresses it).
        let compress = a.quantize_nbits.filter(|_| {
            !matches!(
                c,
                Component::VaeDecoder
                    | Component::VaeEncoder
                    | Component::SafetyChecker
                    | Component::MultilingualProjection(_)
            )
        });
        let chunk = a.chunk_unet && is_unet;
        let stages = 2 + u64::from(compress.is_some()) + 2 * u64::from(chunk);
        let p = ModelProgress::new(label, stages);
        p.stage(format!("building ({})", opts.attention));
        let mut model = pipeline
            .build(&c, &opts)
            .with_context(|| format!("converting {}", c.suffix()))?;
        let ops = model.program.main().map_or(0, |f| f.operations.len());
        p.done(format!("built {ops} ops in {:.1} s", p.elapsed_s()));
        if let Some(nbits) = compress {
            p.stage(format!("palettizing to {nbits} bits"));
            let r = sd_compress::palettize(
                &mut model.program,
                &sd_compress::PalettizeOptions::new(nbits.into()),
            )
            .with_context(|| format!("palettizing {}", c.suffix()))?;
            p.done(format!("palettized {} weights to {nbits} bits", r.weights));
        }
        if chunk {
            p.stage("chunking");
            let chunks =
                sd_compress::chunk(&model).with_context(|| format!("chunking {}", c.suffix()))?;
            let stem = dest
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("unet")
                .to_string();
            for (n, m) in [(1, &chunks.first), (2, &chunks.second)] {
                let path = a.output.join(format!("{stem}_chunk{n}.mlpackage"));
                write_package(m, &path, WriteOptions { overwrite: a.force })
                    .with_context(|| format!("writing {}", path.display()))?;
                p.done(format!("wrote {}", path.display()));
            }
        }
        p.stage(format!("writing {}", dest.display()));
        write_package(&model, &dest, WriteOptions { overwrite: a.force })
            .with_context(|| format!("writing {}", dest.display()))?;
        let bytes = std::fs::metadata(dest.join("Data/com.apple.CoreML/weights/weight.bin"))
            .map(|m| m.len())
            .unwrap_or(0);
        p.done(format!("wrote {:.1} MB of weights", bytes as f64 / 1e6));
        let secs = p.elapsed_s();
        p.finish(format!(
            "{} ({:.1} MB) in {secs:.1} s",
            dest.display(),
            bytes as f64 / 1e6
        ));
        written.push(Written {
            component: c,
            path: dest,
        });
    }
    if a.check_output_correctness || torch.is_some() {
        let setup = CheckSetup {
            model_dir: &dir,
            opts: &opts,
            torch: torch.as_ref(),
        };
        check_correctness(&pipeline, &setup, &written)?;
    }
    if a.bundle_resources_for_swift_cli {
        // The tokenizer files come from the diffusers folder (or --config's, for a single file).
        let tokenizer_root = if dir.is_file() {
            a.config.clone().unwrap_or_else(|| dir.clone())
        } else {
            dir.clone()
        };
        bundle(&tokenizer_root, &a.output, &written)?;
    }
    Ok(())
}

fn copy_dir(src: &Path, dst: &Path) -> Result<()> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let to = dst.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to)?;
        } else {
            std::fs::copy(e.path(), &to)?;
        }
    }
    Ok(())
}

/// Writes `<out>/Resources/` with Apple's names and prints the compile commands (Apple's
/// compiler is needed to turn packages into the `.mlmodelc` the Swift CLI loads).
fn bundle(model_dir: &Path, out: &Path, written: &[Written]) -> Result<()> {
    let res = out.join("Resources");
    std::fs::create_dir_all(&res)?;
    let mut commands = Vec::new();
    for w in written {
        let name = w.component.resource_name();
        let dst = res.join(&name);
        if dst.exists() {
            std::fs::remove_dir_all(&dst)?;
        }
        copy_dir(&w.path, &dst)?;
        let parent = dst.parent().unwrap_or(&res).to_path_buf();
        commands.push(format!(
            "xcrun coremlcompiler compile {} {}",
            dst.display(),
            parent.display()
        ));
    }
    for f in ["vocab.json", "merges.txt"] {
        let src = model_dir.join("tokenizer").join(f);
        if src.is_file() {
            std::fs::copy(&src, res.join(f))
                .with_context(|| format!("copying {}", src.display()))?;
        } else {
            eprintln!(
                "warning: {} not found; the Swift CLI needs it in Resources/ (for a single-file \
                 checkpoint, --config names a diffusers folder holding tokenizer/)",
                src.display()
            );
        }
    }
    eprintln!(
        "Resources written to {}. On a Mac, compile each package (then delete the .mlpackage):",
        res.display()
    );
    for c in commands {
        println!("{c}");
    }
    Ok(())
}
