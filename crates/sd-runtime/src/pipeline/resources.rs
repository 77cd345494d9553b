//! Which Core ML models a folder holds: Apple's Swift `Resources/` names (`TextEncoder`, `Unet`
//! or `UnetChunk1` + `UnetChunk2`, …) or the names `sd convert -o` and Apple's `torch2coreml`
//! write (`Stable_Diffusion_version_<id>_<part>.mlpackage`).

use super::error::{PipelineError, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A UNet as one package or as Apple's two chunks (chunks preferred, as Apple's pipeline does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnetFiles {
    /// One package.
    Whole(PathBuf),
    /// `chunk1` then `chunk2`: the second takes the first's outputs plus the UNet inputs.
    Chunked(PathBuf, PathBuf),
}

impl UnetFiles {
    /// The packages, in run order.
    pub fn paths(&self) -> Vec<&Path> {
        match self {
            UnetFiles::Whole(p) => vec![p],
            UnetFiles::Chunked(a, b) => vec![a, b],
        }
    }
}

/// The models of one resource folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// The folder.
    pub root: PathBuf,
    /// The `<id>` of `Stable_Diffusion_version_<id>_…` packages, when the folder has them.
    pub model_id: Option<String>,
    /// The text encoder.
    pub text_encoder: Option<PathBuf>,
    /// The UNet.
    pub unet: Option<UnetFiles>,
    /// The UNet with `additional_residual_*` inputs (ControlNet).
    pub controlled_unet: Option<UnetFiles>,
    /// The VAE decoder.
    pub vae_decoder: Option<PathBuf>,
    /// The VAE encoder (image-to-image, inpainting).
    pub vae_encoder: Option<PathBuf>,
    /// The safety checker.
    pub safety_checker: Option<PathBuf>,
    /// ControlNets by name (`controlnet/<Name>.mlpackage`, or `ControlNet_<name>.mlpackage`).
    pub controlnets: Vec<(String, PathBuf)>,
    /// The folder holding `vocab.json` and `merges.txt`, when one was found.
    pub tokenizer: Option<PathBuf>,
    /// A diffusers `scheduler_config.json`, when the folder has one.
    pub scheduler_config: Option<PathBuf>,
}

/// Model file extensions, in order of preference.
const EXTENSIONS: &[&str] = &["mlpackage", "mlmodelc"];

fn find(root: &Path, stem: &str) -> Option<PathBuf> {
    EXTENSIONS
        .iter()
        .map(|e| root.join(format!("{stem}.{e}")))
        .find(|p| p.is_dir())
}

fn unet(root: &Path, whole: &str, chunk: &str) -> Option<UnetFiles> {
    match (
        find(root, &format!("{chunk}1")),
        find(root, &format!("{chunk}2")),
    ) {
        (Some(a), Some(b)) => Some(UnetFiles::Chunked(a, b)),
        _ => find(root, whole).map(UnetFiles::Whole),
    }
}

fn is_tokenizer_dir(p: &Path) -> bool {
    p.join("vocab.json").is_file() && p.join("merges.txt").is_file()
}

/// The `<id>` of every `Stable_Diffusion_version_<id>_<part>` package in `root`.
fn converter_ids(root: &Path) -> Result<BTreeSet<String>> {
    let mut ids = BTreeSet::new();
    let entries = std::fs::read_dir(root).map_err(|e| PipelineError::Config {
        path: root.to_path_buf(),
        reason: format!("listing the folder: {e}"),
    })?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("Stable_Diffusion_version_") else {
            continue;
        };
        let Some(stem) = EXTENSIONS
            .iter()
            .find_map(|e| rest.strip_suffix(&format!(".{e}")))
        else {
            continue;
        };
        for part in CONVERTER_PARTS {
            if let Some(id) = stem.strip_suffix(&format!("_{part}")) {
                ids.insert(id.to_string());
                break;
            }
        }
    }
    Ok(ids)
}

/// Part suffixes of the converter's names, longest first so `unet_chunk1` wins over `unet`.
const CONVERTER_PARTS: &[&str] = &[
    "control-unet_chunk1",
    "control-unet_chunk2",
    "control-unet",
    "unet_chunk1",
    "unet_chunk2",
    "unet",
    "text_encoder",
    "vae_decoder",
    "vae_encoder",
    "safety_checker",
];

impl Resources {
    /// Finds the models in `root`, in either naming. A folder with packages of several
    /// converter ids is ambiguous (an error).
    pub fn discover(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        if !root.is_dir() {
            return Err(PipelineError::NotAFolder {
                path: root.to_path_buf(),
            });
        }
        let mut r = Resources {
            root: root.to_path_buf(),
            ..Default::default()
        };
        // Apple's Swift Resources names.
        r.text_encoder = find(root, "TextEncoder");
        r.unet = unet(root, "Unet", "UnetChunk");
        r.controlled_unet = unet(root, "ControlledUnet", "ControlledUnetChunk");
        r.vae_decoder = find(root, "VAEDecoder");
        r.vae_encoder = find(root, "VAEEncoder");
        r.safety_checker = find(root, "SafetyChecker");
        // The converter's names fill what is still missing.
        let ids = converter_ids(root)?;
        if ids.len() > 1 {
            return Err(PipelineError::AmbiguousModels {
                folder: root.to_path_buf(),
                ids: ids.into_iter().collect::<Vec<_>>().join(", "),
            });
        }
        if let Some(id) = ids.into_iter().next() {
            r.model_id = Some(id.clone());
            let stem = |part: &str| format!("Stable_Diffusion_version_{id}_{part}");
            r.text_encoder = r.text_encoder.or_else(|| find(root, &stem("text_encoder")));
            r.unet = r
                .unet
                .or_else(|| unet(root, &stem("unet"), &stem("unet_chunk")));
            r.controlled_unet = r
                .controlled_unet
                .or_else(|| unet(root, &stem("control-unet"), &stem("control-unet_chunk")));
            r.vae_decoder = r.vae_decoder.or_else(|| find(root, &stem("vae_decoder")));
            r.vae_encoder = r.vae_encoder.or_else(|| find(root, &stem("vae_encoder")));
            r.safety_checker = r
                .safety_checker
                .or_else(|| find(root, &stem("safety_checker")));
        }
        r.controlnets = controlnets(root);
        r.tokenizer = [root.to_path_buf(), root.join("tokenizer")]
            .into_iter()
            .find(|p| is_tokenizer_dir(p));
        r.scheduler_config = [
            root.join("scheduler_config.json"),
            root.join("scheduler/scheduler_config.json"),
        ]
        .into_iter()
        .find(|p| p.is_file());
        Ok(r)
    }

    /// The ControlNet called `name` (case-insensitive; `_`/`-` ignored, so `canny`,
    /// `Canny` and `lllyasviel_sd-controlnet-canny` style names all match their file).
    pub fn controlnet(&self, name: &str) -> Result<&Path> {
        let key = normalize(name);
        self.controlnets
            .iter()
            .find(|(n, _)| normalize(n) == key)
            .map(|(_, p)| p.as_path())
            .ok_or_else(|| PipelineError::MissingModel {
                folder: self.root.clone(),
                model: format!("ControlNet `{name}`"),
                looked_for: if self.controlnets.is_empty() {
                    "controlnet/<Name>.mlpackage and ControlNet_<name>.mlpackage: none found".into()
                } else {
                    format!(
                        "one of {}",
                        self.controlnets
                            .iter()
                            .map(|(n, _)| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
            })
    }

    /// `self.<field>` or a [`PipelineError::MissingModel`] naming what was looked for.
    pub fn require<'a, T>(
        &self,
        field: &'a Option<T>,
        model: &str,
        apple: &str,
        ours: &str,
    ) -> Result<&'a T> {
        field.as_ref().ok_or_else(|| PipelineError::MissingModel {
            folder: self.root.clone(),
            model: model.to_string(),
            looked_for: format!(
                "{apple}.mlpackage / .mlmodelc or Stable_Diffusion_version_<id>_{ours}.mlpackage"
            ),
        })
    }
}

fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '_' | '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

fn controlnets(root: &Path) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    let mut scan = |dir: &Path, prefix: &str| {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(stem) = EXTENSIONS
                .iter()
                .find_map(|e| name.strip_suffix(&format!(".{e}")))
            else {
                continue;
            };
            if let Some(n) = stem.strip_prefix(prefix)
                && !n.is_empty()
                && !found.iter().any(|(f, _): &(String, PathBuf)| f == n)
            {
                found.push((n.to_string(), path));
            }
        }
    };
    scan(&root.join("controlnet"), "");
    scan(root, "ControlNet_");
    found.sort();
    found
}
