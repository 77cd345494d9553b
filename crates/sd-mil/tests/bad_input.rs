//! Bad input gets a typed error naming the file and field, never a panic.

mod common;

use sd_mil::blob::BlobError;
use sd_mil::builder::FunctionBuilder;
use sd_mil::package::{WriteOptions, read_package, write_package};
use sd_mil::{DType, MilError, Opset, ProgramError, TensorType};
use std::path::{Path, PathBuf};

/// A small valid package with one blob-backed weight, copied fresh for each case.
fn valid_package(dir: &Path, name: &str) -> PathBuf {
    let model = common::linear_model();
    let p = dir.join(name);
    write_package(&model, &p, WriteOptions::default()).unwrap();
    p
}

fn weight_bin(p: &Path) -> PathBuf {
    p.join("Data/com.apple.CoreML/weights/weight.bin")
}

fn model_file(p: &Path) -> PathBuf {
    p.join("Data/com.apple.CoreML/model.mlmodel")
}

#[test]
fn truncated_weight_file() {
    let dir = common::scratch_dir("bad_input/truncated");
    let p = valid_package(&dir, "m.mlpackage");
    let wb = weight_bin(&p);
    let len = std::fs::metadata(&wb).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&wb).unwrap();
    f.set_len(len - 100).unwrap();
    let err = read_package(&p).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("weight.bin"), "{msg}");
    let f = std::fs::OpenOptions::new().write(true).open(&wb).unwrap();
    f.set_len(10).unwrap();
    assert!(matches!(
        read_package(&p).unwrap_err(),
        MilError::Blob(BlobError::TooShort { .. })
    ));
}

#[test]
fn wrong_sentinel_and_version() {
    let dir = common::scratch_dir("bad_input/sentinel");
    let p = valid_package(&dir, "m.mlpackage");
    let wb = weight_bin(&p);
    let mut bytes = std::fs::read(&wb).unwrap();
    bytes[64] ^= 0xff;
    std::fs::write(&wb, &bytes).unwrap();
    let err = read_package(&p).unwrap_err();
    assert!(err.to_string().contains("sentinel"), "{err}");
    bytes[64] ^= 0xff;
    bytes[4] = 3;
    std::fs::write(&wb, &bytes).unwrap();
    assert!(matches!(
        read_package(&p).unwrap_err(),
        MilError::Blob(BlobError::BadVersion { found: 3, .. })
    ));
}

#[test]
fn blob_offset_past_end_and_dtype_mismatch() {
    use prost::Message;
    use sd_mil::proto::pb;
    let dir = common::scratch_dir("bad_input/offset");
    let p = valid_package(&dir, "m.mlpackage");
    let original = std::fs::read(model_file(&p)).unwrap();
    let edit = |f: &dyn Fn(&mut pb::mil_spec::Value)| {
        let mut m = pb::Model::decode(original.as_slice()).unwrap();
        let Some(pb::model::Type::MlProgram(prog)) = &mut m.r#type else {
            panic!()
        };
        let block = prog
            .functions
            .get_mut("main")
            .unwrap()
            .block_specializations
            .get_mut("CoreML7")
            .unwrap();
        let op = block
            .operations
            .iter_mut()
            .find(|o| o.r#type == "const")
            .unwrap();
        f(op.attributes.get_mut("val").unwrap());
        std::fs::write(model_file(&p), m.encode_to_vec()).unwrap();
    };
    edit(&|v| {
        if let Some(pb::mil_spec::value::Value::BlobFileValue(b)) = &mut v.value {
            b.offset = 1 << 20;
        }
    });
    let msg = read_package(&p).unwrap_err().to_string();
    assert!(
        msg.contains("model.mlmodel") && msg.contains("offset"),
        "{msg}"
    );
    edit(&|v| {
        if let Some(pb::mil_spec::value_type::Type::TensorType(t)) =
            v.r#type.as_mut().and_then(|t| t.r#type.as_mut())
        {
            t.data_type = DType::F16.proto_code();
        }
    });
    let msg = read_package(&p).unwrap_err().to_string();
    assert!(
        msg.contains("blob at offset 64") && msg.contains("fp16"),
        "{msg}"
    );
}

#[test]
fn manifest_without_weights_item() {
    let dir = common::scratch_dir("bad_input/manifest");
    let p = valid_package(&dir, "m.mlpackage");
    let manifest = p.join("Manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["itemInfoEntries"]
        .as_object_mut()
        .unwrap()
        .retain(|_, e| e["name"] != "weights");
    std::fs::write(&manifest, v.to_string()).unwrap();
    let msg = read_package(&p).unwrap_err().to_string();
    assert!(
        msg.contains("model.mlmodel") && msg.contains("no weights"),
        "{msg}"
    );
}

#[test]
fn manifest_rules() {
    let dir = common::scratch_dir("bad_input/manifest_rules");
    let p = valid_package(&dir, "m.mlpackage");
    let manifest = p.join("Manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    // Lower-case identifiers (as coremltools writes on Linux) are accepted.
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let entries = std::mem::take(v["itemInfoEntries"].as_object_mut().unwrap());
    for (k, e) in entries {
        v["itemInfoEntries"][k.to_lowercase()] = e;
    }
    v["rootModelIdentifier"] = v["rootModelIdentifier"]
        .as_str()
        .unwrap()
        .to_lowercase()
        .into();
    std::fs::write(&manifest, v.to_string()).unwrap();
    read_package(&p).unwrap();
    std::fs::write(&manifest, text.replace("1.0.0", "2.0.0")).unwrap();
    let err = read_package(&p).unwrap_err();
    assert!(
        matches!(&err, MilError::Format { field, .. } if field == "fileFormatVersion"),
        "{err}"
    );
    std::fs::write(&manifest, "{not json").unwrap();
    assert!(matches!(
        read_package(&p).unwrap_err(),
        MilError::Format { .. }
    ));
}

#[test]
fn missing_model_file_and_garbage_protobuf() {
    let dir = common::scratch_dir("bad_input/missing");
    let p = valid_package(&dir, "m.mlpackage");
    std::fs::write(model_file(&p), b"\xff\xff\xff\xff garbage").unwrap();
    assert!(matches!(
        read_package(&p).unwrap_err(),
        MilError::Decode { .. }
    ));
    std::fs::remove_file(model_file(&p)).unwrap();
    let msg = read_package(&p).unwrap_err().to_string();
    assert!(
        msg.contains("model.mlmodel") && msg.contains("does not exist"),
        "{msg}"
    );
    assert!(matches!(
        read_package(dir.join("absent.mlpackage")).unwrap_err(),
        MilError::Io { .. }
    ));
}

#[test]
fn op_with_missing_input_or_wrong_type_in_file() {
    use prost::Message;
    use sd_mil::proto::pb;
    let dir = common::scratch_dir("bad_input/ops");
    let p = valid_package(&dir, "m.mlpackage");
    let original = std::fs::read(model_file(&p)).unwrap();
    let mut m = pb::Model::decode(original.as_slice()).unwrap();
    let Some(pb::model::Type::MlProgram(prog)) = &mut m.r#type else {
        panic!()
    };
    let block = prog
        .functions
        .get_mut("main")
        .unwrap()
        .block_specializations
        .get_mut("CoreML7")
        .unwrap();
    let linear = block
        .operations
        .iter_mut()
        .find(|o| o.r#type == "linear")
        .unwrap();
    linear.inputs.remove("weight");
    std::fs::write(model_file(&p), m.encode_to_vec()).unwrap();
    let err = read_package(&p).unwrap_err();
    assert!(
        matches!(&err, MilError::InFile { source, .. } if matches!(&**source, ProgramError::MissingInput { param, .. } if param == "weight")),
        "{err}"
    );
    assert!(err.to_string().contains("model.mlmodel"));
    let mut m = pb::Model::decode(original.as_slice()).unwrap();
    let Some(pb::model::Type::MlProgram(prog)) = &mut m.r#type else {
        panic!()
    };
    let block = prog
        .functions
        .get_mut("main")
        .unwrap()
        .block_specializations
        .get_mut("CoreML7")
        .unwrap();
    block
        .operations
        .iter_mut()
        .find(|o| o.r#type == "linear")
        .unwrap()
        .r#type = "frobnicate".into();
    std::fs::write(model_file(&p), m.encode_to_vec()).unwrap();
    assert!(
        matches!(read_package(&p).unwrap_err(), MilError::InFile { source, .. } if matches!(*source, ProgramError::UnknownOp { .. }))
    );
}

#[test]
fn builder_refuses_bad_parameters() {
    let mut b = FunctionBuilder::new(Opset::CoreML6);
    let x = b
        .input("x", TensorType::new(DType::F16, [1, 4, 8, 8]))
        .unwrap();
    let ids = b.input("ids", TensorType::new(DType::I32, [3])).unwrap();
    let err = |r: Result<_, MilError>| match r {
        Err(MilError::Program(e)) => *e,
        other => panic!("expected a program error, got {other:?}"),
    };
    assert!(
        matches!(err(b.op("conv").input("x", &x).build()), ProgramError::MissingInput { param, .. } if param == "weight")
    );
    assert!(
        matches!(err(b.op("silu").input("x", &ids).build()), ProgramError::WrongType { param, .. } if param == "x")
    );
    assert!(matches!(
        err(b.op("silu").input("x", &x).param("alpha", 1.0f32).build()),
        ProgramError::UnknownParam { .. }
    ));
    assert!(matches!(
        err(b
            .op("reshape")
            .input("x", &x)
            .param("shape", [3, 5])
            .build()),
        ProgramError::InvalidValue { .. }
    ));
    assert!(matches!(
        err(b.op("softmax").input("x", &x).param("axis", 4).build()),
        ProgramError::InvalidValue { .. }
    ));
    assert!(matches!(
        err(b.op("add").input("x", &x).param("y", 1.0f32).build()),
        ProgramError::WrongType { .. }
    ));
    assert!(matches!(
        err(b.op("nonsense").input("x", &x).build()),
        ProgramError::UnknownOp { .. }
    ));
    assert!(matches!(
        err(b
            .op("scaled_dot_product_attention")
            .input("query", &x)
            .build()),
        ProgramError::NotInOpset { .. }
    ));
    let shape = b.op("abs").input("x", &ids).build_one().unwrap();
    assert!(matches!(
        err(b
            .op("reshape")
            .input("x", &x)
            .input("shape", &shape)
            .build()),
        ProgramError::NotConst { .. }
    ));
    assert!(matches!(
        b.input("x", TensorType::scalar(DType::F32)),
        Err(ProgramError::DuplicateValue { .. })
    ));
    assert!(matches!(
        b.input("1x", TensorType::scalar(DType::F32)),
        Err(ProgramError::BadIdentifier { .. })
    ));
}

#[test]
fn refuses_to_overwrite_unless_asked() {
    let dir = common::scratch_dir("bad_input/overwrite");
    let p = valid_package(&dir, "m.mlpackage");
    let model = read_package(&p).unwrap();
    assert!(matches!(
        write_package(&model, &p, WriteOptions::default()),
        Err(MilError::AlreadyExists { .. })
    ));
    write_package(&model, &p, WriteOptions { overwrite: true }).unwrap();
    read_package(&p).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "temporary directories left behind: {leftovers:?}"
    );
}
