//! The multilingual text-encoder projection, converted from projection-tiny and executed by
//! sd-runtime, against PyTorch's `Linear` (fixtures/outputs/projection-tiny); its signature
//! (Apple's `multilingual_projection.py`) and the errors for bad weights.

use sd_convert::{Component, ConvertError, ConvertOptions, Pipeline, Precision as BuildPrecision};
use sd_mil::ArrayDType;
use sd_mil::package::{WriteOptions, read_package, write_package};
use sd_runtime::{Model, Precision, Tensor, psnr};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn projection_dir() -> PathBuf {
    root().join("fixtures/models/projection-tiny")
}

fn build(path: &Path, precision: BuildPrecision) -> Result<sd_mil::Model, ConvertError> {
    // The projection does not read the diffusers folder; any folder opens.
    Pipeline::open(root().join("fixtures/models/sd1-tiny"))?.build(
        &Component::MultilingualProjection(path.to_path_buf()),
        &ConvertOptions {
            precision,
            model_version: "test".into(),
            ..Default::default()
        },
    )
}

fn convert(test: &str, precision: BuildPrecision) -> (sd_mil::Model, PathBuf) {
    let model = build(&projection_dir(), precision).unwrap();
    let dest = root()
        .join("target/test-packages")
        .join(test)
        .join(Component::MultilingualProjection(projection_dir()).package_name("test"));
    write_package(&model, &dest, WriteOptions { overwrite: true }).unwrap();
    (model, dest)
}

fn check(test: &str, dest: &Path, precision: Precision, floor: f64) {
    let io: HashMap<String, Tensor> = Tensor::read_safetensors(
        root().join("fixtures/outputs/projection-tiny/projection.io.safetensors"),
    )
    .unwrap()
    .into_iter()
    .collect();
    let inputs = HashMap::from([(
        "nlcontextualembeddings_output".to_string(),
        io["in.nlcontextualembeddings_output"].clone(),
    )]);
    let out = Model::load_cpu(dest, precision)
        .unwrap()
        .predict(&inputs)
        .unwrap();
    let want = io["out.encoder_hidden_states"].to_f32_vec();
    let got = out["encoder_hidden_states"].to_f32_vec();
    let db = psnr(&got, &want);
    eprintln!("PSNR {test} encoder_hidden_states {precision:?}: {db:.1} dB");
    assert!(db >= floor, "{test} {precision:?}: {db:.1} dB < {floor}");
}

#[test]
fn projection_fp16_matches_torch() {
    let test = "projection_fp16_matches_torch";
    let (_, dest) = convert(test, BuildPrecision::Float16);
    check(test, &dest, Precision::Program, 35.0);
    check(test, &dest, Precision::Fp32, 60.0);
}

#[test]
fn projection_fp32_matches_torch() {
    let test = "projection_fp32_matches_torch";
    let (_, dest) = convert(test, BuildPrecision::Float32);
    check(test, &dest, Precision::Program, 60.0);
}

/// Apple's `multilingual_projection.py`: fp32 input (1, 256, 512), fp32 output (1, C, 1, 256),
/// macOS 14 at least, written as `MultilingualTextEncoderProjection.mlpackage`.
#[test]
fn projection_signature_is_apples() {
    let (_, dest) = convert("projection_signature_is_apples", BuildPrecision::Float16);
    assert_eq!(
        dest.file_name().unwrap(),
        "MultilingualTextEncoderProjection.mlpackage"
    );
    let m = read_package(&dest).unwrap();
    let f = |v: &[sd_mil::FeatureDescription]| {
        v.iter()
            .map(|f| (f.name.clone(), f.dtype, f.shape.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        f(&m.description.inputs),
        vec![(
            "nlcontextualembeddings_output".to_string(),
            ArrayDType::F32,
            vec![1, 256, 512]
        )]
    );
    assert_eq!(
        f(&m.description.outputs),
        vec![(
            "encoder_hidden_states".to_string(),
            ArrayDType::F32,
            vec![1, 32, 1, 256]
        )]
    );
    assert_eq!(m.spec_version, 8);
}

fn scratch(name: &str) -> PathBuf {
    let dir = root().join("target/test-scratch/sd-convert").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn projection_wrong_width_is_named() {
    // A Linear(256, 32): NLContextualEmbedding gives 512-wide vectors.
    let file = scratch("projection_wrong_width").join("projection.safetensors");
    let w = vec![0u8; 32 * 256 * 4];
    let b = vec![0u8; 32 * 4];
    let tensors = vec![
        (
            "weight",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![32, 256], &w)
                .unwrap(),
        ),
        (
            "bias",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![32], &b).unwrap(),
        ),
    ];
    std::fs::write(&file, safetensors::serialize(tensors, None).unwrap()).unwrap();
    let e = build(&file, BuildPrecision::Float16).unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, ConvertError::TensorShape { .. }), "{s}");
    assert!(
        s.contains("`weight`") && s.contains("projection.safetensors"),
        "{s}"
    );
}

#[test]
fn projection_missing_weight_is_named() {
    let file = scratch("projection_missing").join("projection.safetensors");
    let b = vec![0u8; 32 * 4];
    let tensors = vec![(
        "bias",
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![32], &b).unwrap(),
    )];
    std::fs::write(&file, safetensors::serialize(tensors, None).unwrap()).unwrap();
    let e = build(&file, BuildPrecision::Float16).unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, ConvertError::MissingTensor { .. }), "{s}");
    assert!(
        s.contains("`weight`") && s.contains("projection.safetensors"),
        "{s}"
    );
}

#[test]
fn projection_torchscript_is_refused_with_a_hint() {
    let file = scratch("projection_torchscript").join("projection.pt");
    std::fs::write(&file, b"PK\x03\x04").unwrap();
    let e = build(&file, BuildPrecision::Float16)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("projection.pt") && e.contains("safetensors"),
        "{e}"
    );
}
