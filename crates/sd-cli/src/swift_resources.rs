//! `--bundle-resources-for-swift-cli`: the packages laid out as Apple's Swift CLI
//! `Resources/` (its names: `TextEncoder.mlpackage`, `Unet.mlpackage`, …) plus the CLIP BPE
//! files `vocab.json` and `merges.txt`.

use crate::conversion::PackageReport;
use crate::fs_util::{PathError, at, copy_dir, copy_small_file};
use std::path::{Path, PathBuf};

/// What [`bundle`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BundleReport {
    /// The `Resources/` folder.
    pub dir: PathBuf,
    /// Tokenizer files the model folder lacks (the Swift CLI needs them in `Resources/`).
    pub missing: Vec<PathBuf>,
    /// The `xcrun coremlcompiler compile PKG DIR` commands that turn each package into the
    /// `.mlmodelc` the Swift CLI loads (Apple's compiler is needed for that).
    pub compile_commands: Vec<String>,
}

/// The tokenizer files the Swift CLI reads from `Resources/`.
pub const TOKENIZER_FILES: [&str; 2] = ["vocab.json", "merges.txt"];

/// Writes `<out>/Resources/`: a copy of each package under its Swift name (replacing an older
/// copy), and `vocab.json` / `merges.txt` from `<model_dir>/tokenizer/` when present.
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
        let dst = res.join(p.component.resource_name());
        // Only a package a tool wrote is replaced: never a link, a file or a foreign folder.
        let existing = sd_mil::package::inspect_destination(&dst)
            .map_err(|e| at("replacing", &dst)(std::io::Error::other(e.to_string())))?;
        if existing != sd_mil::package::Destination::Missing {
            std::fs::remove_dir_all(&dst).map_err(at("removing", &dst))?;
        }
        copy_dir(&p.path, &dst)?;
        let parent = dst.parent().unwrap_or(&res).to_path_buf();
        report.compile_commands.push(format!(
            "xcrun coremlcompiler compile {} {}",
            dst.display(),
            parent.display()
        ));
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
