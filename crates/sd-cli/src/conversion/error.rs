//! Why a conversion job stopped.

use super::ConversionReport;
use crate::check::{CheckError, PSNR_FLOOR_DB};
use crate::fs_util::PathError;
use crate::hub::ResolveError;
use crate::torch_reference::TorchReferenceError;
use sd_compress::CompressError;
use sd_convert::ConvertError;
use sd_mil::MilError;
use std::path::PathBuf;

/// A conversion job's failure.
#[derive(Debug, thiserror::Error)]
pub enum ConversionError {
    /// The model (or a ControlNet) is neither local nor in the Hub cache.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The model folder or checkpoint could not be opened.
    #[error(transparent)]
    Open(Box<ConvertError>),
    /// `config` was given for a folder.
    #[error("--config applies to single-file checkpoints; {} is a folder", path.display())]
    ConfigOnFolder {
        /// The model folder.
        path: PathBuf,
    },
    /// The PyTorch reference was asked for a single-file checkpoint.
    #[error(
        "--torch-reference runs diffusers on a diffusers folder; {} is a single file \
         (convert the folder, or check against the fp32 reference alone)",
        path.display()
    )]
    TorchOnSingleFile {
        /// The checkpoint.
        path: PathBuf,
    },
    /// The PyTorch reference is unavailable.
    #[error(transparent)]
    Torch(#[from] TorchReferenceError),
    /// The job names no component.
    #[error(
        "nothing to convert: pass --convert-text-encoder, --convert-unet, --convert-vae-decoder, --convert-vae-encoder, --convert-safety-checker, --convert-controlnet or --convert-multilingual-projection"
    )]
    NothingToConvert,
    /// A file-system operation failed.
    #[error(transparent)]
    Io(#[from] PathError),
    /// The working directory is unreadable (a projection-only job runs there).
    #[error("reading the current directory")]
    CurrentDir(#[source] std::io::Error),
    /// A network could not be built.
    #[error("converting {component}")]
    Build {
        /// The component's suffix.
        component: String,
        /// The cause.
        #[source]
        source: Box<ConvertError>,
    },
    /// Palettizing or chunking failed.
    #[error("{what} {component}")]
    Compress {
        /// `palettizing` or `chunking`.
        what: &'static str,
        /// The component's suffix.
        component: String,
        /// The cause.
        #[source]
        source: Box<CompressError>,
    },
    /// A package could not be written.
    #[error("writing {}", path.display())]
    Write {
        /// The package.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<MilError>,
    },
    /// The correctness check could not run.
    #[error(transparent)]
    Check(#[from] CheckError),
    /// A package fell below [`PSNR_FLOOR_DB`]; the report holds every package and row.
    #[error("output correctness check failed: {worst_db:.1} dB < {PSNR_FLOOR_DB} dB")]
    CheckFailed {
        /// The lowest PSNR.
        worst_db: f64,
        /// What the job did up to the check, and the check's rows.
        report: Box<ConversionReport>,
    },
}
