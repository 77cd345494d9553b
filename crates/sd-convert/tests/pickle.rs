//! PyTorch pickles (`.bin`, `.ckpt`) read through `pytorch-reader` give the same tensors and
//! the same packages as their safetensors twins.

use sd_convert::weights::{WeightFile, WeightStore};
use sd_convert::{Component, ConvertOptions, Pipeline, Precision};
use sd_mil::package::{WriteOptions, write_package};
use std::path::{Path, PathBuf};

/// The protobuf of a `model.mlmodel`: compared decoded, since map fields are written in hash
/// order.
fn decode(bytes: &[u8]) -> sd_mil::proto::pb::Model {
    use prost::Message;
    sd_mil::proto::pb::Model::decode(bytes).unwrap()
}

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models")
}

/// `sd1-micro-bin/text_encoder/pytorch_model.bin` (float32 pickle) against
/// `sd1-micro/text_encoder/model.fp16.safetensors`.
#[test]
fn bin_component_equals_its_safetensors_twin() {
    let bin =
        WeightStore::open_component(models().join("sd1-micro-bin/text_encoder"), None).unwrap();
    let st = WeightStore::open_component(models().join("sd1-micro/text_encoder"), None).unwrap();
    let mut names: Vec<&str> = st.names().collect();
    names.sort_unstable();
    let mut bin_names: Vec<&str> = bin.names().collect();
    bin_names.sort_unstable();
    assert_eq!(names, bin_names);
    for n in names {
        let shape = st.shape(n).unwrap();
        assert_eq!(bin.shape(n).unwrap(), shape, "{n}");
        assert_eq!(
            bin.read_f32(n, &shape).unwrap(),
            st.read_f32(n, &shape).unwrap(),
            "{n}"
        );
    }
}

#[test]
fn bin_component_converts_like_its_safetensors_twin() {
    let out =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-scratch/sd-convert-pickle");
    let from_bin = Pipeline::open(models().join("sd1-micro-bin")).unwrap();
    let from_st = Pipeline::open(models().join("sd1-micro")).unwrap();
    for precision in [Precision::Float16, Precision::Float32] {
        let o = ConvertOptions {
            precision,
            model_version: "test".into(),
            ..Default::default()
        };
        let mut files = Vec::new();
        for (name, p) in [("bin", &from_bin), ("st", &from_st)] {
            let mut m = p.build(&Component::TextEncoder, &o).unwrap();
            m.description
                .metadata
                .user_defined
                .insert("sd-convert.source".into(), "test".into());
            let dest = out.join(name).join("TextEncoder.mlpackage");
            write_package(&m, &dest, WriteOptions { overwrite: true }).unwrap();
            let data = dest.join("Data/com.apple.CoreML");
            files.push((
                std::fs::read(data.join("model.mlmodel")).unwrap(),
                std::fs::read(data.join("weights/weight.bin")).unwrap(),
            ));
        }
        assert!(
            decode(&files[0].0) == decode(&files[1].0),
            "{precision:?}: model.mlmodel differs"
        );
        assert!(
            files[0].1 == files[1].1,
            "{precision:?}: weight.bin differs"
        );
    }
}

/// The `.ckpt` (zip pickle, weights under `state_dict`, `global_step` beside them) holds the
/// same tensors as the `.safetensors` file, integer buffers included (listed, not readable).
#[test]
fn ckpt_equals_safetensors() {
    let dir = models().join("single-file");
    let ckpt = WeightFile::open(dir.join("sd1-micro.ckpt")).unwrap();
    let st = WeightFile::open(dir.join("sd1-micro.safetensors")).unwrap();
    assert!(matches!(ckpt, WeightFile::Pickle(_)));
    let mut a = ckpt.names();
    let mut b = st.names();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b);
    let ckpt_store =
        WeightStore::open_files(dir.join("sd1-micro.ckpt"), &[dir.join("sd1-micro.ckpt")]).unwrap();
    let st_store = WeightStore::open_files(
        dir.join("sd1-micro.safetensors"),
        &[dir.join("sd1-micro.safetensors")],
    )
    .unwrap();
    for n in a {
        assert_eq!(ckpt.info(n), st.info(n), "{n}");
        let shape = st_store.shape(n).unwrap();
        match st_store.read_f32(n, &shape) {
            Ok(v) => assert_eq!(ckpt_store.read_f32(n, &shape).unwrap(), v, "{n}"),
            Err(e) => {
                // Integer buffers (position_ids, EMA counter): same refusal from both.
                let e2 = ckpt_store.read_f32(n, &shape).unwrap_err();
                assert!(
                    e.to_string().contains(n) && e2.to_string().contains(n),
                    "{e} / {e2}"
                );
            }
        }
    }
}
