//! `coremldata.bin`: the compiled model's header with its description (the `ModelDescription`
//! protobuf), and `analytics/coremldata.bin`, a small record of named key/value sections.
//!
//! Layout of `coremldata.bin` (little-endian; from public reverse engineering of Apple's
//! compiler output, see `x/coremlcompiler` in tmc/apple):
//!
//! | offset | size | content |
//! |---|---|---|
//! | 0x00 | 4 | magic 502 |
//! | 0x04 | 4 | specification version |
//! | 0x1c | 8 | length of the compute-type string (7) |
//! | 0x24 | 7 | `generic` |
//! | 0x2b | 1 | specification version |
//! | 0x4b | 8 | length N of the description protobuf |
//! | 0x53 | N | `ModelDescription` protobuf |
//! | end − 16 | 4 | magic 502, then 12 zero bytes |

use crate::MilError;
use crate::proto::pb;
use prost::Message;
use std::path::Path;

/// The magic number that opens and closes `coremldata.bin`.
pub const MAGIC: u32 = 502;
const HEADER_LEN: usize = 0x53;
const TRAILER_LEN: usize = 16;
const COMPUTE_TYPE: &[u8] = b"generic";

/// `coremldata.bin` for a model of `spec_version` with this description.
pub fn encode(spec_version: u32, description: &pb::ModelDescription) -> Vec<u8> {
    let desc = description.encode_to_vec();
    let mut buf = vec![0u8; HEADER_LEN + desc.len() + TRAILER_LEN];
    buf[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    buf[4..8].copy_from_slice(&spec_version.to_le_bytes());
    buf[0x1c..0x24].copy_from_slice(&(COMPUTE_TYPE.len() as u64).to_le_bytes());
    buf[0x24..0x2b].copy_from_slice(COMPUTE_TYPE);
    buf[0x2b] = spec_version as u8;
    buf[0x4b..0x53].copy_from_slice(&(desc.len() as u64).to_le_bytes());
    buf[HEADER_LEN..HEADER_LEN + desc.len()].copy_from_slice(&desc);
    let end = buf.len() - TRAILER_LEN;
    buf[end..end + 4].copy_from_slice(&MAGIC.to_le_bytes());
    buf
}

/// The specification version and description in `coremldata.bin` bytes; `path` names the file
/// in errors.
pub fn decode(bytes: &[u8], path: &Path) -> Result<(u32, pb::ModelDescription), MilError> {
    let fail = |field: &str, reason: String| MilError::format(path, field, reason);
    if bytes.len() < HEADER_LEN + TRAILER_LEN {
        return Err(fail(
            "<header>",
            format!(
                "{} bytes, shorter than the {}-byte header and trailer",
                bytes.len(),
                HEADER_LEN + TRAILER_LEN
            ),
        ));
    }
    let u32_at =
        |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
    let magic = u32_at(0);
    if magic != MAGIC {
        return Err(fail(
            "magic",
            format!("{magic} (expected {MAGIC}: not a compiled ML program's coremldata.bin)"),
        ));
    }
    let spec_version = u32_at(4);
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&bytes[0x4b..0x53]);
    let len = u64::from_le_bytes(len_bytes);
    let room = (bytes.len() - HEADER_LEN - TRAILER_LEN) as u64;
    if len > room {
        return Err(fail(
            "description length",
            format!("{len} bytes, but only {room} follow the header"),
        ));
    }
    let desc = &bytes[HEADER_LEN..HEADER_LEN + len as usize];
    let description = pb::ModelDescription::decode(desc).map_err(|e| {
        fail(
            "description",
            format!("not a ModelDescription protobuf: {e}"),
        )
    })?;
    Ok((spec_version, description))
}

/// `analytics/coremldata.bin`: sections of key/value strings, each string preceded by its
/// 64-bit length, each section by its name and entry count. `model_hash` identifies the model.
pub fn encode_analytics(model_hash: &str) -> Vec<u8> {
    let sections: [(&str, &[(&str, &str)]); 2] = [
        (
            "NeuralNetworkModelDetails",
            &[("containsCustomLayer", "0"), ("modelDimension", "0")],
        ),
        (
            "SpecificationDetails",
            &[("modelHash", model_hash), ("modelName", "model")],
        ),
    ];
    let mut buf = Vec::new();
    let string = |buf: &mut Vec<u8>, s: &str| {
        buf.extend((s.len() as u64).to_le_bytes());
        buf.extend(s.as_bytes());
    };
    for (name, entries) in sections {
        string(&mut buf, name);
        buf.extend((entries.len() as u64).to_le_bytes());
        for (k, v) in entries {
            string(&mut buf, k);
            string(&mut buf, v);
        }
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_bad_headers_are_named() {
        let d = pb::ModelDescription {
            predicted_feature_name: "x".into(),
            ..Default::default()
        };
        let bytes = encode(8, &d);
        assert_eq!(&bytes[0x24..0x2b], b"generic");
        let (v, back) = decode(&bytes, Path::new("c")).unwrap();
        assert_eq!((v, back), (8, d));
        let err = |b: &[u8]| decode(b, Path::new("c")).unwrap_err().to_string();
        assert!(err(&bytes[..40]).contains("shorter"));
        let mut bad = bytes.clone();
        bad[0] = 1;
        assert!(err(&bad).contains("magic"));
        let mut bad = bytes.clone();
        bad[0x4b..0x53].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(err(&bad).contains("description length"));
        let mut bad = bytes;
        bad[HEADER_LEN] = 0xff;
        assert!(err(&bad).contains("not a ModelDescription"));
    }
}
