//! The safety checker, converted from safety-checker-tiny and executed by sd-runtime, against
//! Apple's `forward_coreml` run by diffusers (fixtures/outputs/safety-checker-tiny): scores and
//! images ≥ 35 dB (fp16) / ≥ 60 dB (fp32), the flag exactly equal; plus its signature and the
//! errors for bad weights.

use sd_convert::{Component, ConvertError, ConvertOptions, Pipeline, Precision as BuildPrecision};
use sd_mil::ArrayDType;
use sd_mil::package::{WriteOptions, read_package, write_package};
use sd_runtime::{Model, Precision, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod common;
use common::root;

fn checker_dir() -> PathBuf {
    root().join("fixtures/models/safety-checker-tiny")
}

/// Latent 8 → `images` 64×64, the fixtures' size.
fn options(precision: BuildPrecision) -> ConvertOptions {
    ConvertOptions {
        latent_h: Some(8),
        latent_w: Some(8),
        precision,
        model_version: "test".into(),
        ..Default::default()
    }
}

/// Converts the checker and writes it to target/test-packages/<test>/.
fn convert(test: &str, precision: BuildPrecision) -> (sd_mil::Model, PathBuf) {
    let p = Pipeline::open(checker_dir()).unwrap();
    let model = p
        .build(&Component::SafetyChecker, &options(precision))
        .unwrap();
    let dest = root()
        .join("target/test-packages")
        .join(test)
        .join(Component::SafetyChecker.package_name("test"));
    write_package(&model, &dest, WriteOptions { overwrite: true }).unwrap();
    (model, dest)
}

fn read_io(case: &str) -> HashMap<String, Tensor> {
    common::read_io(
        root()
            .join("fixtures/outputs/safety-checker-tiny")
            .join(format!("{case}.io.safetensors")),
    )
}

/// Runs `dest` on every fixture case at `precision`; scores and images must reach `floor` dB
/// and `has_nsfw_concepts` must equal the reference exactly.
fn check(test: &str, model: &sd_mil::Model, dest: &Path, precision: Precision, floor: f64) {
    let rt = Model::load_cpu(dest, precision).unwrap();
    for case in [
        "safety_checker",
        "safety_checker_clean",
        "safety_checker_adjusted",
    ] {
        let io = read_io(case);
        let out = rt.predict(&common::inputs(model, &io)).unwrap();
        let flag_want = io["out.has_nsfw_concepts"].to_f32_vec();
        let flag_got = out["has_nsfw_concepts"].to_f32_vec();
        eprintln!(
            "{test} {case} {precision:?}: has_nsfw_concepts {flag_got:?} (want {flag_want:?})"
        );
        assert_eq!(flag_got, flag_want, "{test} {case} {precision:?}");
        for name in ["filtered_images", "concept_scores"] {
            common::assert_psnr(&format!("{test} {case}"), name, &out, &io, precision, floor);
        }
    }
}

#[test]
fn safety_checker_fp16_matches_diffusers() {
    let test = "safety_checker_fp16_matches_diffusers";
    let (model, dest) = convert(test, BuildPrecision::Float16);
    check(test, &model, &dest, Precision::Program, 35.0);
    // Run in fp32, the fp16 package is bounded by its fp16 constants: the normalised concept
    // table is not fp16-exact (unlike the checkpoint's weights), which costs ~60 dB.
    check(test, &model, &dest, Precision::Fp32, 55.0);
}

#[test]
fn safety_checker_fp32_matches_diffusers() {
    let test = "safety_checker_fp32_matches_diffusers";
    let (model, dest) = convert(test, BuildPrecision::Float32);
    check(test, &model, &dest, Precision::Program, 60.0);
}

/// Feature name, element type and shape of each input or output.
type Features = Vec<(String, ArrayDType, Vec<usize>)>;

fn features(v: &[sd_mil::FeatureDescription]) -> Features {
    v.iter()
        .map(|f| (f.name.clone(), f.dtype, f.shape.clone()))
        .collect()
}

fn feature(name: &str, dtype: ArrayDType, shape: &[usize]) -> (String, ArrayDType, Vec<usize>) {
    (name.to_string(), dtype, shape.to_vec())
}

/// apple-tiny has no safety checker package; this is the signature Apple's
/// `convert_safety_checker` gives (its sample inputs are cast to float16 before `ct.convert`,
/// so the inputs are fp16; every output is declared fp32; macOS 13 target).
#[test]
fn safety_checker_signature_is_apples() {
    let (_, dest) = convert(
        "safety_checker_signature_is_apples",
        BuildPrecision::Float16,
    );
    let m = read_package(&dest).unwrap();
    assert_eq!(
        features(&m.description.inputs),
        vec![
            feature("clip_input", ArrayDType::F16, &[1, 3, 64, 64]),
            feature("images", ArrayDType::F16, &[1, 64, 64, 3]),
            feature("adjustment", ArrayDType::F16, &[1]),
        ]
    );
    assert_eq!(
        features(&m.description.outputs),
        vec![
            feature("filtered_images", ArrayDType::F32, &[1, 64, 64, 3]),
            feature("has_nsfw_concepts", ArrayDType::F32, &[1, 1, 1, 1]),
            feature("concept_scores", ArrayDType::F32, &[1, 17]),
        ]
    );
    assert_eq!(m.spec_version, 7);
    assert_eq!(
        Component::SafetyChecker.package_name("runwayml/stable-diffusion-v1-5"),
        "Stable_Diffusion_version_runwayml_stable-diffusion-v1-5_safety_checker.mlpackage"
    );
    assert_eq!(
        Component::SafetyChecker.resource_name(),
        "SafetyChecker.mlmodelc"
    );
}

/// A scratch copy of safety-checker-tiny in target/test-scratch whose weights went through
/// `edit` (name, shape) → Some(new shape) to keep, None to drop.
fn scratch_with(name: &str, edit: impl Fn(&str, &[usize]) -> Option<Vec<usize>>) -> PathBuf {
    let dir = root().join("target/test-scratch/sd-convert").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("safety_checker")).unwrap();
    let src = checker_dir().join("safety_checker");
    std::fs::copy(
        src.join("config.json"),
        dir.join("safety_checker/config.json"),
    )
    .unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors = Vec::new();
    for (n, view) in st.tensors() {
        if let Some(shape) = edit(&n, view.shape()) {
            let data = view.data();
            let bytes = shape.iter().product::<usize>() * 4;
            let v =
                safetensors::tensor::TensorView::new(view.dtype(), shape, &data[..bytes]).unwrap();
            tensors.push((n, v));
        }
    }
    let out = safetensors::serialize(tensors, None).unwrap();
    std::fs::write(dir.join("safety_checker/model.safetensors"), out).unwrap();
    dir
}

fn build_err(dir: &Path) -> ConvertError {
    Pipeline::open(dir)
        .unwrap()
        .build(&Component::SafetyChecker, &options(BuildPrecision::Float16))
        .unwrap_err()
}

#[test]
fn safety_checker_missing_tensor_is_named() {
    let dir = scratch_with("safety_missing", |n, s| {
        (n != "special_care_embeds_weights").then(|| s.to_vec())
    });
    let e = build_err(&dir);
    let s = e.to_string();
    assert!(matches!(e, ConvertError::MissingTensor { .. }), "{s}");
    assert!(
        s.contains("special_care_embeds_weights") && s.contains("safety_checker"),
        "{s}"
    );
}

#[test]
fn safety_checker_wrong_shape_is_named() {
    // 16 thresholds for 17 concepts.
    let dir = scratch_with("safety_wrong_shape", |n, s| {
        Some(if n == "concept_embeds_weights" {
            vec![s[0] - 1]
        } else {
            s.to_vec()
        })
    });
    let e = build_err(&dir);
    let s = e.to_string();
    assert!(matches!(e, ConvertError::TensorShape { .. }), "{s}");
    assert!(
        s.contains("concept_embeds_weights") && s.contains("model.safetensors"),
        "{s}"
    );
}

#[test]
fn safety_checker_wrong_tower_shape_is_named() {
    // A position table that does not fit image_size / patch_size.
    let key = "vision_model.vision_model.embeddings.position_embedding.weight";
    let dir = scratch_with("safety_wrong_positions", |n, s| {
        Some(if n == key {
            vec![s[0] - 1, s[1]]
        } else {
            s.to_vec()
        })
    });
    let e = build_err(&dir);
    let s = e.to_string();
    assert!(matches!(e, ConvertError::TensorShape { .. }), "{s}");
    assert!(s.contains(key) && s.contains("model.safetensors"), "{s}");
}
