//! The model flags `sd generate` and `sd serve` share: which folder, which tokenizer, which
//! device and precision.

use anyhow::{Context, Result, bail};
use sd_runtime::pipeline::PipelineOptions;
use sd_runtime::{Precision, RtBackend};
use std::path::{Path, PathBuf};

/// Which models to load and where they run.
#[derive(clap::Args)]
pub struct ModelArgs {
    /// A folder of Core ML models: Apple's Swift `Resources/` (TextEncoder, Unet or
    /// UnetChunk1+2, VAEDecoder, …, vocab.json, merges.txt) or what `sd convert -o` writes.
    #[arg(long, value_name = "DIR", conflicts_with = "model")]
    pub resource_path: Option<PathBuf>,
    /// A diffusers folder or single-file checkpoint, converted on first use into a cache folder
    /// (`$SD_CACHE_DIR`, else `~/.cache/sd`) and reused after.
    #[arg(long, value_name = "DIR|FILE")]
    pub model: Option<PathBuf>,
    /// A folder with the CLIP tokenizer (vocab.json, merges.txt) when the resource folder has none.
    #[arg(long, value_name = "DIR")]
    pub tokenizer: Option<PathBuf>,
    /// Where the models run: cpu, or cuda (needs `sd` built with `--features cuda`).
    #[arg(long, value_enum, default_value_t = crate::run::Device::Cpu)]
    pub device: crate::run::Device,
    /// fp16 (the models' own precision, as Core ML) or fp32.
    #[arg(long, default_value = "fp16")]
    pub compute_precision: String,
}

impl ModelArgs {
    /// The folder to load (converting `--model` on first use; a bad `--compute-precision` is
    /// reported before any conversion).
    pub fn folder(&self) -> Result<PathBuf> {
        precision(&self.compute_precision)?;
        folder(self.resource_path.as_deref(), self.model.as_deref())
    }

    /// The pipeline options these flags give, on the backend's default device.
    pub fn pipeline_options<B: RtBackend>(&self) -> Result<PipelineOptions<B>> {
        let mut o = PipelineOptions::new(precision(&self.compute_precision)?, Default::default());
        o.tokenizer = self.tokenizer.clone();
        Ok(o)
    }

    /// `--model`'s name for PNG metadata, if given.
    pub fn model_name(&self) -> Option<String> {
        model_name(self.model.as_deref())
    }
}

/// `--compute-precision`: fp16 (the models' own, as Core ML) or fp32.
fn precision(name: &str) -> Result<Precision> {
    match name.to_ascii_lowercase().as_str() {
        "fp16" | "program" => Ok(Precision::Program),
        "fp32" => Ok(Precision::Fp32),
        other => bail!("--compute-precision {other}: choose fp16 or fp32"),
    }
}

/// The folder of Core ML models: `--resource-path` as given, or `--model` converted on first
/// use into the cache (reported on stderr).
fn folder(resource_path: Option<&Path>, model: Option<&Path>) -> Result<PathBuf> {
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
fn model_name(model: Option<&Path>) -> Option<String> {
    model.map(|m| {
        m.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into())
    })
}
