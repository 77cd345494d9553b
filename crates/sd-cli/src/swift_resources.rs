//! `--bundle-resources-for-swift-cli`: the packages compiled into what Apple's Swift CLI loads
//! from `Resources/` (its names: `TextEncoder.mlmodelc`, `Unet.mlmodelc`, `UnetChunk1.mlmodelc`,
//! …) plus the CLIP BPE files `vocab.json` and `merges.txt` — on any OS, without Apple's
//! compiler.

use crate::conversion::PackageReport;
use crate::fs_util::{PathError, at, copy_small_file};
use sd_mil::package::WriteOptions;
use std::path::{Path, PathBuf};

/// What [`bundle`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BundleReport {
    /// The `Resources/` folder.
    pub dir: PathBuf,
    /// The compiled models written there.
    pub compiled: Vec<PathBuf>,
    /// Tokenizer files the model folder lacks (the Swift CLI needs them in `Resources/`).
    pub missing: Vec<PathBuf>,
}

/// The tokenizer files the Swift CLI reads from `Resources/`.
pub const TOKENIZER_FILES: [&str; 2] = ["vocab.json", "merges.txt"];

/// Writes `<out>/Resources/`: each package (and each UNet chunk) compiled under its Swift name
/// (replacing an earlier compiled model, never anything else), and `vocab.json` / `merges.txt`
/// from `<model_dir>/tokenizer/` when present.
pub fn bundle(
    model_dir: &Path,
    out: &Path,
    packages: &[PackageReport],
) -> Result<BundleReport, PathError> {
    let res = out.join("Resources");
    std::fs::create_dir_all(&res).map_err(at("creating", &res))?;
    let mut report = BundleReport {
        dir: res.clone(),
        ..Default::default()
    };
    for p in packages {
        let stem = p.component.resource_stem();
        let mut jobs = vec![(p.path.clone(), res.join(p.component.resource_name()))];
        for (i, chunk) in p.chunks.iter().enumerate() {
            jobs.push((
                chunk.path.clone(),
                res.join(format!("{stem}Chunk{}.mlmodelc", i + 1)),
            ));
        }
        for (package, dest) in jobs {
            compile(&package, &dest)?;
            report.compiled.push(dest);
        }
    }
    for f in TOKENIZER_FILES {
        let src = model_dir.join("tokenizer").join(f);
        if src.is_file() {
            copy_small_file(&src, &res.join(f))?;
        } else {
            report.missing.push(src);
        }
    }
    Ok(report)
}

/// Compiles one package into `dest` (an `.mlmodelc` folder), replacing a compiled model there.
pub fn compile(package: &Path, dest: &Path) -> Result<(), PathError> {
    let model = sd_mil::package::read_package(package)
        .map_err(|e| at("reading", package)(std::io::Error::other(e.to_string())))?;
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(at("creating", parent))?;
    }
    sd_mil::compiled::write_compiled(&model, dest, WriteOptions { overwrite: true })
        .map_err(|e| at("compiling into", dest)(std::io::Error::other(e.to_string())))
}
