//! The mixed-bit pre-analysis of a package ([`sd_compress::analysis`]) measured in sd-runtime:
//! the package runs in fp32 on fixed random inputs ([`crate::check::random_inputs`], seed 93),
//! its uncompressed outputs are the reference, and each candidate weight is swapped in place
//! ([`Model::replace_const`]) — no re-planning between measurements. The "original" signal
//! integrity is the package's own program-precision (fp16) run against that reference.

use crate::check::random_inputs;
use sd_compress::CompressError;
use sd_compress::analysis::{AnalysisEvent, AnalysisOptions, PreAnalysis, Probe, analyze};
use sd_runtime::{Model, Precision, Tensor, psnr};
use std::collections::HashMap;
use std::path::Path;

/// CLIP's vocabulary, for token-id inputs of a package without an embedding table.
const CLIP_VOCAB: usize = 49408;

/// A package in sd-runtime as a [`Probe`].
pub struct RuntimeProbe {
    model: Model,
    inputs: HashMap<String, Tensor>,
    reference: Vec<(String, Vec<f32>)>,
}

fn runtime(e: impl std::fmt::Display) -> CompressError {
    CompressError::Analysis {
        reason: e.to_string(),
    }
}

impl RuntimeProbe {
    /// Loads `package` in fp32, draws its inputs and records the reference outputs.
    pub fn new(package: &Path, inputs: HashMap<String, Tensor>) -> Result<Self, CompressError> {
        let model = Model::load_cpu(package, Precision::Fp32).map_err(runtime)?;
        let reference = outputs(&model, &inputs)?;
        Ok(RuntimeProbe {
            model,
            inputs,
            reference,
        })
    }
}

fn outputs(
    model: &Model,
    inputs: &HashMap<String, Tensor>,
) -> Result<Vec<(String, Vec<f32>)>, CompressError> {
    let mut out: Vec<(String, Vec<f32>)> = model
        .predict(inputs)
        .map_err(runtime)?
        .into_iter()
        .map(|(k, t)| (k, t.to_f32_vec()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The lowest PSNR over the outputs.
fn worst_psnr(got: &[(String, Vec<f32>)], reference: &[(String, Vec<f32>)]) -> f64 {
    got.iter()
        .zip(reference)
        .map(|((_, a), (_, b))| psnr(a, b))
        .fold(f64::INFINITY, f64::min)
}

impl Probe for RuntimeProbe {
    fn set_weight(&mut self, name: &str, values: &[f32]) -> Result<(), CompressError> {
        self.model.replace_const(name, values).map_err(runtime)
    }

    fn psnr(&mut self) -> Result<f64, CompressError> {
        let got = outputs(&self.model, &self.inputs)?;
        Ok(worst_psnr(&got, &self.reference))
    }
}

/// Runs the pre-analysis of the package at `path` (see the module doc); `options.original_psnr`
/// is measured when `None`.
pub fn analyze_package(
    path: &Path,
    options: &AnalysisOptions,
    on_event: &mut dyn FnMut(AnalysisEvent),
) -> Result<PreAnalysis, CompressError> {
    let package = sd_mil::read_model(path).map_err(runtime)?;
    let main = package.program.main().ok_or(CompressError::NoMain)?;
    let vocab = main
        .operations
        .iter()
        .find(|op| op.op_type == "gather")
        .and_then(|op| op.input_name("x"))
        .and_then(|x| main.value_type(x))
        .map(|t| t.shape[0])
        .unwrap_or(CLIP_VOCAB);
    let inputs = random_inputs(&package, vocab, 93);
    let mut probe = RuntimeProbe::new(path, inputs.clone())?;
    let mut options = options.clone();
    if options.original_psnr.is_none() {
        let fp16 = Model::load_cpu(path, Precision::Program).map_err(runtime)?;
        options.original_psnr = Some(worst_psnr(&outputs(&fp16, &inputs)?, &probe.reference));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let shapes: Vec<String> = package
        .description
        .inputs
        .iter()
        .map(|f| format!("{} {:?}", f.name, f.shape))
        .collect();
    let measured_on = format!(
        "sd-runtime CPU, fp32, against the uncompressed package; random inputs (seed 93): {}; \
         the lowest PSNR over the outputs",
        shapes.join(", ")
    );
    analyze(main, &name, &measured_on, &mut probe, &options, on_event)
}
