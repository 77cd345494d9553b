//! What a running job reports through its callback. The `Display` forms are the lines `sd
//! convert` prints; the callers decide where (progress bars, logs, nowhere).

use super::PackageReport;
use crate::check::CheckRow;
use sd_convert::{AttentionImpl, Component};
use std::fmt;
use std::path::PathBuf;

/// One step of a conversion job, in the order it happens.
#[derive(Debug, Clone)]
pub enum ConversionEvent {
    /// A package exists and `force` is off: it is kept as it is.
    Skipped {
        /// 1-based position among the job's components.
        index: usize,
        /// Number of components.
        total: usize,
        /// The network.
        component: Component,
        /// The existing package.
        path: PathBuf,
    },
    /// A network starts converting.
    ModelStarted {
        /// 1-based position among the job's components.
        index: usize,
        /// Number of components.
        total: usize,
        /// The network.
        component: Component,
        /// How many stages it goes through (build, compress, chunks, write).
        stages: u64,
    },
    /// The current network enters a stage.
    Stage(Stage),
    /// The current network finished a stage.
    StageDone(StageDone),
    /// The current network's package is written.
    ModelFinished(PackageReport),
    /// The correctness check starts (its references are ready).
    CheckStarted {
        /// The PyTorch reference's versions, when diffusers is a reference too.
        torch_versions: Option<String>,
    },
    /// One output of the correctness check is measured.
    CheckRow(CheckRow),
    /// A tokenizer file the Swift CLI needs is missing from the model folder.
    MissingTokenizerFile {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The Swift `Resources/` folder is written.
    ResourcesWritten {
        /// The folder.
        dir: PathBuf,
        /// The compiled models (`.mlmodelc`) written there.
        compiled: Vec<PathBuf>,
    },
}

/// The bit widths a network is palettized to.
#[derive(Debug, Clone, PartialEq)]
pub enum PaletteBits {
    /// Every weight above the size threshold at this many bits (`--quantize-nbits`).
    Uniform(u8),
    /// A mixed-bit recipe (`--mixed-bit-recipe`).
    Recipe {
        /// Weights the recipe names.
        named: usize,
        /// The width of the other weights; `None`: they stay uncompressed.
        others: Option<u8>,
    },
}

impl fmt::Display for PaletteBits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PaletteBits::Uniform(n) => write!(f, "{n} bits"),
            PaletteBits::Recipe { named, others } => {
                write!(f, "a mixed-bit recipe of {named} weights (others ")?;
                match others {
                    Some(n) => write!(f, "at {n} bits)"),
                    None => f.write_str("uncompressed)"),
                }
            }
        }
    }
}

/// A stage of one network's conversion.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// Building the MIL program.
    Building {
        /// The attention form.
        attention: AttentionImpl,
    },
    /// Palettizing the weights.
    Palettizing {
        /// To what widths.
        bits: PaletteBits,
    },
    /// Cutting the UNet in two.
    Chunking,
    /// Writing the package.
    Writing {
        /// The package.
        path: PathBuf,
    },
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Building { attention } => write!(f, "building ({attention})"),
            Stage::Palettizing { bits } => write!(f, "palettizing to {bits}"),
            Stage::Chunking => f.write_str("chunking"),
            Stage::Writing { path } => write!(f, "writing {}", path.display()),
        }
    }
}

/// What a finished stage did.
#[derive(Debug, Clone, PartialEq)]
pub enum StageDone {
    /// The program is built.
    Built {
        /// Operations in `main`.
        ops: usize,
        /// Seconds since the network started.
        seconds: f64,
    },
    /// The weights are palettized.
    Palettized {
        /// Weights palettized.
        weights: usize,
        /// To what widths.
        bits: PaletteBits,
    },
    /// A UNet chunk is written.
    WroteChunk {
        /// The chunk's package.
        path: PathBuf,
    },
    /// The package is written.
    Wrote {
        /// Bytes of `weight.bin`.
        weight_bytes: u64,
    },
}

impl fmt::Display for StageDone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StageDone::Built { ops, seconds } => write!(f, "built {ops} ops in {seconds:.1} s"),
            StageDone::Palettized { weights, bits } => {
                write!(f, "palettized {weights} weights to {bits}")
            }
            StageDone::WroteChunk { path } => write!(f, "wrote {}", path.display()),
            StageDone::Wrote { weight_bytes } => {
                write!(f, "wrote {:.1} MB of weights", *weight_bytes as f64 / 1e6)
            }
        }
    }
}
