//! `cargo xtask …`: project automation that needs more than `cargo test`.
//!
//! Each subcommand lives in its own module with an `Args` struct and a `run` function.

mod bench;
mod browser;
mod check_mlpackage;
mod convert;
mod fuzz;
mod reference;
mod test;
mod venv;

use clap::{Parser, Subcommand};

/// Project automation commands.
#[derive(Parser)]
#[command(name = "xtask", about = "Project automation for the sd toolkit")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Regenerate the reference fixtures from diffusers/transformers/numpy/PyTorch.
    Reference(reference::Args),
    /// Check .mlpackage files with Core ML's own tooling (coremltools).
    CheckMlpackage(check_mlpackage::Args),
    /// Run the whole test suite: cargo test, then the coremltools check of written packages.
    Test(test::Args),
    /// Run the benchmarks that need more than criterion (large weight sets, peers).
    Bench(bench::Args),
    /// Convert a model (default fixtures/models/sd1-tiny) with chosen options, check every
    /// package (PSNR against fp32; coremltools when available) and print a summary table.
    Convert(convert::Args),
    /// Seed, build and run the fuzz targets of `fuzz/` (libFuzzer, via cargo +nightly fuzz).
    Fuzz(fuzz::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Reference(args) => reference::run(args),
        Command::CheckMlpackage(args) => check_mlpackage::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Test(args) => test::run(args),
        Command::Fuzz(args) => fuzz::run(args),
    }
}
