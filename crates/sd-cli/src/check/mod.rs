//! The correctness check (`sd convert --check-output-correctness`): every written package runs
//! in sd-runtime on random inputs against a reference — the same network built with ORIGINAL
//! attention, uncompressed, in fp32 (always), and diffusers itself through
//! [`TorchReference`] when given — one [`CheckRow`] per output. Below [`PSNR_FLOOR_DB`] the
//! report does not pass.

mod inputs;

use crate::conversion::PackageReport;
use crate::fs_util::TempDir;
use crate::torch_reference::{TorchReference, TorchReferenceError};
use sd_convert::clip::ClipOutputs;
use sd_convert::{AttentionImpl, Component, ConvertError, ConvertOptions, Pipeline, Precision};
use sd_mil::MilError;
use sd_mil::package::{WriteOptions, write_package};
use std::path::{Path, PathBuf};

pub use inputs::random_inputs;

/// Apple's floor for a converted model against its reference.
pub const PSNR_FLOOR_DB: f64 = 35.0;

/// CLIP's token table (ids 49406 and 49407 are BOS and EOT).
const CLIP_VOCAB: usize = 49408;

/// Where the reference of the check comes from.
pub struct CheckSetup<'a> {
    /// The diffusers folder (or single file) the packages came from.
    pub model_dir: &'a Path,
    /// The conversion options the packages were written with.
    pub opts: &'a ConvertOptions,
    /// diffusers itself as a second reference.
    pub torch: Option<&'a TorchReference>,
}

/// One output of one package against its references.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckRow {
    /// The network.
    pub component: Component,
    /// The output feature.
    pub output: String,
    /// PSNR against the fp32 ORIGINAL-attention build, in dB.
    pub vs_fp32_db: f64,
    /// PSNR against diffusers, in dB, when that reference ran.
    pub vs_torch_db: Option<f64>,
}

impl CheckRow {
    /// The lower of the row's PSNRs.
    pub fn worst_db(&self) -> f64 {
        self.vs_torch_db
            .map_or(self.vs_fp32_db, |t| t.min(self.vs_fp32_db))
    }
}

/// Every row of a check.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckReport {
    /// The rows, package by package, output by output.
    pub rows: Vec<CheckRow>,
    /// The versions of the PyTorch reference stack, when it ran.
    pub torch_versions: Option<String>,
}

impl CheckReport {
    /// The lowest PSNR of any row (infinite when there is none).
    pub fn worst_db(&self) -> f64 {
        self.rows
            .iter()
            .map(CheckRow::worst_db)
            .fold(f64::INFINITY, f64::min)
    }

    /// The lowest PSNR of `component`'s outputs, if it was checked.
    pub fn worst_db_of(&self, component: &Component) -> Option<f64> {
        self.rows
            .iter()
            .filter(|r| &r.component == component)
            .map(CheckRow::worst_db)
            .reduce(f64::min)
    }

    /// Whether every row reaches [`PSNR_FLOOR_DB`].
    pub fn passed(&self) -> bool {
        self.worst_db() >= PSNR_FLOOR_DB
    }
}

/// Why the check could not run (a low PSNR is not an error: see [`CheckReport::passed`]).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The network could not be read or configured.
    #[error("{what}")]
    Convert {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: Box<ConvertError>,
    },
    /// A package (reference or checked) could not be written.
    #[error("writing {}", path.display())]
    Write {
        /// The package.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<MilError>,
    },
    /// A package could not be loaded or run.
    #[error("running {}", path.display())]
    Run {
        /// The package.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<sd_runtime::RuntimeError>,
    },
    /// The PyTorch reference failed.
    #[error(transparent)]
    Torch(#[from] TorchReferenceError),
    /// The PyTorch reference lacks an output of the package.
    #[error("the PyTorch reference of {component} has no output `{output}`")]
    MissingTorchOutput {
        /// The component's suffix.
        component: String,
        /// The output feature.
        output: String,
    },
}

/// Runs the check over `packages`, calling `on_row` as each row is measured.
pub fn check_correctness(
    pipeline: &Pipeline,
    setup: &CheckSetup<'_>,
    packages: &[PackageReport],
    on_row: &mut dyn FnMut(&CheckRow),
) -> Result<CheckReport, CheckError> {
    let tmp = TempDir::new("sd-convert-check");
    let ref_opts = ConvertOptions {
        attention: AttentionImpl::Original,
        precision: Precision::Float32,
        ..setup.opts.clone()
    };
    let mut report = CheckReport {
        rows: Vec::new(),
        torch_versions: setup.torch.map(|t| t.versions.clone()),
    };
    for p in packages {
        for row in check_package(pipeline, setup, &ref_opts, p, tmp.path())? {
            on_row(&row);
            report.rows.push(row);
        }
    }
    Ok(report)
}

/// The rows of one package.
fn check_package(
    pipeline: &Pipeline,
    s: &CheckSetup<'_>,
    ref_opts: &ConvertOptions,
    p: &PackageReport,
    tmp: &Path,
) -> Result<Vec<CheckRow>, CheckError> {
    let name = p.component.suffix();
    let reference =
        pipeline
            .build(&p.component, ref_opts)
            .map_err(|source| CheckError::Convert {
                what: format!("building the fp32 reference of {name}"),
                source: Box::new(source),
            })?;
    let ref_path = tmp.join(p.component.package_name("reference"));
    write_package(&reference, &ref_path, WriteOptions { overwrite: true }).map_err(|source| {
        CheckError::Write {
            path: ref_path.clone(),
            source: Box::new(source),
        }
    })?;
    let vocab = match p.component {
        Component::TextEncoder => {
            pipeline
                .text_encoder_config()
                .map_err(|source| CheckError::Convert {
                    what: "reading the text encoder configuration".into(),
                    source: Box::new(source),
                })?
                .vocab_size
        }
        _ => CLIP_VOCAB,
    };
    let inputs = random_inputs(&reference, vocab, 93);
    let run = |path: &Path, precision| {
        sd_runtime::Model::load_cpu(path, precision)
            .and_then(|m| m.predict(&inputs))
            .map_err(|source| CheckError::Run {
                path: path.to_path_buf(),
                source: Box::new(source),
            })
    };
    let got = run(&p.path, sd_runtime::Precision::Program)?;
    let fp32 = run(&ref_path, sd_runtime::Precision::Fp32)?;
    let torch = match s.torch {
        Some(t) => Some(t.run(
            &p.component,
            s.model_dir,
            s.opts.variant.as_deref(),
            s.opts.text_outputs == ClipOutputs::HiddenEmbeds,
            &inputs,
            tmp,
        )?),
        None => None,
    };
    let mut rows = Vec::new();
    for f in &reference.description.outputs {
        let ours = got[&f.name].to_f32_vec();
        let vs_fp32_db = sd_runtime::psnr(&ours, &fp32[&f.name].to_f32_vec());
        let vs_torch_db = match &torch {
            Some(t) => {
                let want = t
                    .get(&f.name)
                    .ok_or_else(|| CheckError::MissingTorchOutput {
                        component: name.clone(),
                        output: f.name.clone(),
                    })?;
                Some(sd_runtime::psnr(&ours, &want.to_f32_vec()))
            }
            None => None,
        };
        rows.push(CheckRow {
            component: p.component.clone(),
            output: f.name.clone(),
            vs_fp32_db,
            vs_torch_db,
        });
    }
    Ok(rows)
}
