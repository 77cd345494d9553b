//! The files image generation reads beside the packages: the CLIP tokenizer, the scheduler's
//! and the VAE's configs (the latent scaling factor), the safety checker's preprocessor config.

use crate::fs_util::{PathError, at, at_file, copy_small_file};
use sd_convert::{ConvertError, Pipeline};
use std::path::Path;

/// The files copied from the model folder when present, relative to it and to the entry.
pub const EXTRA_FILES: &[&str] = &[
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json",
    "scheduler/scheduler_config.json",
    "vae/config.json",
    "feature_extractor/preprocessor_config.json",
];

/// Why the extras could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExtrasError {
    /// Copying or writing a file failed.
    #[error(transparent)]
    Io(#[from] PathError),
    /// A single file's VAE configuration could not be inferred.
    #[error("inferring the VAE configuration of {}", path.display())]
    Infer {
        /// The checkpoint.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: Box<ConvertError>,
    },
}

/// Copies [`EXTRA_FILES`] from `source` (the diffusers folder, or a single file's config
/// folder) into `entry`; a single-file checkpoint without a `vae/config.json` gets the one
/// inferred from its tensors. Returns the files written, relative to `entry`.
pub fn write_extras(
    source: Option<&Path>,
    pipeline: &Pipeline,
    entry: &Path,
) -> Result<Vec<String>, ExtrasError> {
    let mut written = Vec::new();
    for rel in EXTRA_FILES {
        // Present as anything (a FIFO or a device included: refused by the copy, not skipped).
        if let Some(root) = source.filter(|s| s.join(rel).exists()) {
            // `rel` may not climb out of `root`; links the user made are followed.
            let src = sd_mil::files::join_relative(root, rel).map_err(at_file("copying", root))?;
            copy_small_file(&src, &entry.join(rel))?;
            written.push(rel.to_string());
        }
    }
    let vae = "vae/config.json";
    if let Some(single) = pipeline.single_file.as_ref().filter(|s| s.has("vae"))
        && !written.iter().any(|w| w == vae)
    {
        let config = single
            .inferred_config("vae")
            .map_err(|source| ExtrasError::Infer {
                path: single.path().to_path_buf(),
                source: Box::new(source),
            })?;
        let dst = entry.join(vae);
        if let Some(dir) = dst.parent() {
            std::fs::create_dir_all(dir).map_err(at("creating", dir))?;
        }
        let json = serde_json::to_string_pretty(&config).expect("a JSON value serializes");
        sd_mil::files::write_atomic(&dst, (json + "\n").as_bytes())
            .map_err(at_file("writing", &dst))?;
        written.push(vae.into());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_file_without_configs_gets_its_inferred_vae_config() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let ckpt = root.join("fixtures/models/single-file/sd1-micro.safetensors");
        let pipeline = Pipeline::open_single_file(&ckpt, None).unwrap();
        let out = crate::fs_util::TempDir::new("sd-cli-extras");
        let written = write_extras(None, &pipeline, out.path()).unwrap();
        assert_eq!(written, ["vae/config.json"]);
        let text = std::fs::read_to_string(out.path().join("vae/config.json")).unwrap();
        let vae: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(vae["scaling_factor"].as_f64().is_some(), "{vae}");
    }
}
