//! Convert-on-first-use (`sd_cli::model_cache`) on the tiny models: the first call converts,
//! the next reuses, other options or an incomplete entry convert again, a stale scratch folder
//! of a killed run is removed, the entry is what the pipeline's resource discovery reads, and
//! a single-file checkpoint converts with its config folder.
//! Each test has its own cache root (no process environment is touched).

use sd_cli::model_cache::{CacheOptions, MARKER, entry_dir, prepare};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Options caching under a fresh `target/test-scratch/model_cache/<name>`.
fn fresh_cache(name: &str) -> CacheOptions {
    let root = workspace()
        .join("target/test-scratch/model_cache")
        .join(name);
    let _ = std::fs::remove_dir_all(&root);
    CacheOptions {
        cache_root: Some(root),
        ..CacheOptions::default()
    }
}

fn package(folder: &Path, stem: &str, part: &str) -> PathBuf {
    folder.join(format!("Stable_Diffusion_version_{stem}_{part}.mlpackage"))
}

#[test]
fn converts_once_then_reuses_and_reconverts_when_options_change() {
    let model = workspace().join("fixtures/models/sd1-tiny");
    let opts = fresh_cache("reuse");
    // A scratch folder left by a killed run of the same key.
    let entry = entry_dir(&model, &opts).unwrap();
    let key = entry.file_name().unwrap().to_string_lossy().into_owned();
    assert!(key.starts_with("sd1-tiny-"), "{key}");
    let stale = entry.with_file_name(format!(".{key}.tmp"));
    std::fs::create_dir_all(stale.join("half.mlpackage")).unwrap();

    let first = prepare(&model, &opts).unwrap();
    assert!(first.converted);
    assert_eq!(first.folder, entry);
    assert!(!stale.exists(), "the stale scratch folder is removed");
    for part in ["text_encoder", "unet", "vae_decoder", "vae_encoder"] {
        assert!(package(&entry, "sd1-tiny", part).is_dir(), "{part} missing");
    }
    assert!(!package(&entry, "sd1-tiny", "safety_checker").exists());
    for f in [
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
        "tokenizer/special_tokens_map.json",
        "tokenizer/tokenizer_config.json",
        "scheduler/scheduler_config.json",
        "vae/config.json",
    ] {
        assert!(entry.join(f).is_file(), "{f} missing");
        assert!(
            first.marker.files.iter().any(|m| m == f),
            "{f} not in the marker"
        );
    }
    assert_eq!(first.marker.packages.len(), 4);
    // The pipeline finds every model, the tokenizer and the scheduler config.
    let r = sd_runtime::pipeline::Resources::discover(&entry).unwrap();
    assert!(r.text_encoder.is_some() && r.unet.is_some());
    assert!(r.vae_decoder.is_some() && r.vae_encoder.is_some());
    assert!(r.tokenizer.is_some() && r.scheduler_config.is_some());

    let marker_time = std::fs::metadata(entry.join(MARKER))
        .unwrap()
        .modified()
        .unwrap();
    let second = prepare(&model, &opts).unwrap();
    assert!(!second.converted, "a complete entry is reused");
    assert_eq!(second.folder, entry);
    assert_eq!(second.marker, first.marker);
    let again = std::fs::metadata(entry.join(MARKER))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(again, marker_time, "the entry was not rewritten");

    let batch_one = CacheOptions {
        unet_batch_one: true,
        ..opts.clone()
    };
    let other = prepare(&model, &batch_one).unwrap();
    assert!(other.converted);
    assert_ne!(other.folder, entry, "other options, another entry");
    let unet = sd_mil::package::read_package(package(&other.folder, "sd1-tiny", "unet")).unwrap();
    let sample = unet
        .description
        .inputs
        .iter()
        .find(|f| f.name == "sample")
        .unwrap();
    assert_eq!(sample.shape[0], 1, "the option reached the conversion");

    // An entry without its marker is incomplete: it is rebuilt, not reused.
    std::fs::remove_file(entry.join(MARKER)).unwrap();
    let rebuilt = prepare(&model, &opts).unwrap();
    assert!(rebuilt.converted);
    assert!(entry.join(MARKER).is_file());

    let models = entry.parent().unwrap();
    let left: Vec<String> = std::fs::read_dir(models)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "scratch folders left: {left:?}");
}

#[test]
fn a_single_file_checkpoint_converts_with_its_config_folder() {
    let ckpt = workspace().join("fixtures/models/single-file/sd1-micro.safetensors");
    let opts = CacheOptions {
        config: Some(workspace().join("fixtures/models/sd1-micro")),
        ..fresh_cache("single_file")
    };
    let entry = prepare(&ckpt, &opts).unwrap();
    assert!(entry.converted);
    for part in ["text_encoder", "unet", "vae_decoder", "vae_encoder"] {
        assert!(
            package(&entry.folder, "sd1-micro", part).is_dir(),
            "{part} missing"
        );
    }
    // sd1-micro has neither tokenizer nor scheduler: only the VAE config comes along.
    assert_eq!(entry.marker.files, ["vae/config.json"]);
    assert!(entry.folder.join("vae/config.json").is_file());
}

#[test]
fn a_missing_model_is_a_clear_error_and_writes_nothing() {
    let opts = fresh_cache("missing");
    let err = prepare(Path::new("/nonexistent/sd-model"), &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/sd-model"), "{err}");
    assert!(!opts.cache_root.unwrap().exists());
}

/// A model folder whose tokenizer file is a FIFO: a clear error naming it, not a hang
/// (issue #14). Links the user made (the fixture's tokenizer files are links) are followed.
#[cfg(unix)]
#[test]
fn a_fifo_in_the_model_folder_is_an_error_not_a_hang() {
    let scratch = workspace().join("target/test-scratch/model_cache/fifo");
    let _ = std::fs::remove_dir_all(&scratch);
    let model = scratch.join("sd1-tiny");
    let src = workspace().join("fixtures/models/sd1-tiny");
    for part in ["scheduler", "text_encoder", "tokenizer", "unet", "vae"] {
        std::fs::create_dir_all(model.join(part)).unwrap();
        for e in std::fs::read_dir(src.join(part)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), model.join(part).join(e.file_name())).unwrap();
        }
    }
    std::fs::copy(src.join("model_index.json"), model.join("model_index.json")).unwrap();
    let special = model.join("tokenizer/special_tokens_map.json");
    std::fs::remove_file(&special).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&special)
        .status()
        .unwrap();
    assert!(made.success());
    let err = prepare(&model, &fresh_cache("fifo_cache")).unwrap_err();
    let chain = format!("{err} {err:?}");
    assert!(chain.contains("FIFO"), "{chain}");
}
