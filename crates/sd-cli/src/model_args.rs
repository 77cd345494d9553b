//! The model flags `sd generate` and `sd serve` share: which folder, which precision.

use anyhow::{Context, Result, bail};
use sd_runtime::Precision;
use std::path::{Path, PathBuf};

/// `--compute-precision`: fp16 (the models' own, as Core ML) or fp32.
pub fn precision(name: &str) -> Result<Precision> {
    match name.to_ascii_lowercase().as_str() {
        "fp16" | "program" => Ok(Precision::Program),
        "fp32" => Ok(Precision::Fp32),
        other => bail!("--compute-precision {other}: choose fp16 or fp32"),
    }
}

/// The folder of Core ML models: `--resource-path` as given, or `--model` converted on first
/// use into the cache (reported on stderr).
pub fn folder(resource_path: Option<&Path>, model: Option<&Path>) -> Result<PathBuf> {
    match (resource_path, model) {
        (Some(p), None) => Ok(p.to_path_buf()),
        (None, Some(m)) => {
            eprintln!("preparing {} …", m.display());
            let entry =
                sd_cli::model_cache::prepare(m, &sd_cli::model_cache::CacheOptions::default())
                    .with_context(|| format!("converting {}", m.display()))?;
            if entry.converted {
                eprintln!("converted into {}", entry.folder.display());
            } else {
                eprintln!("reusing the conversion in {}", entry.folder.display());
            }
            Ok(entry.folder)
        }
        (None, None) => bail!("name the models: --resource-path DIR or --model DIR|FILE"),
        (Some(_), Some(_)) => bail!("give --resource-path or --model, not both"),
    }
}

/// The model's name for PNG metadata: `--model`'s file or folder name, else `None` (the
/// folder's converter id or name is used).
pub fn model_name(model: Option<&Path>) -> Option<String> {
    model.map(|m| {
        m.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into())
    })
}
