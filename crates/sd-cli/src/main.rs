//! `sd`: the command-line front end of the toolkit — argument parsing, progress bars and
//! printing over the `sd_cli` library.

mod compile;
mod compress;
mod convert;
mod download;
mod generate;
mod hub_fetch;
mod inspect;
mod model_args;
mod progress;
mod recipe_file;
mod run;
mod serve;

use clap::{Parser, Subcommand};

/// Convert, inspect and run Core ML Stable Diffusion packages without a Mac.
#[derive(Parser)]
#[command(name = "sd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compile packages into .mlmodelc folders (what Apple's Swift package loads), on any OS.
    Compile(compile::Args),
    /// Palettize or quantize a package's weights, and/or cut it into two chunks.
    Compress(compress::Args),
    /// Convert a diffusers Stable Diffusion folder to Core ML packages (torch2coreml's flags).
    Convert(convert::Args),
    /// Fetch a model from the Hugging Face Hub into its cache and print where it is.
    Download(download::Args),
    /// Generate images from a prompt with a folder of Core ML models (StableDiffusionSample's flags).
    Generate(generate::Args),
    /// Show a model's signature, opset, op histogram and weight sizes (.mlpackage or .mlmodelc).
    Inspect(inspect::Args),
    /// Run a model (.mlpackage or .mlmodelc) on named input tensors (safetensors), write its outputs.
    Run(run::Args),
    /// Serve a local web page and HTTP APIs (native, AUTOMATIC1111, OpenAI) for image generation.
    Serve(serve::Args),
}

fn main() -> anyhow::Result<()> {
    // Predictions reuse freed memory instead of faulting in fresh pages (see the module).
    sd_runtime::allocator::keep_freed_memory();
    match Cli::parse().command {
        Command::Compile(args) => compile::run(args),
        Command::Compress(args) => compress::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Download(args) => download::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Run(args) => run::run(args),
        Command::Serve(args) => serve::run(args),
    }
}
