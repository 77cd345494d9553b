//! The model flags `sd generate` and `sd serve` share: which folder, which tokenizer, which
//! device and precision.

use crate::hub_fetch::{Local, localize};
use anyhow::{Context, Result, bail};
use sd_cli::hub::RepoKind;
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
    /// (`$SD_CACHE_DIR`, else `~/.cache/sd`) and reused after; or a Hugging Face Hub id
    /// (`owner/name`) of such a model or of Core ML packages, downloaded into the Hub cache
    /// (`HF_HOME`, `HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_OFFLINE` apply).
    #[arg(long, value_name = "DIR|FILE|ID")]
    pub model: Option<String>,
    /// With a Hub id: the branch, tag or commit (default main).
    #[arg(long, requires = "model")]
    pub revision: Option<String>,
    /// With a Hub id: the repository folder of Core ML packages (`original/packages`), a
    /// checkpoint file in it, or a diffusers weight variant (`fp16`).
    #[arg(long, requires = "model")]
    pub variant: Option<String>,
    /// A folder with the CLIP tokenizer (vocab.json, merges.txt) when the resource folder has none.
    #[arg(long, value_name = "DIR")]
    pub tokenizer: Option<PathBuf>,
    /// Where the models run: cpu, cuda (the native CUDA engine; needs `sd` built with
    /// `--features cuda`) or cuda-burn (burn's CUDA backend; `--features cuda-burn`).
    #[arg(long, value_enum, default_value_t = crate::run::Device::Cpu)]
    pub device: crate::run::Device,
    /// fp16 (the models' own precision, as Core ML) or fp32.
    #[arg(long, default_value = "fp16")]
    pub compute_precision: String,
}

/// The models the flags name, ready to load.
pub struct Models {
    /// The folder of Core ML models.
    pub folder: PathBuf,
    /// A tokenizer folder the model came with, when the folder has none.
    pub tokenizer: Option<PathBuf>,
    /// The model's name for PNG metadata (`--model`'s file or folder name, or its Hub id).
    pub name: Option<String>,
}

impl ModelArgs {
    /// The models to load: `--resource-path` as it is, or `--model` fetched from the Hub when
    /// it is an id, then converted on first use unless it is Core ML packages already (a bad
    /// `--compute-precision` is reported before anything is fetched or converted).
    pub fn resolve(&self) -> Result<Models> {
        precision(&self.compute_precision)?;
        match (&self.resource_path, &self.model) {
            (Some(p), None) => Ok(Models {
                folder: p.clone(),
                tokenizer: None,
                name: None,
            }),
            (None, Some(m)) => {
                let models = match localize(m, self.revision.as_deref(), self.variant.as_deref())? {
                    Local::Path(p) => Models {
                        folder: convert_on_first_use(&p)?,
                        tokenizer: None,
                        name: Some(model_name(&p)),
                    },
                    Local::Hub(f) if f.kind == RepoKind::Component => bail!(
                        "{} is a single diffusers model (a config.json and its weights, such as a \
                         ControlNet), not a pipeline; name a pipeline or a folder of Core ML packages",
                        f.repo
                    ),
                    Local::Hub(f) => Models {
                        folder: if f.kind == RepoKind::CoreMl {
                            f.path.clone()
                        } else {
                            convert_on_first_use(&f.path)?
                        },
                        tokenizer: f.tokenizer,
                        name: Some(f.repo),
                    },
                };
                Ok(models)
            }
            (None, None) => bail!("name the models: --resource-path DIR or --model DIR|FILE|ID"),
            (Some(_), Some(_)) => bail!("give --resource-path or --model, not both"),
        }
    }

    /// The pipeline options these flags give for `models`, on the backend's default device.
    pub fn pipeline_options<B: RtBackend>(&self, models: &Models) -> Result<PipelineOptions<B>> {
        let mut o = PipelineOptions::new(precision(&self.compute_precision)?, Default::default());
        o.tokenizer = self.tokenizer.clone().or_else(|| models.tokenizer.clone());
        Ok(o)
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

/// A diffusers folder or checkpoint converted into the model cache on first use (reported
/// on stderr).
fn convert_on_first_use(m: &Path) -> Result<PathBuf> {
    eprintln!("preparing {} …", m.display());
    let entry = sd_cli::model_cache::prepare(m, &sd_cli::model_cache::CacheOptions::default())
        .with_context(|| format!("converting {}", m.display()))?;
    if entry.converted {
        eprintln!("converted into {}", entry.folder.display());
    } else {
        eprintln!("reusing the conversion in {}", entry.folder.display());
    }
    Ok(entry.folder)
}

/// The model's name for PNG metadata: the file or folder name.
fn model_name(m: &Path) -> String {
    m.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}
