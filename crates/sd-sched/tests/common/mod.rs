//! Fixture loading shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(rel)
}

pub fn json(rel: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_json::from_str(&text).unwrap()
}

pub fn hex_f32(s: &str) -> Vec<f32> {
    s.as_bytes()
        .chunks(8)
        .map(|c| {
            let b: Vec<u8> = (0..4)
                .map(|i| {
                    u8::from_str_radix(std::str::from_utf8(&c[2 * i..2 * i + 2]).unwrap(), 16)
                        .unwrap()
                })
                .collect();
            f32::from_le_bytes([b[0], b[1], b[2], b[3]])
        })
        .collect()
}

pub fn hex_f64(s: &str) -> Vec<f64> {
    s.as_bytes()
        .chunks(16)
        .map(|c| {
            let mut b = [0u8; 8];
            for (i, v) in b.iter_mut().enumerate() {
                *v = u8::from_str_radix(std::str::from_utf8(&c[2 * i..2 * i + 2]).unwrap(), 16)
                    .unwrap();
            }
            f64::from_le_bytes(b)
        })
        .collect()
}

pub fn fnv1a64_f32(v: &[f32]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for x in v {
        for b in x.to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// A minimal safetensors reader (F32 tensors only).
pub fn safetensors_f32(rel: &str) -> BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(fixture(rel)).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut out = BTreeMap::new();
    for (k, v) in header.as_object().unwrap() {
        if k == "__metadata__" {
            continue;
        }
        assert_eq!(v["dtype"], "F32");
        let off = v["data_offsets"].as_array().unwrap();
        let (a, b) = (
            off[0].as_u64().unwrap() as usize,
            off[1].as_u64().unwrap() as usize,
        );
        let vals = data[a..b]
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.insert(k.clone(), vals);
    }
    out
}

/// max |a − b| / max |b| (the error relative to the tensor's scale).
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b
        .iter()
        .fold(0f64, |m, &x| m.max((x as f64).abs()))
        .max(1e-30);
    let diff = a
        .iter()
        .zip(b)
        .fold(0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()));
    diff / scale
}

pub fn f32s(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

pub fn config(v: &serde_json::Value) -> sd_sched::SchedulerConfig {
    sd_sched::SchedulerConfig::from_json(&v.to_string()).unwrap()
}
