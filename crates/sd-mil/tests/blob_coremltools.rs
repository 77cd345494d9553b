//! Byte identity with coremltools' own blob writer.
//!
//! `tests/fixtures/weights/*.bin` were written by coremltools 9.0
//! (`xtask/fixtures/gen_weight_fixtures.py`); `weights.json` lists each blob's dtype, metadata
//! offset, element count and values (floats as IEEE bit patterns). Writing the same values with
//! [`BlobWriter`] must give the same bytes, and reading coremltools' files must give the values.

use sd_mil::blob::{BlobDtype, BlobFile, BlobWriter, pack_bits, pack_i4, unpack_bits, unpack_i4};
use serde_json::Value;
use std::io::Cursor;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/weights")
}

/// One blob as `weights.json` describes it.
struct Expected {
    dtype: BlobDtype,
    offset: u64,
    count: u64,
    values: Vec<i64>,
}

fn manifest() -> Vec<(String, Vec<Expected>)> {
    let text = std::fs::read_to_string(fixtures().join("weights.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    let files = json["files"].as_array().unwrap();
    files
        .iter()
        .map(|f| {
            let blobs = f["blobs"].as_array().unwrap().iter().map(|b| Expected {
                dtype: BlobDtype::from_name(b["dtype"].as_str().unwrap()).unwrap(),
                offset: b["offset"].as_u64().unwrap(),
                count: b["count"].as_u64().unwrap(),
                values: b["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_i64().unwrap())
                    .collect(),
            });
            (f["file"].as_str().unwrap().to_string(), blobs.collect())
        })
        .collect()
}

/// The blob bytes of `values` (floats given as bit patterns), little-endian / bit-packed.
fn encode(dtype: BlobDtype, values: &[i64]) -> Vec<u8> {
    match dtype {
        BlobDtype::I4 => pack_i4(&values.iter().map(|&v| v as i8).collect::<Vec<_>>()),
        d if d.is_sub_byte() => pack_bits(
            &values.iter().map(|&v| v as u8).collect::<Vec<_>>(),
            d.bits(),
        ),
        d => {
            let width = d.bits() as usize / 8;
            values
                .iter()
                .flat_map(|v| v.to_le_bytes()[..width].to_vec())
                .collect()
        }
    }
}

/// The values of a blob's bytes, in the form `weights.json` records them.
fn decode(dtype: BlobDtype, data: &[u8], count: usize) -> Vec<i64> {
    match dtype {
        BlobDtype::I4 => unpack_i4(data, count).into_iter().map(i64::from).collect(),
        d if d.is_sub_byte() => unpack_bits(data, d.bits(), count)
            .into_iter()
            .map(i64::from)
            .collect(),
        BlobDtype::I8 => data.iter().map(|&b| i64::from(b as i8)).collect(),
        BlobDtype::I16 => data
            .chunks_exact(2)
            .map(|c| i64::from(i16::from_le_bytes([c[0], c[1]])))
            .collect(),
        BlobDtype::I32 => data
            .chunks_exact(4)
            .map(|c| i64::from(i32::from_le_bytes(c.try_into().unwrap())))
            .collect(),
        d => {
            let width = d.bits() as usize / 8;
            data.chunks_exact(width)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b[..width].copy_from_slice(c);
                    i64::from_le_bytes(b)
                })
                .collect()
        }
    }
}

#[test]
fn fixtures_cover_every_dtype_coremltools_writes() {
    let dtypes: std::collections::BTreeSet<_> = manifest()
        .into_iter()
        .flat_map(|(_, blobs)| blobs.into_iter().map(|b| b.dtype.code()))
        .collect();
    // coremltools 9.0 writes every dtype but bf16 and the fp8 types.
    assert_eq!(
        dtypes.into_iter().collect::<Vec<_>>(),
        [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
    );
}

#[test]
fn writer_output_is_byte_identical_to_coremltools() {
    for (file, blobs) in manifest() {
        let mut writer = BlobWriter::new(Cursor::new(Vec::new())).unwrap();
        for b in &blobs {
            let offset = writer
                .write_blob(b.dtype, b.count, &encode(b.dtype, &b.values))
                .unwrap();
            assert_eq!(offset, b.offset, "{file}: {}", b.dtype);
        }
        let ours = writer.finish().unwrap().into_inner();
        let theirs = std::fs::read(fixtures().join(&file)).unwrap();
        assert_eq!(ours.len(), theirs.len(), "{file}");
        assert!(ours == theirs, "{file}: bytes differ");
    }
}

#[test]
fn reader_reads_coremltools_files() {
    for (file, blobs) in manifest() {
        let bin = BlobFile::open(fixtures().join(&file)).unwrap();
        assert_eq!(bin.count() as usize, blobs.len(), "{file}");
        let read: Vec<_> = bin.iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(read.len(), blobs.len());
        for (got, want) in read.iter().zip(&blobs) {
            assert_eq!(got.metadata_offset, want.offset, "{file}");
            assert_eq!(got.dtype, want.dtype, "{file} @{}", want.offset);
            assert_eq!(got.element_count, want.count, "{file} @{}", want.offset);
            let values = decode(got.dtype, got.data, want.count as usize);
            assert_eq!(values, want.values, "{file} @{}", want.offset);
            assert_eq!(bin.blob_typed(want.offset, want.dtype).unwrap(), *got);
        }
    }
}
