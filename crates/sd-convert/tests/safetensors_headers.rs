//! Safetensors files have one parser in the workspace (the `safetensors` crate): the converter's
//! weight store and the runtime's tensor reader accept and refuse the same files, and every
//! refusal is a typed error naming the file.

use sd_convert::ConvertError;
use sd_convert::weights::WeightFile;
use std::path::{Path, PathBuf};

/// A fresh folder for one test (tests run in parallel, so each has its own).
fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/test-scratch/sd-convert/safetensors_headers")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A file of `header` (JSON text, its length written before it) followed by `data`.
fn file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

/// One F16 tensor `a` of shape [2] and one F32 tensor `b` of shape [1]: 8 data bytes.
const GOOD: &str = r#"{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;

fn hostile() -> Vec<(&'static str, Vec<u8>)> {
    let h = |s: &str| s.to_string();
    let mut cases = vec![
        ("empty", Vec::new()),
        ("seven bytes", vec![1; 7]),
        ("header length past the end", {
            let mut b = u64::MAX.to_le_bytes().to_vec();
            b.extend_from_slice(b"{}");
            b
        }),
        ("header length 200 MB", {
            let mut b = 200_000_000u64.to_le_bytes().to_vec();
            b.extend_from_slice(b"{}");
            b
        }),
        (
            "header not UTF-8",
            file("\u{0}", &[]).into_iter().chain([0xff]).collect(),
        ),
        ("header not JSON", file("{\"a\":", &[0; 8])),
        ("header a list", file("[1,2]", &[])),
        ("missing one data byte", file(GOOD, &[0; 7])),
        ("one byte too many", file(GOOD, &[0; 9])),
        (
            "gap between tensors",
            file(&h(GOOD).replace("[4,8]", "[5,9]"), &[0; 9]),
        ),
        (
            "overlapping tensors",
            file(&h(GOOD).replace("[4,8]", "[2,6]"), &[0; 6]),
        ),
        (
            "size not matching the shape",
            file(&h(GOOD).replace("\"shape\":[2]", "\"shape\":[3]"), &[0; 8]),
        ),
        (
            "shape overflowing",
            file(
                &h(GOOD).replace("\"shape\":[2]", "\"shape\":[4294967296,4294967296,16]"),
                &[0; 8],
            ),
        ),
        (
            "negative offset",
            file(&h(GOOD).replace("[0,4]", "[-1,4]"), &[0; 8]),
        ),
        (
            "end before start",
            file(&h(GOOD).replace("[4,8]", "[8,4]"), &[0; 8]),
        ),
        (
            "unknown dtype",
            file(&h(GOOD).replace("F32", "F33"), &[0; 8]),
        ),
        (
            "no dtype",
            file(r#"{"a":{"shape":[1],"data_offsets":[0,4]}}"#, &[0; 4]),
        ),
        (
            "no shape",
            file(r#"{"a":{"dtype":"F32","data_offsets":[0,4]}}"#, &[0; 4]),
        ),
        (
            "three offsets",
            file(
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}"#,
                &[0; 8],
            ),
        ),
        (
            "metadata not strings",
            file(r#"{"__metadata__":{"k":1}}"#, &[]),
        ),
    ];
    // Every cut of the good file but the whole.
    let good = file(GOOD, &[0; 8]);
    for cut in [0, 1, 8, 9, GOOD.len() + 8, GOOD.len() + 11, good.len() - 1] {
        cases.push(("cut short", good[..cut].to_vec()));
    }
    cases
}

#[test]
fn both_readers_accept_a_sound_file() {
    let dir = scratch("both_readers_accept_a_sound_file");
    let path = dir.join("good.safetensors");
    std::fs::write(&path, file(GOOD, &[0; 8])).unwrap();
    let weights = WeightFile::open(&path).unwrap();
    let mut names = weights.names();
    names.sort();
    assert_eq!(names, ["a", "b"]);
    let tensors = sd_runtime::Tensor::read_safetensors(&path).unwrap();
    assert_eq!(tensors.len(), 2);
    assert_eq!(tensors[0].0, "a");
    assert_eq!(tensors[0].1.shape, [2]);
}

#[test]
fn both_readers_refuse_every_hostile_header_naming_the_file() {
    let dir = scratch("both_readers_refuse_every_hostile_header_naming_the_file");
    for (i, (what, bytes)) in hostile().into_iter().enumerate() {
        let path = dir.join(format!("case{i}.safetensors"));
        std::fs::write(&path, &bytes).unwrap();
        let shown = path.display().to_string();
        let convert = WeightFile::open(&path).expect_err(what);
        let message = convert.to_string();
        assert!(
            matches!(
                convert,
                ConvertError::BadHeader { .. } | ConvertError::Truncated { .. }
            ),
            "{what}: {message}"
        );
        assert!(message.contains(&shown), "{what}: {message}");
        let runtime = sd_runtime::Tensor::read_safetensors(&path)
            .expect_err(what)
            .to_string();
        assert!(runtime.contains(&shown), "{what}: {runtime}");
    }
}

#[test]
fn a_cut_file_names_the_first_tensor_missing_bytes() {
    let dir = scratch("a_cut_file_names_the_first_tensor_missing_bytes");
    let path = dir.join("cut.safetensors");
    std::fs::write(&path, file(GOOD, &[0; 6])).unwrap();
    let e = WeightFile::open(&path).unwrap_err();
    let s = e.to_string();
    assert!(
        matches!(&e, ConvertError::Truncated { tensor, start: 4, end: 8, available: 6, .. } if tensor == "b"),
        "{s}"
    );
}
