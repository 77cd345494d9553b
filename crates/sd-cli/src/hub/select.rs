//! Which files of a repository a model needs — decided from the file list alone, so the same
//! rule picks what to download online and checks what the cache holds offline:
//!
//! - a **diffusers pipeline** (`model_index.json`): that file, and in each component folder its
//!   JSON and text files (configs, tokenizer) and the one weight file (or shard index) that
//!   `sd-convert` reads ([`sd_convert::weights::component_weight_names`]) — nothing else, so
//!   Flax, ONNX, other precisions and the root single-file checkpoints stay on the Hub;
//! - a **diffusers component** (`config.json` beside weights, e.g. a ControlNet): the same for
//!   the root folder;
//! - **Core ML packages**: every file of one folder holding `.mlpackage`s (`--variant` picks
//!   it, e.g. `original/packages`; by default the only one, else one of the ORIGINAL ones),
//!   and a `vocab.json` + `merges.txt` pair from the repository when that folder has none;
//! - a **single-file checkpoint** named by `--variant` (`v1-5-pruned-emaonly.safetensors`).

use super::HubError;
use super::repo::{Listing, file_name, parent};
use sd_convert::weights::{WEIGHT_STEMS, component_weight_names};

/// What kind of model a selection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    /// A diffusers pipeline folder (`model_index.json`): converted before use.
    Diffusers,
    /// One diffusers model folder (`config.json` and weights), such as a ControlNet.
    Component,
    /// A folder of Core ML packages: loaded as it is.
    CoreMl,
    /// A single-file checkpoint (`.safetensors`, `.ckpt`): converted before use.
    Checkpoint,
}

/// The files a model needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// What the model is.
    pub kind: RepoKind,
    /// The repository path to load (`""`: the root; a folder; or the checkpoint file).
    pub root: String,
    /// Repository paths of the files to fetch, sorted.
    pub files: Vec<String>,
    /// Shard indexes among `files` whose shards are needed too (known once they are read).
    pub indexes: Vec<String>,
    /// A folder with `vocab.json` and `merges.txt` elsewhere in the repository, for Core ML
    /// packages that have none beside them.
    pub tokenizer: Option<String>,
    /// The weight variant (`fp16`) `--variant` named, for diffusers models.
    pub weight_variant: Option<String>,
    /// Choices made that the user may want to know of.
    pub notes: Vec<String>,
}

/// File name endings of single-file checkpoints.
const CHECKPOINT_ENDINGS: &[&str] = &[".safetensors", ".ckpt", ".pt", ".pth", ".bin"];

/// Picks the files of `listing` that the model `variant` names needs (see the module doc).
/// `variant` is a folder or file of the repository, or a diffusers weight variant (`fp16`).
pub fn select(repo: &str, listing: &Listing, variant: Option<&str>) -> Result<Selection, HubError> {
    let variant = variant
        .map(|v| v.trim_matches('/'))
        .filter(|v| !v.is_empty());
    match variant {
        Some(v) if listing.file(v).is_some() => {
            if CHECKPOINT_ENDINGS.iter().any(|e| v.ends_with(e)) {
                Ok(Selection {
                    kind: RepoKind::Checkpoint,
                    root: v.to_string(),
                    files: vec![v.to_string()],
                    indexes: vec![],
                    tokenizer: None,
                    weight_variant: None,
                    notes: vec![],
                })
            } else {
                Err(HubError::NoSuchVariant {
                    repo: repo.into(),
                    variant: v.into(),
                    choices: format!(
                        "{} (a file, but not a checkpoint: {})",
                        choices(listing),
                        CHECKPOINT_ENDINGS.join(" ")
                    ),
                })
            }
        }
        Some(v) if listing.is_folder(v) => select_in(repo, listing, v, None),
        Some(v) if v.contains('/') || v.contains('.') => Err(HubError::NoSuchVariant {
            repo: repo.into(),
            variant: v.into(),
            choices: choices(listing),
        }),
        Some(v) => {
            let s = select_in(repo, listing, "", Some(v))?;
            if s.kind == RepoKind::CoreMl {
                return Err(HubError::NoSuchVariant {
                    repo: repo.into(),
                    variant: v.into(),
                    choices: choices(listing),
                });
            }
            Ok(s)
        }
        None => select_in(repo, listing, "", None),
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// The model found in the folder `dir`.
fn select_in(
    repo: &str,
    listing: &Listing,
    dir: &str,
    weight_variant: Option<&str>,
) -> Result<Selection, HubError> {
    if listing.file(&join(dir, "model_index.json")).is_some() {
        return diffusers(repo, listing, dir, weight_variant);
    }
    let package_folders = core_ml_folders(listing, dir, ".mlpackage");
    if !package_folders.is_empty() {
        return Ok(core_ml(repo, listing, package_folders, ".mlpackage"));
    }
    // Compiled models (Apple's `…/compiled` folders, Swift Resources) load as well.
    let compiled = core_ml_folders(listing, dir, ".mlmodelc");
    if !compiled.is_empty() {
        return Ok(core_ml(repo, listing, compiled, ".mlmodelc"));
    }
    if listing.file(&join(dir, "config.json")).is_some()
        && let (mut files, Some(weight)) = component_files(listing, dir, weight_variant)
    {
        let mut indexes = vec![];
        if weight.ends_with(".index.json") {
            indexes.push(weight.clone());
        }
        files.push(weight);
        files.sort();
        return Ok(Selection {
            kind: RepoKind::Component,
            root: dir.to_string(),
            files,
            indexes,
            tokenizer: None,
            weight_variant: weight_variant.map(str::to_string),
            notes: vec![],
        });
    }
    Err(HubError::NotAModel {
        repo: repo.into(),
        reason: format!(
            "{} has no model_index.json (diffusers), no .mlpackage folder (Core ML) and no \
             config.json with weights; name a checkpoint file or folder with --variant ({})",
            if dir.is_empty() {
                "the repository"
            } else {
                dir
            },
            choices(listing)
        ),
    })
}

/// The folders under `dir` holding entries named `*<ending>` (e.g. `original/packages`).
fn core_ml_folders(listing: &Listing, dir: &str, ending: &str) -> Vec<String> {
    let mut out: Vec<String> = listing
        .under(dir)
        .filter_map(|f| {
            let comps: Vec<&str> = f.path.split('/').collect();
            let i = comps.iter().position(|c| c.ends_with(ending))?;
            Some(comps[..i].join("/"))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn core_ml(repo: &str, listing: &Listing, folders: Vec<String>, extension: &str) -> Selection {
    let mut notes = vec![];
    let folder = if folders.len() == 1 {
        folders[0].clone()
    } else {
        let pick = folders
            .iter()
            .find(|f| f.to_ascii_lowercase().contains("original"))
            .unwrap_or(&folders[0])
            .clone();
        notes.push(format!(
            "{repo} has Core ML packages in {}; using {pick} (choose with --variant)",
            folders.join(", ")
        ));
        pick
    };
    let mut files: Vec<String> = listing
        .under(&folder)
        .filter(|f| {
            let rest = f.path.strip_prefix(&folder).unwrap_or(&f.path);
            let rest = rest.trim_start_matches('/');
            // The packages, and loose files beside them (tokenizer, configs), not other folders.
            rest.split('/')
                .next()
                .is_some_and(|c| c.ends_with(extension))
                || !rest.contains('/')
        })
        .filter(|f| !f.path.ends_with(".zip"))
        .map(|f| f.path.clone())
        .collect();
    let has_tokenizer = |d: &str| {
        listing.file(&join(d, "vocab.json")).is_some()
            && listing.file(&join(d, "merges.txt")).is_some()
    };
    let mut tokenizer = None;
    if !has_tokenizer(&folder) {
        // The nearest folder with both files: the longest shared prefix, then the shortest path.
        let mut candidates: Vec<&str> = listing
            .files
            .iter()
            .filter(|f| file_name(&f.path) == "vocab.json")
            .map(|f| parent(&f.path))
            .filter(|d| has_tokenizer(d))
            .collect();
        let shared = |d: &str| {
            d.split('/')
                .zip(folder.split('/'))
                .take_while(|(a, b)| a == b)
                .count()
        };
        candidates.sort_by_key(|d| (std::cmp::Reverse(shared(d)), d.len()));
        if let Some(d) = candidates.first() {
            files.push(join(d, "vocab.json"));
            files.push(join(d, "merges.txt"));
            tokenizer = Some(d.to_string());
        }
    }
    files.sort();
    files.dedup();
    Selection {
        kind: RepoKind::CoreMl,
        root: folder,
        files,
        indexes: vec![],
        tokenizer,
        weight_variant: None,
        notes,
    }
}

/// A component folder's small files (JSON, text) and its weight file, when it has one.
fn component_files(
    listing: &Listing,
    dir: &str,
    weight_variant: Option<&str>,
) -> (Vec<String>, Option<String>) {
    let direct: Vec<&str> = listing
        .under(dir)
        .map(|f| f.path.as_str())
        .filter(|p| parent(p) == dir)
        .collect();
    let small: Vec<String> = direct
        .iter()
        .filter(|p| {
            let n = file_name(p);
            (n.ends_with(".json") || n.ends_with(".txt")) && !n.ends_with(".index.json")
        })
        .map(|p| p.to_string())
        .collect();
    let weight = component_weight_names(weight_variant)
        .into_iter()
        .map(|n| join(dir, &n))
        .find(|p| direct.contains(&p.as_str()));
    (small, weight)
}

fn diffusers(
    repo: &str,
    listing: &Listing,
    dir: &str,
    weight_variant: Option<&str>,
) -> Result<Selection, HubError> {
    let mut files = vec![join(dir, "model_index.json")];
    let mut indexes = vec![];
    let mut missing = vec![];
    let mut any_variant = false;
    let mut components: Vec<&str> = listing
        .under(dir)
        .map(|f| {
            f.path
                .strip_prefix(dir)
                .unwrap_or(&f.path)
                .trim_start_matches('/')
        })
        .filter_map(|rest| rest.split_once('/').map(|(c, _)| c))
        .filter(|c| !c.starts_with('.'))
        .collect();
    components.sort();
    components.dedup();
    for c in components {
        let folder = join(dir, c);
        let (small, weight) = component_files(listing, &folder, weight_variant);
        if small.is_empty() {
            continue; // not a component (no config of any kind)
        }
        let needs_weights = small.iter().any(|p| file_name(p) == "config.json");
        match weight {
            Some(w) => {
                any_variant = true;
                if w.ends_with(".index.json") {
                    indexes.push(w.clone());
                }
                files.push(w);
            }
            None if needs_weights => missing.push(c.to_string()),
            None => {}
        }
        files.extend(small);
    }
    if weight_variant.is_some() && !any_variant {
        return Err(HubError::NoSuchVariant {
            repo: repo.into(),
            variant: weight_variant.unwrap_or_default().into(),
            choices: choices(listing),
        });
    }
    if !missing.is_empty() {
        let v = weight_variant.map(|v| format!(".{v}")).unwrap_or_default();
        return Err(HubError::NotAModel {
            repo: repo.into(),
            reason: format!(
                "{} {} config.json but no weights{} ({}{v}.safetensors or .bin, or their \
                 .index.json)",
                missing.join(", "),
                if missing.len() == 1 { "has" } else { "have" },
                weight_variant
                    .map(|v| format!(" of variant `{v}`"))
                    .unwrap_or_default(),
                WEIGHT_STEMS.join("|"),
            ),
        });
    }
    files.sort();
    files.dedup();
    Ok(Selection {
        kind: RepoKind::Diffusers,
        root: dir.to_string(),
        files,
        indexes,
        tokenizer: None,
        weight_variant: weight_variant.map(str::to_string),
        notes: vec![],
    })
}

/// What `--variant` could name in `listing`: Core ML folders, weight variants, checkpoints.
fn choices(listing: &Listing) -> String {
    let mut out = core_ml_folders(listing, "", ".mlpackage");
    let mut variants: Vec<String> = listing
        .files
        .iter()
        .filter_map(|f| {
            let n = file_name(&f.path);
            let stem = n
                .strip_suffix(".safetensors")
                .or_else(|| n.strip_suffix(".bin"))?;
            let (base, v) = stem.rsplit_once('.')?;
            WEIGHT_STEMS.contains(&base).then(|| v.to_string())
        })
        .collect();
    variants.sort();
    variants.dedup();
    out.extend(variants);
    out.extend(
        listing
            .files
            .iter()
            .filter(|f| !f.path.contains('/'))
            .filter(|f| CHECKPOINT_ENDINGS.iter().any(|e| f.path.ends_with(e)))
            .map(|f| f.path.clone()),
    );
    if out.is_empty() {
        "nothing this tool loads".into()
    } else {
        out.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::repo::RepoFile;

    fn listing(paths: &[&str]) -> Listing {
        let mut files: Vec<RepoFile> = paths
            .iter()
            .map(|p| RepoFile {
                path: p.to_string(),
                size: Some(1),
                hash: None,
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Listing {
            commit: "c".repeat(40),
            files,
        }
    }

    /// A repository laid out as `runwayml/stable-diffusion-v1-5` is.
    fn sd15() -> Listing {
        listing(&[
            ".gitattributes",
            "README.md",
            "model_index.json",
            "v1-5-pruned-emaonly.safetensors",
            "v1-5-pruned.ckpt",
            "feature_extractor/preprocessor_config.json",
            "safety_checker/config.json",
            "safety_checker/model.safetensors",
            "safety_checker/model.fp16.safetensors",
            "safety_checker/pytorch_model.bin",
            "safety_checker/flax_model.msgpack",
            "scheduler/scheduler_config.json",
            "text_encoder/config.json",
            "text_encoder/model.safetensors",
            "text_encoder/model.fp16.safetensors",
            "tokenizer/merges.txt",
            "tokenizer/special_tokens_map.json",
            "tokenizer/tokenizer_config.json",
            "tokenizer/vocab.json",
            "unet/config.json",
            "unet/diffusion_pytorch_model.safetensors",
            "unet/diffusion_pytorch_model.fp16.safetensors",
            "unet/diffusion_pytorch_model.non_ema.bin",
            "vae/config.json",
            "vae/diffusion_pytorch_model.safetensors",
            "vae/diffusion_pytorch_model.fp16.safetensors",
        ])
    }

    #[test]
    fn a_diffusers_pipeline_takes_configs_and_one_weight_file_each() {
        let s = select("r", &sd15(), None).unwrap();
        assert_eq!(s.kind, RepoKind::Diffusers);
        assert_eq!(s.root, "");
        assert_eq!(
            s.files,
            [
                "feature_extractor/preprocessor_config.json",
                "model_index.json",
                "safety_checker/config.json",
                "safety_checker/model.safetensors",
                "scheduler/scheduler_config.json",
                "text_encoder/config.json",
                "text_encoder/model.safetensors",
                "tokenizer/merges.txt",
                "tokenizer/special_tokens_map.json",
                "tokenizer/tokenizer_config.json",
                "tokenizer/vocab.json",
                "unet/config.json",
                "unet/diffusion_pytorch_model.safetensors",
                "vae/config.json",
                "vae/diffusion_pytorch_model.safetensors",
            ]
        );
        let s = select("r", &sd15(), Some("fp16")).unwrap();
        assert!(
            s.files
                .contains(&"unet/diffusion_pytorch_model.fp16.safetensors".to_string())
        );
        assert!(
            !s.files
                .contains(&"unet/diffusion_pytorch_model.safetensors".to_string())
        );
        assert_eq!(s.weight_variant.as_deref(), Some("fp16"));
        let e = select("r", &sd15(), Some("bf16")).unwrap_err().to_string();
        assert!(e.contains("bf16") && e.contains("fp16"), "{e}");
        let s = select("r", &sd15(), Some("v1-5-pruned-emaonly.safetensors")).unwrap();
        assert_eq!(s.kind, RepoKind::Checkpoint);
        assert_eq!(s.files, ["v1-5-pruned-emaonly.safetensors"]);
        let e = select("r", &sd15(), Some("README.md"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a checkpoint"), "{e}");
        let e = select("r", &sd15(), Some("nowhere/x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no variant `nowhere/x`"), "{e}");
    }

    #[test]
    fn plain_weights_are_preferred_then_fp16_then_pickles_and_shards_are_followed() {
        let l = listing(&[
            "model_index.json",
            "unet/config.json",
            "unet/diffusion_pytorch_model.fp16.safetensors",
            "unet/diffusion_pytorch_model.bin",
            "text_encoder/config.json",
            "text_encoder/model.safetensors.index.json",
            "text_encoder/model-00001-of-00002.safetensors",
            "text_encoder/model-00002-of-00002.safetensors",
        ]);
        let s = select("r", &l, None).unwrap();
        assert!(
            s.files
                .contains(&"unet/diffusion_pytorch_model.bin".to_string())
        );
        assert_eq!(s.indexes, ["text_encoder/model.safetensors.index.json"]);
        assert!(
            !s.files.iter().any(|f| f.contains("00001")),
            "shards come from the index"
        );
        let l = listing(&[
            "model_index.json",
            "unet/config.json",
            "unet/flax_model.msgpack",
        ]);
        let e = select("r", &l, None).unwrap_err().to_string();
        assert!(e.contains("unet has config.json but no weights"), "{e}");
    }

    #[test]
    fn core_ml_repositories_give_one_packages_folder_and_a_tokenizer() {
        let l = listing(&[
            "original/packages/Stable_Diffusion_version_x_unet.mlpackage/Manifest.json",
            "original/packages/Stable_Diffusion_version_x_unet.mlpackage/Data/com.apple.CoreML/model.mlmodel",
            "original/packages/Stable_Diffusion_version_x_text_encoder.mlpackage/Manifest.json",
            "original/compiled/Unet.mlmodelc/model.mil",
            "original/compiled/vocab.json",
            "original/compiled/merges.txt",
            "original/compiled.zip",
            "split_einsum/packages/Stable_Diffusion_version_x_unet.mlpackage/Manifest.json",
            "split_einsum/compiled/vocab.json",
            "split_einsum/compiled/merges.txt",
        ]);
        let s = select("r", &l, None).unwrap();
        assert_eq!(s.kind, RepoKind::CoreMl);
        assert_eq!(s.root, "original/packages");
        assert_eq!(s.tokenizer.as_deref(), Some("original/compiled"));
        assert_eq!(s.files.len(), 5, "{:?}", s.files);
        assert!(s.notes[0].contains("split_einsum/packages"));
        let s = select("r", &l, Some("split_einsum/packages/")).unwrap();
        assert_eq!(s.root, "split_einsum/packages");
        assert_eq!(s.tokenizer.as_deref(), Some("split_einsum/compiled"));
        assert!(s.notes.is_empty());
        // A compiled folder is a model too (its .mlmodelc folders and the loose files beside).
        let s = select("r", &l, Some("original/compiled")).unwrap();
        assert_eq!(s.root, "original/compiled");
        assert_eq!(s.files.len(), 3, "{:?}", s.files);
        let e = select("r", &l, Some("fp16")).unwrap_err().to_string();
        assert!(e.contains("split_einsum/packages"), "{e}");
    }

    #[test]
    fn a_component_repository_and_an_empty_one() {
        let l = listing(&[
            "config.json",
            "diffusion_pytorch_model.safetensors",
            "diffusion_pytorch_model.fp16.safetensors",
            "README.md",
        ]);
        let s = select("r", &l, None).unwrap();
        assert_eq!(s.kind, RepoKind::Component);
        assert_eq!(
            s.files,
            ["config.json", "diffusion_pytorch_model.safetensors"]
        );
        let e = select("r", &listing(&["README.md", "x.onnx"]), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no model_index.json"), "{e}");
    }
}
