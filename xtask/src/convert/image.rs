//! The last row of `cargo xtask convert`: one image generated from the packages just written,
//! through the same pipeline `sd generate` runs.

use anyhow::{Context, Result};
use sd_runtime::pipeline::image::{OutputFileName, write_png_atomic};
use sd_runtime::pipeline::{
    Control, GenerationRequest, Pipeline, PipelineOptions, SchedulerConfig, SchedulerKind,
};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What the generation did.
pub struct ImageRow {
    /// The PNG written.
    pub path: PathBuf,
    /// Its size.
    pub width: usize,
    /// Its size.
    pub height: usize,
    /// UNet calls.
    pub steps: usize,
    /// Load plus generation, seconds.
    pub seconds: f64,
}

/// Generates one image (PNDM, `steps` steps, seed 93) from the packages in `packages`, with
/// the tokenizer and scheduler configuration of the diffusers folder `model_dir`.
pub fn generate_one(packages: &Path, model_dir: &Path, steps: usize) -> Result<ImageRow> {
    let started = Instant::now();
    let mut options = PipelineOptions {
        tokenizer: Some(model_dir.join("tokenizer")),
        ..PipelineOptions::default()
    };
    let scheduler = model_dir.join("scheduler/scheduler_config.json");
    if scheduler.is_file() {
        let text = std::fs::read_to_string(&scheduler)?;
        options.scheduler_config = Some(
            SchedulerConfig::from_json(&text)
                .with_context(|| format!("reading {}", scheduler.display()))?,
        );
    }
    let mut pipe = Pipeline::load(packages, options)
        .with_context(|| format!("loading the pipeline from {}", packages.display()))?;
    let mut request = GenerationRequest::new("a photo of an astronaut riding a horse on mars");
    request.seed = 93;
    request.steps = steps;
    request.scheduler = SchedulerKind::Pndm;
    request.safety_check = false;
    let result = pipe.generate(&request, &mut |_| Control::Continue)?;
    let image = result.images[0]
        .image
        .as_ref()
        .context("the pipeline returned no image")?;
    let params = request.a1111_parameters(image.width, image.height, "");
    let path = packages.join(OutputFileName::new(&request.prompt, request.seed).file_name());
    write_png_atomic(&path, image, &[("parameters", &params.to_a1111_string())])?;
    Ok(ImageRow {
        path,
        width: image.width,
        height: image.height,
        steps: result.timesteps.len(),
        seconds: started.elapsed().as_secs_f64(),
    })
}
