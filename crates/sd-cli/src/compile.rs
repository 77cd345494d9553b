//! `sd compile MODEL… -o OUT`: packages compiled into `.mlmodelc` folders, laid out as
//! `xcrun coremlcompiler compile` does, on any OS.

use anyhow::{Context, Result, bail};
use sd_mil::package::WriteOptions;
use std::path::{Path, PathBuf};

/// Arguments of `sd compile`.
#[derive(clap::Args)]
pub struct Args {
    /// Models to compile (.mlpackage; a compiled .mlmodelc is written out again).
    #[arg(required = true)]
    models: Vec<PathBuf>,
    /// Where to write: a folder (each model becomes `<OUT>/<name>.mlmodelc`, as
    /// `xcrun coremlcompiler compile MODEL OUT` does), or, for one model, the `.mlmodelc` path.
    #[arg(short, long)]
    output: PathBuf,
    /// Replace compiled models already at the destination (nothing else is ever replaced).
    #[arg(long)]
    force: bool,
}

/// Where `model` goes.
fn destination(model: &Path, output: &Path, several: bool) -> Result<PathBuf> {
    if output.extension().is_some_and(|e| e == "mlmodelc") {
        if several {
            bail!(
                "{} names one compiled model, but several models were given: pass a folder",
                output.display()
            );
        }
        return Ok(output.to_path_buf());
    }
    let stem = model
        .file_stem()
        .with_context(|| format!("{} has no file name", model.display()))?;
    Ok(output.join(stem).with_extension("mlmodelc"))
}

/// Runs `sd compile`.
pub fn run(args: Args) -> Result<()> {
    let several = args.models.len() > 1;
    for model_path in &args.models {
        let dest = destination(model_path, &args.output, several)?;
        let model = sd_mil::read_model(model_path)
            .with_context(|| format!("reading {}", model_path.display()))?;
        match sd_mil::compiled::write_compiled(
            &model,
            &dest,
            WriteOptions {
                overwrite: args.force,
            },
        ) {
            Ok(()) => println!("{}", dest.display()),
            Err(sd_mil::MilError::AlreadyExists { path }) => {
                bail!("{} already exists (--force replaces it)", path.display())
            }
            Err(e) => {
                return Err(e).with_context(|| format!("compiling {}", model_path.display()));
            }
        }
    }
    Ok(())
}
