//! A conversion job: diffusers weights (a folder, a single-file checkpoint, or a cached Hub
//! id) → Core ML packages, with the behaviour of Apple's `torch2coreml`: Apple's names, existing
//! packages kept unless `force`, compression before chunking, an optional Swift `Resources/`
//! bundle and an optional correctness check. `sd convert`, `cargo xtask convert` and the model
//! cache all run [`run_job`].

mod error;
mod event;
mod package;
mod selection;

pub use error::ConversionError;
pub use event::{ConversionEvent, PaletteBits, Stage, StageDone};
pub use package::{ChunkReport, PackageReport, weight_bytes};
pub use selection::{ComponentSelection, chunks, needs_no_model, palettizes};

use crate::check::{CheckReport, CheckSetup, check_correctness};
use crate::fs_util::{at, unique_temp_path};
use crate::hub::resolve;
use crate::swift_resources::{BundleReport, bundle};
use crate::torch_reference::TorchReference;
use sd_convert::{Component, ConvertOptions, Pipeline};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What to convert, from where, to where.
#[derive(Debug, Clone)]
pub struct ConversionJob {
    /// A diffusers folder, a single-file checkpoint (`.safetensors`, `.ckpt`, LDM names), or a
    /// Hub id in the Hugging Face cache. Not read when every component is the multilingual
    /// projection (the current directory stands in).
    pub model: PathBuf,
    /// For a single-file checkpoint: a diffusers folder supplying `<part>/config.json` (and
    /// `tokenizer/` for the Swift resources), as diffusers' `from_single_file(config=…)`.
    pub config: Option<PathBuf>,
    /// The networks, in conversion order (see [`ComponentSelection`]).
    pub components: Vec<Component>,
    /// The output folder (created when missing).
    pub output: PathBuf,
    /// How.
    pub options: ConversionOptions,
}

/// How a job converts.
#[derive(Debug, Clone, Default)]
pub struct ConversionOptions {
    /// The networks' options (attention, precision, sizes, deployment target, …);
    /// `convert.model_version` is the `<id>` of `Stable_Diffusion_version_<id>_<part>.mlpackage`.
    pub convert: ConvertOptions,
    /// Palettize text encoder, UNet and ControlNet weights with optimal k-means to this many
    /// bits (1, 2, 4, 6, 8).
    pub quantize_nbits: Option<u8>,
    /// A mixed-bit recipe (weight name → bits) for the UNet and control-unet; the weights it
    /// does not name use `quantize_nbits`, or stay uncompressed without it.
    pub unet_recipe: Option<HashMap<String, u32>>,
    /// Also write the UNet as two chunks (`…_unet_chunk1/2.mlpackage`), after compression.
    pub chunk_unet: bool,
    /// Replace existing packages (by default they are kept).
    pub force: bool,
    /// Run the correctness check after writing.
    pub check: Option<CheckOptions>,
    /// Lay the packages out as the Swift CLI's `Resources/` (plus `vocab.json`, `merges.txt`).
    pub bundle_resources_for_swift_cli: bool,
}

/// The correctness check's references.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckOptions {
    /// Also compare against diffusers itself, run by this Python (which must import torch,
    /// diffusers, transformers and safetensors). Only for diffusers folders.
    pub torch_python: Option<String>,
}

/// What a job did.
#[derive(Debug, Clone)]
pub struct ConversionReport {
    /// The model folder or file the job read (resolved from [`ConversionJob::model`]).
    pub model_dir: PathBuf,
    /// Every package, in conversion order.
    pub packages: Vec<PackageReport>,
    /// The correctness check, when it ran.
    pub check: Option<CheckReport>,
    /// The Swift `Resources/` bundle, when written.
    pub resources: Option<BundleReport>,
}

/// Opens `model` as a pipeline: a folder with diffusers' layout, or a single-file checkpoint
/// with `config` (a diffusers folder) describing it. `config` with a folder is an error.
pub fn open_pipeline(model: &Path, config: Option<&Path>) -> Result<Pipeline, ConversionError> {
    if model.is_file() {
        return Pipeline::open_single_file(model, config)
            .map_err(|e| ConversionError::Open(Box::new(e)));
    }
    if config.is_some() {
        return Err(ConversionError::ConfigOnFolder {
            path: model.to_path_buf(),
        });
    }
    Pipeline::open(model).map_err(|e| ConversionError::Open(Box::new(e)))
}

/// Runs `job`, reporting each step through `on_event`. Nothing is written before the model
/// is opened and the PyTorch reference (when asked for) is found working.
pub fn run_job(
    job: &ConversionJob,
    on_event: &mut dyn FnMut(ConversionEvent),
) -> Result<ConversionReport, ConversionError> {
    let dir = if needs_no_model(&job.components) {
        std::env::current_dir().map_err(ConversionError::CurrentDir)?
    } else {
        resolve(&job.model)?
    };
    let pipeline = open_pipeline(&dir, job.config.as_deref())?;
    let torch_python = job
        .options
        .check
        .as_ref()
        .and_then(|c| c.torch_python.as_ref());
    if torch_python.is_some() && dir.is_file() {
        return Err(ConversionError::TorchOnSingleFile { path: dir });
    }
    // Probe the Python stack before converting anything, so a missing package fails fast.
    let torch = match torch_python {
        Some(python) => Some(TorchReference::find(
            python,
            &unique_temp_path("sd-torch-ref"),
        )?),
        None => None,
    };
    if job.components.is_empty() {
        return Err(ConversionError::NothingToConvert);
    }
    std::fs::create_dir_all(&job.output).map_err(at("creating", &job.output))?;
    let mut report = ConversionReport {
        model_dir: dir.clone(),
        packages: convert_all(&pipeline, job, on_event)?,
        check: None,
        resources: None,
    };
    if job.options.check.is_some() {
        let setup = CheckSetup {
            model_dir: &dir,
            opts: &job.options.convert,
            torch: torch.as_ref(),
        };
        on_event(ConversionEvent::CheckStarted {
            torch_versions: torch.as_ref().map(|t| t.versions.clone()),
        });
        let check = check_correctness(&pipeline, &setup, &report.packages, &mut |row| {
            on_event(ConversionEvent::CheckRow(row.clone()))
        })?;
        let (passed, worst_db) = (check.passed(), check.worst_db());
        report.check = Some(check);
        if !passed {
            return Err(ConversionError::CheckFailed {
                worst_db,
                report: Box::new(report),
            });
        }
    }
    if job.options.bundle_resources_for_swift_cli {
        // The tokenizer files come from the diffusers folder (or `config`'s, for a single file).
        let tokenizer_root = match &job.config {
            Some(c) if dir.is_file() => c.clone(),
            _ => dir.clone(),
        };
        let b = bundle(&tokenizer_root, &job.output, &report.packages)?;
        for path in &b.missing {
            on_event(ConversionEvent::MissingTokenizerFile { path: path.clone() });
        }
        on_event(ConversionEvent::ResourcesWritten {
            dir: b.dir.clone(),
            compiled: b.compiled.clone(),
        });
        report.resources = Some(b);
    }
    Ok(report)
}

/// Converts (or keeps) every component of `job`.
fn convert_all(
    pipeline: &Pipeline,
    job: &ConversionJob,
    on_event: &mut dyn FnMut(ConversionEvent),
) -> Result<Vec<PackageReport>, ConversionError> {
    let o = &job.options;
    let total = job.components.len();
    let mut packages = Vec::with_capacity(total);
    for (i, c) in job.components.iter().enumerate() {
        let dest = job.output.join(c.package_name(&o.convert.model_version));
        let existing = sd_mil::package::inspect_destination(&dest).map_err(|source| {
            ConversionError::Write {
                path: dest.clone(),
                source: Box::new(source),
            }
        })?;
        if existing == sd_mil::package::Destination::Complete && !o.force {
            on_event(ConversionEvent::Skipped {
                index: i + 1,
                total,
                component: c.clone(),
                path: dest.clone(),
            });
            packages.push(package::kept(c.clone(), dest));
            continue;
        }
        on_event(ConversionEvent::ModelStarted {
            index: i + 1,
            total,
            component: c.clone(),
            stages: package::stages(c, o),
        });
        let p = package::convert_one(pipeline, c, &dest, o, on_event)?;
        on_event(ConversionEvent::ModelFinished(p.clone()));
        packages.push(p);
    }
    Ok(packages)
}
