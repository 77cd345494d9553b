//! One network through its stages: build, palettize (optional), chunk (optional, after
//! compression — Apple's tool chunks first and leaves the chunks uncompressed), write.

use super::selection::{chunks, palettizes};
use super::{ConversionError, ConversionEvent, ConversionOptions, PaletteBits, Stage, StageDone};
use sd_convert::{Component, Pipeline};
use sd_mil::package::{WriteOptions, write_package};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A package a job wrote (or kept).
#[derive(Debug, Clone, PartialEq)]
pub struct PackageReport {
    /// The network.
    pub component: Component,
    /// Its `.mlpackage`.
    pub path: PathBuf,
    /// The package existed and was kept (`force` off); `ops` and `chunks` are then unknown.
    pub skipped: bool,
    /// Operations in the program's `main` function.
    pub ops: Option<usize>,
    /// Bytes of its `weight.bin`.
    pub weight_bytes: u64,
    /// The UNet chunks written beside it (`…_chunk1`, `…_chunk2`), when chunked.
    pub chunks: Vec<ChunkReport>,
    /// Seconds the conversion took (0 when skipped).
    pub seconds: f64,
}

/// One of the two UNet chunks.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkReport {
    /// Its `.mlpackage`.
    pub path: PathBuf,
    /// Operations in its `main` function.
    pub ops: usize,
    /// Bytes of its `weight.bin`.
    pub weight_bytes: u64,
}

/// Bytes of a package's `weight.bin` (0 when it has none).
pub fn weight_bytes(package: &Path) -> u64 {
    std::fs::metadata(package.join("Data/com.apple.CoreML/weights/weight.bin"))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// The report of a package kept as it is.
pub(super) fn kept(component: Component, path: PathBuf) -> PackageReport {
    PackageReport {
        weight_bytes: weight_bytes(&path),
        component,
        path,
        skipped: true,
        ops: None,
        chunks: Vec::new(),
        seconds: 0.0,
    }
}

/// How `c` is palettized under `o`: the recipe for the UNet and control-unet when there is
/// one, else `--quantize-nbits` for the networks it applies to.
fn palette_bits(c: &Component, o: &ConversionOptions) -> Option<PaletteBits> {
    match &o.unet_recipe {
        Some(recipe) if chunks(c) => Some(PaletteBits::Recipe {
            named: recipe.len(),
            others: o.quantize_nbits,
        }),
        _ => o
            .quantize_nbits
            .filter(|_| palettizes(c))
            .map(PaletteBits::Uniform),
    }
}

/// How many stages `c` goes through under `o`.
pub(super) fn stages(c: &Component, o: &ConversionOptions) -> u64 {
    let compress = palette_bits(c, o).is_some();
    let chunk = o.chunk_unet && chunks(c);
    2 + u64::from(compress) + 2 * u64::from(chunk)
}

/// Converts `c` into the package `dest`.
pub(super) fn convert_one(
    pipeline: &Pipeline,
    c: &Component,
    dest: &Path,
    o: &ConversionOptions,
    emit: &mut dyn FnMut(ConversionEvent),
) -> Result<PackageReport, ConversionError> {
    let start = Instant::now();
    let suffix = c.suffix();
    let write = |m: &sd_mil::Model, path: &Path| {
        write_package(m, path, WriteOptions { overwrite: o.force }).map_err(|source| {
            ConversionError::Write {
                path: path.to_path_buf(),
                source: Box::new(source),
            }
        })
    };
    emit(ConversionEvent::Stage(Stage::Building {
        attention: o.convert.attention,
    }));
    let mut model = pipeline
        .build(c, &o.convert)
        .map_err(|source| ConversionError::Build {
            component: suffix.clone(),
            source: Box::new(source),
        })?;
    let ops = model.program.main().map_or(0, |f| f.operations.len());
    emit(ConversionEvent::StageDone(StageDone::Built {
        ops,
        seconds: start.elapsed().as_secs_f64(),
    }));
    if let Some(bits) = palette_bits(c, o) {
        emit(ConversionEvent::Stage(Stage::Palettizing {
            bits: bits.clone(),
        }));
        let mut opts = sd_compress::PalettizeOptions::new(o.quantize_nbits.map_or(16, u32::from));
        if let (PaletteBits::Recipe { .. }, Some(recipe)) = (&bits, &o.unet_recipe) {
            opts.per_weight_bits = recipe.clone();
        }
        let r = sd_compress::palettize(&mut model.program, &opts).map_err(|source| {
            ConversionError::Compress {
                what: "palettizing",
                component: suffix.clone(),
                source: Box::new(source),
            }
        })?;
        emit(ConversionEvent::StageDone(StageDone::Palettized {
            weights: r.weights,
            bits,
        }));
    }
    let mut chunk_reports = Vec::new();
    if o.chunk_unet && chunks(c) {
        emit(ConversionEvent::Stage(Stage::Chunking));
        let halves = sd_compress::chunk(&model).map_err(|source| ConversionError::Compress {
            what: "chunking",
            component: suffix.clone(),
            source: Box::new(source),
        })?;
        let stem = dest
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("unet")
            .to_string();
        let dir = dest.parent().unwrap_or(Path::new("."));
        for (n, m) in [(1, &halves.first), (2, &halves.second)] {
            let path = dir.join(format!("{stem}_chunk{n}.mlpackage"));
            write(m, &path)?;
            emit(ConversionEvent::StageDone(StageDone::WroteChunk {
                path: path.clone(),
            }));
            chunk_reports.push(ChunkReport {
                ops: m.program.main().map_or(0, |f| f.operations.len()),
                weight_bytes: weight_bytes(&path),
                path,
            });
        }
    }
    emit(ConversionEvent::Stage(Stage::Writing {
        path: dest.to_path_buf(),
    }));
    write(&model, dest)?;
    let bytes = weight_bytes(dest);
    emit(ConversionEvent::StageDone(StageDone::Wrote {
        weight_bytes: bytes,
    }));
    Ok(PackageReport {
        component: c.clone(),
        path: dest.to_path_buf(),
        skipped: false,
        ops: Some(ops),
        weight_bytes: bytes,
        chunks: chunk_reports,
        seconds: start.elapsed().as_secs_f64(),
    })
}
