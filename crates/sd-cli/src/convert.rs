//! `sd convert`: diffusers weights → Core ML packages, with the flags of Apple's `torch2coreml`.

use anyhow::{Context, Result, bail};
use sd_convert::clip::ClipOutputs;
use sd_convert::{AttentionImpl, Component, ConvertOptions, DeploymentTarget, Pipeline, Precision};
use sd_mil::package::{WriteOptions, write_package};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `sd convert` (names as Apple's `python -m python_coreml_stable_diffusion.torch2coreml`).
#[derive(clap::Args)]
pub struct Args {
    /// Local diffusers folder, or a Hub id already in the Hugging Face cache.
    #[arg(long, default_value = "CompVis/stable-diffusion-v1-4")]
    model_version: String,
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
    /// Palettize text encoder, UNet and ControlNet weights with optimal k-means (1, 2, 4, 6, 8).
    #[arg(long)]
    quantize_nbits: Option<u8>,
    /// Also write the UNet as two chunks (`…_unet_chunk1/2.mlpackage`), after compression.
    #[arg(long)]
    chunk_unet: bool,
}

/// Resolves `--model-version`: a local folder, or a Hub id found in the Hugging Face cache.
fn resolve(model_version: &str) -> Result<PathBuf> {
    let p = PathBuf::from(model_version);
    if p.is_dir() {
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
        "`{model_version}` is neither a local diffusers folder nor in the Hugging Face cache; download it first \
         (e.g. `huggingface-cli download {model_version}`) or pass its folder"
    )
}

struct Written {
    component: Component,
    path: PathBuf,
}

/// Runs `sd convert`.
pub fn run(a: Args) -> Result<()> {
    if a.convert_safety_checker {
        bail!("--convert-safety-checker is not available in `sd convert` yet");
    }
    let dir = resolve(&a.model_version)?;
    let pipeline = Pipeline::open(&dir)?;
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
    if components.is_empty() {
        bail!(
            "nothing to convert: pass --convert-text-encoder, --convert-unet, --convert-vae-decoder, --convert-vae-encoder or --convert-controlnet"
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
        let t0 = Instant::now();
        eprint!("{label}: building ({}) … ", opts.attention);
        let mut model = pipeline
            .build(&c, &opts)
            .with_context(|| format!("converting {}", c.suffix()))?;
        let is_unet = matches!(c, Component::Unet | Component::ControlUnet);
        // Compress first, then chunk (Apple's tool chunks first and leaves the chunks
        // uncompressed). VAE halves stay uncompressed, as in Apple's converter.
        if let Some(nbits) = a.quantize_nbits
            && !matches!(c, Component::VaeDecoder | Component::VaeEncoder)
        {
            let r = sd_compress::palettize(
                &mut model.program,
                &sd_compress::PalettizeOptions::new(nbits.into()),
            )
            .with_context(|| format!("palettizing {}", c.suffix()))?;
            eprint!("palettized {} weights to {nbits} bits; ", r.weights);
        }
        if a.chunk_unet && is_unet {
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
                eprint!("{}; ", path.display());
            }
        }
        let ops = model.program.main().map_or(0, |f| f.operations.len());
        eprint!(
            "{ops} ops in {:.1} s; writing … ",
            t0.elapsed().as_secs_f64()
        );
        write_package(&model, &dest, WriteOptions { overwrite: a.force })
            .with_context(|| format!("writing {}", dest.display()))?;
        let bytes = std::fs::metadata(dest.join("Data/com.apple.CoreML/weights/weight.bin"))
            .map(|m| m.len())
            .unwrap_or(0);
        eprintln!(
            "{} ({:.1} MB) in {:.1} s",
            dest.display(),
            bytes as f64 / 1e6,
            t0.elapsed().as_secs_f64()
        );
        written.push(Written {
            component: c,
            path: dest,
        });
    }
    if a.check_output_correctness {
        check_correctness(&pipeline, &opts, &written)?;
    }
    if a.bundle_resources_for_swift_cli {
        bundle(&dir, &a.output, &written)?;
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
                "warning: {} not found; the Swift CLI needs it in Resources/",
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

/// A small deterministic generator for check inputs.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32) / (1u64 << 24) as f32
    }
}

fn random_inputs(model: &sd_mil::Model, seed: u64) -> HashMap<String, sd_runtime::Tensor> {
    let mut r = Lcg(seed);
    model
        .description
        .inputs
        .iter()
        .map(|f| {
            let n: usize = f.shape.iter().product();
            let data: Vec<f32> = match f.name.as_str() {
                "input_ids" => {
                    let mut v: Vec<f32> = (0..n).map(|_| (r.next() * 49000.0).floor()).collect();
                    let eot = (r.next() * (n - 1) as f32) as usize + 1;
                    v[0] = 49406.0;
                    for x in &mut v[eot..] {
                        *x = 49407.0;
                    }
                    v
                }
                "timestep" => vec![981.0; n],
                "controlnet_cond" => (0..n).map(|_| r.next()).collect(),
                _ => (0..n).map(|_| r.next() * 2.0 - 1.0).collect(),
            };
            (
                f.name.clone(),
                sd_runtime::Tensor::f32(f.shape.clone(), data),
            )
        })
        .collect()
}

/// Runs each package with sd-runtime against the same network built with ORIGINAL attention in
/// fp32 (the reference form) on random inputs; prints a PSNR table, fails below 35 dB.
fn check_correctness(
    pipeline: &Pipeline,
    opts: &ConvertOptions,
    written: &[Written],
) -> Result<()> {
    let tmp = std::env::temp_dir().join(format!("sd-convert-check-{}", std::process::id()));
    let ref_opts = ConvertOptions {
        attention: AttentionImpl::Original,
        precision: Precision::Float32,
        ..opts.clone()
    };
    println!("{:<28} {:<24} {:>10}", "model", "output", "PSNR (dB)");
    let mut worst = f64::INFINITY;
    for w in written {
        let reference = pipeline.build(&w.component, &ref_opts)?;
        let ref_path = tmp.join(w.component.package_name("reference"));
        write_package(&reference, &ref_path, WriteOptions { overwrite: true })?;
        let inputs = random_inputs(&reference, 93);
        let ours = sd_runtime::Model::load_cpu(&w.path, sd_runtime::Precision::Program)?;
        let want = sd_runtime::Model::load_cpu(&ref_path, sd_runtime::Precision::Fp32)?
            .predict(&inputs)?;
        let got = ours.predict(&inputs)?;
        for f in &reference.description.outputs {
            let db = sd_runtime::psnr(&got[&f.name].to_f32_vec(), &want[&f.name].to_f32_vec());
            worst = worst.min(db);
            println!("{:<28} {:<24} {:>10.1}", w.component.suffix(), f.name, db);
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    if worst < 35.0 {
        bail!("output correctness check failed: {worst:.1} dB < 35 dB");
    }
    Ok(())
}
