//! `cargo xtask bench …`: benchmarks too large or too slow for criterion.

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
}

/// Runs the chosen benchmark.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.bench {
        Bench::Weights(a) => weights::run(a),
    }
}
