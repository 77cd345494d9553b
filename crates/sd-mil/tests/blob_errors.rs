//! Every kind of bad `weight.bin` input gives its typed error, naming the file and offset.

use sd_mil::blob::{BlobDtype, BlobError, BlobFile, BlobWriter};
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

/// A valid file: an fp16 blob of 10 elements at 64 and a u3 blob of 5 elements at 192.
fn valid_bytes() -> Vec<u8> {
    let mut w = BlobWriter::new(Cursor::new(Vec::new())).unwrap();
    assert_eq!(w.write_blob(BlobDtype::F16, 10, &[0x11; 20]).unwrap(), 64);
    assert_eq!(w.write_blob(BlobDtype::U3, 5, &[0xf9, 0x2a]).unwrap(), 192);
    w.finish().unwrap().into_inner()
}

fn write(dir: &Path, bytes: &[u8]) -> PathBuf {
    let path = dir.join("weight.bin");
    std::fs::write(&path, bytes).unwrap();
    path
}

fn put_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn missing_file_is_io_error_with_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.bin");
    let err = BlobFile::open(&path).unwrap_err();
    assert!(
        matches!(&err, BlobError::Io { path: p, .. } if *p == path),
        "{err}"
    );
    assert!(err.to_string().contains("absent.bin"));
}

#[test]
fn files_shorter_than_the_header_are_too_short() {
    let dir = tempfile::tempdir().unwrap();
    for len in [0, 1, 63] {
        let path = write(dir.path(), &valid_bytes()[..len]);
        let err = BlobFile::open(&path).unwrap_err();
        assert!(
            matches!(err, BlobError::TooShort { len: l, .. } if l == len as u64),
            "{err}"
        );
    }
}

#[test]
fn wrong_version_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = valid_bytes();
    put_u32(&mut bytes, 4, 1);
    let path = write(dir.path(), &bytes);
    let err = BlobFile::open(&path).unwrap_err();
    assert!(
        matches!(err, BlobError::BadVersion { found: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("weight.bin"));
}

#[test]
fn wrong_sentinel_names_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = valid_bytes();
    put_u32(&mut bytes, 192, 0xdead_beee);
    let file = BlobFile::open(write(dir.path(), &bytes)).unwrap();
    assert!(file.blob(64).is_ok());
    let err = file.blob(192).unwrap_err();
    assert!(
        matches!(
            err,
            BlobError::BadSentinel {
                offset: 192,
                found: 0xdead_beee,
                ..
            }
        ),
        "{err}"
    );
    // Offsets that do not point at a record read as a bad sentinel too.
    assert!(matches!(
        file.blob(128),
        Err(BlobError::BadSentinel { offset: 128, .. })
    ));
    // The iterator yields the first blob, then the error, then stops.
    let items: Vec<_> = file.iter().collect();
    assert_eq!(items.len(), 2);
    assert!(items[0].is_ok());
    assert!(matches!(
        items[1],
        Err(BlobError::BadSentinel { offset: 192, .. })
    ));
}

#[test]
fn unknown_dtype_code() {
    let dir = tempfile::tempdir().unwrap();
    for code in [0, 18, u32::MAX] {
        let mut bytes = valid_bytes();
        put_u32(&mut bytes, 64 + 4, code);
        let file = BlobFile::open(write(dir.path(), &bytes)).unwrap();
        let err = file.blob(64).unwrap_err();
        assert!(matches!(err, BlobError::UnknownDtype { offset: 64, code: c, .. } if c == code));
    }
}

#[test]
fn offsets_past_the_end_or_into_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = valid_bytes();
    let file = BlobFile::open(write(dir.path(), &bytes)).unwrap();
    let len = bytes.len() as u64;
    for offset in [0, 63, len, len - 63, u64::MAX - 10, u64::MAX] {
        let err = file.blob(offset).unwrap_err();
        assert!(
            matches!(err, BlobError::OutOfBounds { offset: o, field: "metadata", file_len, .. }
                if o == offset && file_len == len),
            "{offset}: {err}"
        );
    }
}

#[test]
fn data_outside_the_file_or_overlapping_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(usize, u64); 4] = [
        (64 + 8, 1 << 40),        // size past the end
        (64 + 8, u64::MAX),       // size overflowing
        (64 + 16, 100),           // data offset inside the metadata record
        (64 + 16, u64::MAX - 19), // data offset overflowing with the size
    ];
    for (field_at, value) in cases {
        let mut bytes = valid_bytes();
        put_u64(&mut bytes, field_at, value);
        let file = BlobFile::open(write(dir.path(), &bytes)).unwrap();
        let err = file.blob(64).unwrap_err();
        assert!(
            matches!(
                err,
                BlobError::OutOfBounds {
                    offset: 64,
                    field: "data",
                    min: 128,
                    ..
                }
            ),
            "{field_at}={value}: {err}"
        );
    }
}

#[test]
fn truncated_data_is_out_of_bounds_and_missing_blobs_are_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = valid_bytes();
    // Cut inside the second blob's data.
    let file = BlobFile::open(write(dir.path(), &bytes[..bytes.len() - 1])).unwrap();
    assert!(matches!(
        file.blob(192),
        Err(BlobError::OutOfBounds { field: "data", .. })
    ));
    // Cut before the second blob's record: the walk finds one blob of the two announced.
    let file = BlobFile::open(write(dir.path(), &bytes[..148])).unwrap();
    let items: Vec<_> = file.iter().collect();
    assert_eq!(items.len(), 2);
    assert!(
        matches!(
            items[1],
            Err(BlobError::Truncated {
                expected: 2,
                found: 1,
                offset: 192,
                ..
            })
        ),
        "{:?}",
        items[1]
    );
    // A header announcing more blobs than the file holds.
    let mut more = bytes.clone();
    put_u32(&mut more, 0, 3);
    let file = BlobFile::open(write(dir.path(), &more)).unwrap();
    let last = file.iter().last().unwrap();
    assert!(matches!(
        last,
        Err(BlobError::Truncated {
            expected: 3,
            found: 2,
            ..
        })
    ));
}

#[test]
fn inconsistent_padding() {
    let dir = tempfile::tempdir().unwrap();
    // fp16 with padding; u3 with 8+ padding bits; u3 whose bits are not a whole count;
    // fp16 with an odd byte count.
    let cases: [(usize, u64, u64); 4] = [(64, 24, 4), (192, 24, 9), (192, 24, 2), (64, 8, 19)];
    for (record, field, value) in cases {
        let mut bytes = valid_bytes();
        put_u64(&mut bytes, record + field as usize, value);
        let file = BlobFile::open(write(dir.path(), &bytes)).unwrap();
        let err = file.blob(record as u64).unwrap_err();
        assert!(
            matches!(err, BlobError::BadPadding { offset, .. } if offset == record as u64),
            "{record}+{field}={value}: {err}"
        );
    }
}

#[test]
fn dtype_mismatch_names_both_types() {
    let dir = tempfile::tempdir().unwrap();
    let file = BlobFile::open(write(dir.path(), &valid_bytes())).unwrap();
    assert!(file.blob_typed(64, BlobDtype::F16).is_ok());
    let err = file.blob_typed(192, BlobDtype::U4).unwrap_err();
    assert!(matches!(
        err,
        BlobError::DtypeMismatch {
            offset: 192,
            expected: BlobDtype::U4,
            found: BlobDtype::U3,
            ..
        }
    ));
    assert!(err.to_string().contains("uint3"));
}

#[test]
fn writer_rejects_wrong_sizes_without_writing() {
    let mut w = BlobWriter::new(Cursor::new(Vec::new())).unwrap();
    let err = w.write_blob(BlobDtype::F16, 10, &[0; 19]).unwrap_err();
    assert!(matches!(
        err,
        BlobError::SizeMismatch {
            expected: 20,
            got: 19,
            offset: 64,
            ..
        }
    ));
    let err = w.write_blob(BlobDtype::U6, 5, &[0; 3]).unwrap_err();
    assert!(matches!(
        err,
        BlobError::SizeMismatch {
            expected: 4,
            got: 3,
            ..
        }
    ));
    assert!(w.is_empty());
    assert_eq!(w.write_blob(BlobDtype::U6, 5, &[0; 4]).unwrap(), 64);
}

#[test]
fn stream_overrun_short_write_and_unfinished_blob() {
    let mut w = BlobWriter::new(Cursor::new(Vec::new())).unwrap();
    let mut s = w.begin_blob(BlobDtype::F32, 2).unwrap();
    s.write_all(&[1; 6]).unwrap();
    let overrun = s.write_all(&[1; 3]).unwrap_err();
    assert_eq!(overrun.kind(), std::io::ErrorKind::InvalidInput);
    assert_eq!(s.remaining(), 2);
    let err = s.finish().unwrap_err();
    assert!(matches!(
        err,
        BlobError::SizeMismatch {
            expected: 8,
            got: 6,
            offset: 64,
            ..
        }
    ));
    // The writer refuses to go on past an unfinished blob.
    let err = w.write_blob(BlobDtype::U8, 1, &[0]).unwrap_err();
    assert!(matches!(err, BlobError::Unfinished { offset: 64, .. }));
    assert!(matches!(
        w.finish(),
        Err(BlobError::Unfinished { offset: 64, .. })
    ));

    let mut w = BlobWriter::new(Cursor::new(Vec::new())).unwrap();
    // The stream is dropped at once, unfinished.
    w.begin_blob(BlobDtype::U8, 4).unwrap();
    assert!(matches!(
        w.begin_blob(BlobDtype::U8, 1),
        Err(BlobError::Unfinished { .. })
    ));
}

#[test]
fn garbage_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let mut x = 0x1234_5678u32;
    for round in 0..200 {
        let mut bytes = valid_bytes();
        for _ in 0..1 + round % 4 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let at = x as usize % bytes.len();
            bytes[at] = (x >> 8) as u8;
        }
        let path = write(dir.path(), &bytes);
        if let Ok(file) = BlobFile::open(&path) {
            for b in file.iter().flatten() {
                assert!(b.data_offset + b.data.len() as u64 <= file.len());
            }
            for offset in [0, 64, 100, 192, 255] {
                let _ = file.blob(offset);
            }
        }
    }
}
