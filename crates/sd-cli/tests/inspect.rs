//! `sd inspect` reports the same op counts as Core ML's own tooling, and its JSON form carries
//! the documented fields.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn shared_packages() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/apple-tiny/packages")
}

#[test]
fn op_counts_match_coremltools() {
    let expected: serde_json::Map<String, Value> =
        serde_json::from_str(include_str!("fixtures/apple_ops.json")).unwrap();
    assert!(expected.len() >= 10);
    let packages: Vec<_> = expected.keys().map(|k| shared_packages().join(k)).collect();
    let out = Command::new(env!("CARGO_BIN_EXE_sd"))
        .arg("inspect")
        .arg("--json")
        .args(&packages)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), expected.len());
    for (line, (name, ops)) in lines.iter().zip(&expected) {
        assert_eq!(&line["ops"], ops, "{name}");
        assert_eq!(line["spec_version"], 7);
        assert_eq!(line["opset"], "CoreML6");
        assert!(line["weight_bytes"].as_u64().unwrap() > 0);
        for io in ["inputs", "outputs"] {
            for f in line[io].as_array().unwrap() {
                assert!(
                    f["name"].is_string() && f["dtype"].is_string() && f["shape"].is_array(),
                    "{f}"
                );
            }
        }
    }
    let unet = lines
        .iter()
        .find(|l| {
            l["package"]
                .as_str()
                .unwrap()
                .ends_with("split_einsum/Stable_Diffusion_version_sd-tiny_unet.mlpackage")
        })
        .unwrap();
    assert_eq!(
        unet["inputs"][2],
        serde_json::json!({"name": "encoder_hidden_states", "dtype": "fp16", "shape": [2, 32, 1, 77]})
    );
    assert_eq!(
        unet["outputs"][0],
        serde_json::json!({"name": "noise_pred", "dtype": "fp32", "shape": [2, 4, 32, 32]})
    );
}

#[test]
fn text_and_mil_forms() {
    let pkg = shared_packages()
        .join("split_einsum/Stable_Diffusion_version_sd-tiny_text_encoder.mlpackage");
    let out = Command::new(env!("CARGO_BIN_EXE_sd"))
        .arg("inspect")
        .arg(&pkg)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("spec version 7 (CoreML6, iOS16)"), "{text}");
    assert!(text.contains("input_ids"), "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_sd"))
        .args(["inspect", "--mil"])
        .arg(&pkg)
        .output()
        .unwrap();
    let mil = String::from_utf8(out.stdout).unwrap();
    assert!(
        mil.starts_with("program(1.0)\n")
            && mil.contains("func main<ios16>(tensor<fp32, [1, 77]> input_ids) {"),
        "{}",
        &mil[..300.min(mil.len())]
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_sd"))
        .args(["inspect", "/nonexistent.mlpackage"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/nonexistent.mlpackage"));
}
