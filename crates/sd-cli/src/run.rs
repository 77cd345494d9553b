//! `sd run PACKAGE --input in.safetensors --output out.safetensors [--fp32] [--device cpu|cuda|cuda-burn]
//! [--reference ref.safetensors]`: runs a package on named tensors and writes its outputs.
//!
//! Tensor names are feature names; Apple's `in.`/`out.` prefixes (as in the reference files)
//! are accepted and stripped.

use anyhow::{Context, Result};
use sd_runtime::{Model, Precision, Predictor, Tensor, psnr};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `sd run`.
#[derive(clap::Args)]
pub struct Args {
    /// The model to run (.mlpackage or compiled .mlmodelc).
    package: PathBuf,
    /// safetensors file with one tensor per model input.
    #[arg(long)]
    input: PathBuf,
    /// Where to write the outputs (safetensors).
    #[arg(long)]
    output: PathBuf,
    /// Compute everything in fp32 instead of the program's precision.
    #[arg(long)]
    fp32: bool,
    /// Where the kernels run: `cpu`, `cuda` (GPU 0 on the native CUDA engine; needs `sd` built
    /// with `--features cuda`) or `cuda-burn` (burn's CUDA backend; `--features cuda-burn`).
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    device: Device,
    /// Reference outputs (safetensors): prints the PSNR of each output against them.
    #[arg(long)]
    reference: Option<PathBuf>,
}

/// The device of `--device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Device {
    /// burn-ndarray on the CPU.
    Cpu,
    /// The native CUDA engine on the first NVIDIA GPU (builds with the `cuda` feature).
    Cuda,
    /// burn-cuda on the first NVIDIA GPU (builds with the `cuda-burn` feature).
    CudaBurn,
}

/// The error for a device this build lacks.
pub fn not_built(device: Device) -> anyhow::Error {
    let (flag, feature) = match device {
        Device::CudaBurn => ("cuda-burn", "cuda-burn"),
        _ => ("cuda", "cuda"),
    };
    anyhow::anyhow!(
        "this `sd` was built without `--device {flag}`: rebuild it with `--features {feature}` \
         (`cargo build --release -p sd-cli --features {feature}`)"
    )
}

fn strip(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_string()
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let precision = if args.fp32 {
        Precision::Fp32
    } else {
        Precision::Program
    };
    let t0 = Instant::now();
    let loading = || format!("loading {}", args.package.display());
    let model: Box<dyn Predictor> = match args.device {
        Device::Cpu => Box::new(Model::load_cpu(&args.package, precision).with_context(loading)?),
        #[cfg(feature = "cuda")]
        Device::Cuda => Box::new(
            sd_runtime::cuda_engine::CudaEngine::load(&args.package, 0, precision)
                .with_context(loading)?,
        ),
        #[cfg(feature = "cuda-burn")]
        Device::CudaBurn => {
            Box::new(Model::load_cuda(&args.package, precision).with_context(loading)?)
        }
        #[allow(unreachable_patterns)]
        other => return Err(not_built(other)),
    };
    predict_and_write(&args, model.as_ref(), t0)
}

/// Reads the inputs, predicts, writes the outputs and prints PSNRs against the reference.
fn predict_and_write(args: &Args, model: &dyn Predictor, t0: Instant) -> Result<()> {
    let load = t0.elapsed();
    let wanted: Vec<String> = model
        .description()
        .inputs
        .iter()
        .map(|f| f.name.clone())
        .collect();
    let mut inputs = HashMap::new();
    for (name, t) in Tensor::read_safetensors(&args.input)? {
        let n = strip(&name, "in.");
        // Files may carry more tensors (e.g. reference outputs); keep the model's inputs.
        if wanted.contains(&n) {
            inputs.insert(n, t);
        }
    }
    let t1 = Instant::now();
    let outputs = model.predict(&inputs)?;
    let run = t1.elapsed();
    let mut names: Vec<&String> = outputs.keys().collect();
    names.sort();
    Tensor::write_safetensors(
        &args.output,
        names.iter().map(|n| (n.as_str(), &outputs[*n])),
    )?;
    eprintln!(
        "loaded in {:.2?}, predicted in {:.2?}, wrote {} output(s) to {}",
        load,
        run,
        names.len(),
        args.output.display()
    );
    if let Some(r) = &args.reference {
        let refs: HashMap<String, Tensor> = Tensor::read_safetensors(r)?
            .into_iter()
            .map(|(n, t)| (strip(&n, "out."), t))
            .collect();
        for n in names {
            match refs.get(n) {
                Some(want) if want.shape == outputs[n].shape => {
                    println!(
                        "{n}: PSNR {:.2} dB",
                        psnr(&outputs[n].to_f32_vec(), &want.to_f32_vec())
                    );
                }
                Some(want) => println!(
                    "{n}: shape {:?} differs from the reference's {:?}",
                    outputs[n].shape, want.shape
                ),
                None => println!("{n}: not in the reference file"),
            }
        }
    }
    Ok(())
}
