//! `sd convert --check-output-correctness`: every written package runs in sd-runtime on random
//! inputs against a reference — the same network built with ORIGINAL attention, uncompressed, in
//! fp32 (always), and diffusers itself with `--torch-reference` — and fails below 35 dB.

use crate::torch_reference::TorchReference;
use anyhow::{Context, Result, bail};
use sd_convert::clip::ClipOutputs;
use sd_convert::{AttentionImpl, Component, ConvertOptions, Pipeline, Precision};
use sd_mil::package::{WriteOptions, write_package};
use sd_runtime::Tensor;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Apple's floor for a converted model against its reference.
pub const PSNR_FLOOR_DB: f64 = 35.0;

/// CLIP's token table (ids 49406 and 49407 are BOS and EOT).
const CLIP_VOCAB: usize = 49408;

/// A package `sd convert` wrote (or kept).
pub struct Written {
    /// The network.
    pub component: Component,
    /// Its .mlpackage.
    pub path: PathBuf,
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

/// Random inputs for `model`'s signature: token ids below `vocab` (CLIP's layout: the last two
/// ids are BOS and EOT) with BOS first and EOT padding, timestep 981, images in [0, 1],
/// everything else in [-1, 1].
fn random_inputs(model: &sd_mil::Model, vocab: usize, seed: u64) -> HashMap<String, Tensor> {
    let (bos, eot) = ((vocab - 2) as f32, (vocab - 1) as f32);
    let mut r = Lcg(seed);
    model
        .description
        .inputs
        .iter()
        .map(|f| {
            let n: usize = f.shape.iter().product();
            let data: Vec<f32> = match f.name.as_str() {
                "input_ids" => {
                    let mut v: Vec<f32> = (0..n).map(|_| (r.next() * bos).floor()).collect();
                    let end = (r.next() * (n - 1) as f32) as usize + 1;
                    v[0] = bos;
                    for x in &mut v[end..] {
                        *x = eot;
                    }
                    v
                }
                "timestep" => vec![981.0; n],
                "controlnet_cond" | "images" => (0..n).map(|_| r.next()).collect(),
                "adjustment" => vec![0.0; n],
                _ => (0..n).map(|_| r.next() * 2.0 - 1.0).collect(),
            };
            (f.name.clone(), Tensor::f32(f.shape.clone(), data))
        })
        .collect()
}

/// Where the reference of the check comes from.
pub struct CheckSetup<'a> {
    /// The diffusers folder the packages came from.
    pub model_dir: &'a Path,
    /// The conversion options the packages were written with.
    pub opts: &'a ConvertOptions,
    /// diffusers itself as a second reference.
    pub torch: Option<&'a TorchReference>,
}

/// Runs the check over `written`; prints one table row per output and fails below 35 dB.
pub fn check_correctness(
    pipeline: &Pipeline,
    s: &CheckSetup<'_>,
    written: &[Written],
) -> Result<()> {
    let tmp = std::env::temp_dir().join(format!("sd-convert-check-{}", std::process::id()));
    let result = check_in(pipeline, s, written, &tmp);
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn check_in(
    pipeline: &Pipeline,
    s: &CheckSetup<'_>,
    written: &[Written],
    tmp: &Path,
) -> Result<()> {
    let ref_opts = ConvertOptions {
        attention: AttentionImpl::Original,
        precision: Precision::Float32,
        ..s.opts.clone()
    };
    if let Some(t) = s.torch {
        eprintln!("PyTorch reference: {}", t.versions);
    }
    println!(
        "{:<28} {:<24} {:>16} {:>16}",
        "model", "output", "vs fp32 (dB)", "vs PyTorch (dB)"
    );
    let mut worst = f64::INFINITY;
    for w in written {
        let name = w.component.suffix();
        let reference = pipeline
            .build(&w.component, &ref_opts)
            .with_context(|| format!("building the fp32 reference of {name}"))?;
        let ref_path = tmp.join(w.component.package_name("reference"));
        write_package(&reference, &ref_path, WriteOptions { overwrite: true })?;
        let vocab = match w.component {
            Component::TextEncoder => pipeline.text_encoder_config()?.vocab_size,
            _ => CLIP_VOCAB,
        };
        let inputs = random_inputs(&reference, vocab, 93);
        let got = sd_runtime::Model::load_cpu(&w.path, sd_runtime::Precision::Program)?
            .predict(&inputs)
            .with_context(|| format!("running {}", w.path.display()))?;
        let fp32 = sd_runtime::Model::load_cpu(&ref_path, sd_runtime::Precision::Fp32)?
            .predict(&inputs)?;
        let torch = match s.torch {
            Some(t) => Some(t.run(
                &w.component,
                s.model_dir,
                s.opts.variant.as_deref(),
                s.opts.text_outputs == ClipOutputs::HiddenEmbeds,
                &inputs,
                tmp,
            )?),
            None => None,
        };
        for f in &reference.description.outputs {
            let ours = got[&f.name].to_f32_vec();
            let db = sd_runtime::psnr(&ours, &fp32[&f.name].to_f32_vec());
            worst = worst.min(db);
            let vs_torch = match &torch {
                Some(t) => {
                    let want = t.get(&f.name).with_context(|| {
                        format!("the PyTorch reference of {name} has no output `{}`", f.name)
                    })?;
                    let db = sd_runtime::psnr(&ours, &want.to_f32_vec());
                    worst = worst.min(db);
                    format!("{db:.1}")
                }
                None => "-".into(),
            };
            println!("{name:<28} {:<24} {db:>16.1} {vs_torch:>16}", f.name);
        }
    }
    if worst < PSNR_FLOOR_DB {
        bail!("output correctness check failed: {worst:.1} dB < {PSNR_FLOOR_DB} dB");
    }
    Ok(())
}
