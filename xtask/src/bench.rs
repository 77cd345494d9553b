//! `cargo xtask bench …`: benchmarks too large or too slow for criterion.

mod compress;
mod gpu;
mod pipeline;
mod rss;
mod weights;

/// Arguments of `cargo xtask bench`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    bench: Bench,
}

/// The benchmarks.
#[derive(clap::Subcommand)]
enum Bench {
    /// Write a synthetic SD-UNet-sized fp16 weight set (1.7 GB) through the streaming blob writer,
    /// read it back through the memory-mapped reader, and report throughput and peak RSS.
    Weights(weights::Args),
    /// Text-to-image end to end (sd1-tiny at 256×256, or `--full` SD 1.5 size at 512×512):
    /// `Pipeline::load` and `generate` beside diffusers' StableDiffusionPipeline on the same CPU,
    /// with peak RSS and the PSNR of the two images.
    Pipeline(Box<pipeline::Args>),
    /// k-means palettization of one package by `sd compress` and by coremltools'
    /// `palettize_weights` in the same run: time, peak RSS, squared error per weight.
    Compress(compress::Args),
    /// Prepare one GPU-machine call (CUDA engine builds, fixtures, diffusers wheel in
    /// target/bench-gpu) for `xtask/bench/gpu/run.sh`: apple-tiny PSNR, pipelines, and full-size
    /// UNet / VAE / text encoder / 20-step image timings beside PyTorch on the same card.
    Gpu(gpu::Args),
}

/// Runs the chosen benchmark.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.bench {
        Bench::Weights(a) => weights::run(a),
        Bench::Pipeline(a) => pipeline::run(*a),
        Bench::Compress(a) => compress::run(a),
        Bench::Gpu(a) => gpu::run(a),
    }
}
