//! `sd generate PROMPT`: images from a folder of Core ML models, with the flags of Apple's
//! `StableDiffusionSample` (plus `--model`, `--mask`, `--device`, `--compute-precision`,
//! `--save-latents`). The work is `sd_runtime::pipeline`; this file parses, reports progress and
//! writes the PNGs.

use crate::model_args::Models;
use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use sd_runtime::pipeline::image::{self as img, GenerationParameters, RgbImage};
use sd_runtime::pipeline::{
    Control, ControlInput, GenerationRequest, Pipeline, PipelineOptions, SafetyVerdict,
    SchedulerKind, parse_rng,
};
use sd_runtime::{RtBackend, Tensor};
use std::path::{Path, PathBuf};

/// Arguments of `sd generate`.
#[derive(clap::Args)]
pub struct Args {
    /// The prompt.
    prompt: String,
    #[command(flatten)]
    models: crate::model_args::ModelArgs,
    /// The seed of the random source.
    #[arg(long, default_value_t = 93)]
    seed: u64,
    /// Where the images go.
    #[arg(long, default_value = ".")]
    output_path: PathBuf,
    /// What the image should not show.
    #[arg(long, default_value = "")]
    negative_prompt: String,
    /// A starting image (PNG or JPEG at the models' size): image-to-image, or inpainting with
    /// --mask.
    #[arg(long, value_name = "PATH")]
    image: Option<PathBuf>,
    /// How far to move from the starting image, 0 to 1 (default 0.5 for image-to-image as
    /// Apple's CLI, 1 for inpainting).
    #[arg(long)]
    strength: Option<f32>,
    /// Inpainting mask (white = repaint, black = keep), the starting image's size.
    #[arg(long, value_name = "PATH", requires = "image")]
    mask: Option<PathBuf>,
    /// How many images.
    #[arg(long, default_value_t = 1)]
    image_count: usize,
    /// Denoising steps.
    #[arg(long, default_value_t = 50)]
    step_count: usize,
    /// Also save the image every N steps (0 = only the final one).
    #[arg(long, default_value_t = 0)]
    save_every: usize,
    /// Classifier-free guidance scale (at or below 1: no guidance).
    #[arg(long, default_value_t = 7.5)]
    guidance_scale: f32,
    /// pndm, ddim, dpmpp, dpmpp-karras, euler, euler-a, lms or lcm.
    #[arg(long, default_value = "pndm")]
    scheduler: String,
    /// numpy, torch or nvidia.
    #[arg(long, default_value = "numpy")]
    rng: String,
    /// ControlNets to apply, by name in the resource folder's `controlnet/`.
    #[arg(long, num_args = 1..)]
    controlnet: Vec<String>,
    /// One conditioning image per --controlnet, in order.
    #[arg(long, num_args = 1..)]
    controlnet_inputs: Vec<PathBuf>,
    /// One scale per --controlnet (default 1).
    #[arg(long, num_args = 1..)]
    controlnet_scales: Vec<f32>,
    /// Do not run the safety checker.
    #[arg(long)]
    disable_safety: bool,
    /// Load each model only while it is needed.
    #[arg(long)]
    reduce_memory: bool,
    /// Write the final latents (before the VAE scale is undone) as safetensors tensor `latents`.
    #[arg(long, value_name = "FILE")]
    save_latents: Option<PathBuf>,
}

/// Runs `sd generate`.
pub fn run(a: Args) -> Result<()> {
    let request = build_request(&a)?;
    let models = a.models.resolve()?;
    sd_cli::prepare_output_folder(&a.output_path)?;
    match a.models.device {
        crate::run::Device::Cpu => {
            let mut o = a.models.pipeline_options::<sd_runtime::Cpu>(&models)?;
            o.reduce_memory = a.reduce_memory;
            generate_with(&a, &models, o, &request)
        }
        #[cfg(feature = "cuda")]
        crate::run::Device::Cuda => {
            let mut o = a.models.pipeline_options::<sd_runtime::Cpu>(&models)?;
            o.reduce_memory = a.reduce_memory;
            o.engine = sd_runtime::pipeline::Engine::Cuda { gpu: 0 };
            generate_with(&a, &models, o, &request)
        }
        #[cfg(feature = "cuda-burn")]
        crate::run::Device::CudaBurn => {
            let mut o = a.models.pipeline_options::<sd_runtime::Cuda>(&models)?;
            o.reduce_memory = a.reduce_memory;
            generate_with(&a, &models, o, &request)
        }
        #[allow(unreachable_patterns)]
        other => Err(crate::run::not_built(other)),
    }
}

/// The request from the flags (images read and checked for mode here; size at generation).
fn build_request(a: &Args) -> Result<GenerationRequest> {
    let mut r = GenerationRequest::new(a.prompt.clone());
    r.negative_prompt = a.negative_prompt.clone();
    r.seed = a.seed;
    r.steps = a.step_count;
    r.guidance_scale = a.guidance_scale;
    r.scheduler = a.scheduler.parse::<SchedulerKind>()?;
    r.rng = parse_rng(&a.rng)?;
    r.image_count = a.image_count;
    r.safety_check = !a.disable_safety;
    r.preview_every = a.save_every;
    if let Some(p) = &a.image {
        r.image = Some(img::load_image(p)?.rgb);
        r.strength = a.strength.unwrap_or(0.5);
    } else if a.strength.is_some() {
        bail!("--strength applies to a starting image: add --image PATH");
    }
    if let Some(p) = &a.mask {
        r.mask = Some(img::load_mask(p)?);
        // Inpainting repaints the masked region from noise unless told otherwise.
        r.strength = a.strength.unwrap_or(1.0);
    }
    if a.controlnet.len() != a.controlnet_inputs.len() {
        bail!(
            "{} --controlnet name(s) but {} --controlnet-inputs image(s): give one image per ControlNet",
            a.controlnet.len(),
            a.controlnet_inputs.len()
        );
    }
    if !a.controlnet_scales.is_empty() && a.controlnet_scales.len() != a.controlnet.len() {
        bail!(
            "{} --controlnet-scales for {} ControlNet(s): give one scale each, or none",
            a.controlnet_scales.len(),
            a.controlnet.len()
        );
    }
    for (i, (name, path)) in a.controlnet.iter().zip(&a.controlnet_inputs).enumerate() {
        let scale = a.controlnet_scales.get(i).copied().unwrap_or(1.0);
        let loaded = img::load_image(path)?;
        // Apple's rule: transparent pixels of a conditioning image are −1 (what its inpaint
        // ControlNet repaints); an opaque image is RGB / 255.
        let input = match &loaded.alpha {
            Some(_) => ControlInput {
                name: name.clone(),
                conditioning: loaded.inpaint_conditioning()?.data,
                width: loaded.rgb.width,
                height: loaded.rgb.height,
                scale,
            },
            None => ControlInput::from_image(name.clone(), &loaded.rgb, scale),
        };
        r.controlnets.push(input);
    }
    Ok(r)
}

fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30.cyan/blue} step {pos}/{len} [{elapsed} < {eta}] {per_sec} {msg}",
        )
        .expect("the template is valid")
        .progress_chars("=> "),
    );
    bar
}

fn generate_with<B: RtBackend>(
    a: &Args,
    models: &Models,
    options: PipelineOptions<B>,
    request: &GenerationRequest,
) -> Result<()> {
    let folder = &models.folder;
    let mut pipe = Pipeline::<B>::load(folder, options)
        .with_context(|| format!("loading the models in {}", folder.display()))?;
    let model_name = model_name(models, pipe.resources());
    let params = |steps: usize, width: usize, height: usize| GenerationParameters {
        steps: steps as u32,
        ..request.a1111_parameters(width, height, &model_name)
    };
    let file_name = |index: usize, step: Option<usize>| {
        img::OutputFileName {
            prompt: &request.prompt,
            image_index: index,
            image_count: request.image_count,
            start_image_strength: request.image.as_ref().map(|_| request.strength),
            seed: request.seed,
            step,
        }
        .file_name()
    };
    let bar = progress_bar(request.steps as u64);
    let hidden = bar.is_hidden();
    let mut save_error = None;
    let result = pipe.generate(request, &mut |p| {
        if bar.length() != Some(p.total as u64) {
            bar.set_length(p.total as u64);
        }
        bar.set_position(p.step as u64);
        if hidden {
            let rate = p.step as f64 / p.elapsed.as_secs_f64().max(1e-9);
            eprintln!("step {}/{} ({rate:.2} it/s)", p.step, p.total);
        }
        if let Some(previews) = p.previews {
            for (i, image) in previews.iter().enumerate() {
                let meta = params(p.step, image.width, image.height);
                let path = a.output_path.join(file_name(i, Some(p.step)));
                if let Err(e) = save(&path, image, &meta) {
                    save_error = Some(e);
                    return Control::Cancel;
                }
            }
        }
        Control::Continue
    });
    bar.finish_and_clear();
    if let Some(e) = save_error {
        return Err(e);
    }
    let result = result?;
    for w in &result.warnings {
        eprintln!("warning: {w}");
    }
    let secs = result.denoise_time.as_secs_f64();
    eprintln!(
        "{} steps in {:.2} s ({:.2} it/s)",
        result.timesteps.len(),
        secs,
        result.timesteps.len() as f64 / secs.max(1e-9)
    );
    let mut flagged = 0;
    for g in &result.images {
        match (&g.image, g.safety) {
            (Some(image), _) => {
                let meta = params(request.steps, result.width, result.height);
                let path = a.output_path.join(file_name(g.index, None));
                save(&path, image, &meta)?;
                println!("{}", path.display());
            }
            (None, SafetyVerdict::Flagged) => {
                flagged += 1;
                eprintln!(
                    "image {} was flagged by the safety checker and not saved (--disable-safety turns the check off)",
                    g.index
                );
            }
            (None, _) => {}
        }
    }
    if let Some(path) = &a.save_latents {
        let [_, c, h, w] = result.latent_shape;
        let data: Vec<f32> = result
            .images
            .iter()
            .flat_map(|g| g.latents.iter().copied())
            .collect();
        let t = Tensor::f32([result.images.len(), c, h, w], data);
        write_latents(path, &t)?;
        eprintln!("latents written to {}", path.display());
    }
    if flagged == result.images.len() && flagged > 0 {
        bail!("every image was flagged by the safety checker; nothing was saved");
    }
    Ok(())
}

/// The model's name for the PNG metadata: `--model`'s file or folder name, else the converter
/// id of the folder's packages, else the folder's name (its parent's for `…/Resources`).
fn model_name(models: &Models, resources: &sd_runtime::pipeline::Resources) -> String {
    models
        .name
        .clone()
        .or_else(|| resources.model_id.clone())
        .unwrap_or_else(|| sd_cli::server::folder_name(&resources.root))
}

fn save(path: &Path, image: &RgbImage, meta: &GenerationParameters) -> Result<()> {
    let text = meta.to_a1111_string();
    img::write_png_atomic(path, image, &[("parameters", text.as_str())])
        .with_context(|| format!("writing {}", path.display()))
}

/// Writes the latents as safetensors through the pipeline's atomic writer (temporary file
/// beside `path`, then a rename; a target that is not a regular file is refused).
fn write_latents(path: &Path, t: &Tensor) -> Result<()> {
    let bytes = Tensor::to_safetensors_bytes([("latents", t)])?;
    img::write_file_atomic(path, &bytes)
        .with_context(|| format!("--save-latents {}", path.display()))
}
