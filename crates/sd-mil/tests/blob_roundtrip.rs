//! Writing and re-reading `weight.bin` files: every dtype, the format doc's examples, streaming.

use sd_mil::blob::{BlobDtype, BlobFile, BlobWriter, pack_bits, packed_len, unpack_bits};
use std::io::{Cursor, Write};

/// Deterministic bytes for a blob of `count` elements of `dtype` (valid packing for sub-byte).
fn sample(dtype: BlobDtype, count: u64, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    if dtype.is_sub_byte() {
        let mask = (1u32 << dtype.bits()) - 1;
        let values: Vec<u8> = (0..count).map(|_| (next() & mask) as u8).collect();
        pack_bits(&values, dtype.bits())
    } else {
        (0..packed_len(count, dtype.bits()))
            .map(|_| next() as u8)
            .collect()
    }
}

#[test]
fn every_dtype_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weight.bin");
    let mut writer = BlobWriter::create(&path).unwrap();
    let mut expected = Vec::new();
    for (i, dtype) in BlobDtype::ALL.into_iter().enumerate() {
        for count in [1u64, 7, 13, 100] {
            let data = sample(dtype, count, i as u32 * 100 + count as u32);
            let offset = writer.write_blob(dtype, count, &data).unwrap();
            assert_eq!(offset % 64, 0);
            expected.push((offset, dtype, count, data));
        }
    }
    assert_eq!(writer.count() as usize, expected.len());
    writer.finish().unwrap();

    let file = BlobFile::open(&path).unwrap();
    assert_eq!(file.count() as usize, expected.len());
    assert_eq!(file.path(), path);
    for (offset, dtype, count, data) in &expected {
        let blob = file.blob_typed(*offset, *dtype).unwrap();
        assert_eq!(blob.metadata_offset, *offset);
        assert_eq!(blob.data_offset, offset + 64);
        assert_eq!(blob.element_count, *count, "{dtype}");
        assert_eq!(blob.data, data.as_slice(), "{dtype}");
        let pad = 8 * data.len() as u64 - count * u64::from(dtype.bits());
        assert_eq!(blob.padding_bits, pad, "{dtype}");
        if dtype.is_sub_byte() {
            let values = unpack_bits(blob.data, dtype.bits(), *count as usize);
            assert_eq!(pack_bits(&values, dtype.bits()), *data);
        }
    }
    let walked: Vec<_> = file.iter().map(|b| b.unwrap().metadata_offset).collect();
    let written: Vec<_> = expected.iter().map(|e| e.0).collect();
    assert_eq!(walked, written);
}

#[test]
fn one_fp16_tensor_gives_the_documented_704_byte_file() {
    let count = 8 * 4 * 3 * 3;
    let data = sample(BlobDtype::F16, count, 1);
    let mut writer = BlobWriter::new(Cursor::new(Vec::new())).unwrap();
    assert_eq!(writer.write_blob(BlobDtype::F16, count, &data).unwrap(), 64);
    let bytes = writer.finish().unwrap().into_inner();
    assert_eq!(bytes.len(), 704);
    assert_eq!(&bytes[..8], &[1, 0, 0, 0, 2, 0, 0, 0]);
    assert!(bytes[8..64].iter().all(|&b| b == 0));
    assert_eq!(&bytes[64..72], &[0xef, 0xbe, 0xad, 0xde, 1, 0, 0, 0]);
    assert_eq!(&bytes[72..80], &576u64.to_le_bytes());
    assert_eq!(&bytes[80..88], &128u64.to_le_bytes());
    assert!(bytes[88..128].iter().all(|&b| b == 0));
    assert_eq!(&bytes[128..], data.as_slice());
}

#[test]
fn two_fp32_blobs_sit_at_64_and_2176() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weight.bin");
    let mut writer = BlobWriter::create(&path).unwrap();
    let a = sample(BlobDtype::F32, 500, 1);
    let b = sample(BlobDtype::F32, 500, 2);
    assert_eq!(writer.write_blob(BlobDtype::F32, 500, &a).unwrap(), 64);
    assert_eq!(writer.write_blob(BlobDtype::F32, 500, &b).unwrap(), 2176);
    writer.finish().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    // No padding after the last blob; the gap before the second is zeros.
    assert_eq!(bytes.len(), 2176 + 64 + 2000);
    assert!(bytes[128 + 2000..2176].iter().all(|&x| x == 0));
    let file = BlobFile::open(&path).unwrap();
    assert_eq!(file.count(), 2);
    assert_eq!(file.blob(2176).unwrap().data, b.as_slice());
}

#[test]
fn streamed_blob_equals_whole_blob() {
    let count = 100_003u64;
    let data = sample(BlobDtype::U6, count, 9);
    let mut whole = BlobWriter::new(Cursor::new(Vec::new())).unwrap();
    whole
        .write_blob(BlobDtype::F16, 3, &[1, 2, 3, 4, 5, 6])
        .unwrap();
    whole.write_blob(BlobDtype::U6, count, &data).unwrap();
    let whole = whole.finish().unwrap().into_inner();

    let mut streamed = BlobWriter::new(Cursor::new(Vec::new())).unwrap();
    streamed
        .write_blob(BlobDtype::F16, 3, &[1, 2, 3, 4, 5, 6])
        .unwrap();
    let mut stream = streamed.begin_blob(BlobDtype::U6, count).unwrap();
    assert_eq!(stream.offset(), 192);
    for piece in data.chunks(4093) {
        stream.write_all(piece).unwrap();
    }
    assert_eq!(stream.remaining(), 0);
    assert_eq!(stream.finish().unwrap(), 192);
    let streamed = streamed.finish().unwrap().into_inner();
    assert_eq!(streamed, whole);
}

#[test]
fn empty_file_and_empty_blob() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weight.bin");
    let writer = BlobWriter::create(&path).unwrap();
    assert!(writer.is_empty());
    writer.finish().unwrap();
    let file = BlobFile::open(&path).unwrap();
    assert!(file.is_empty());
    assert_eq!(file.count(), 0);
    assert_eq!(file.iter().count(), 0);

    let mut writer = BlobWriter::create(&path).unwrap();
    assert_eq!(writer.write_blob(BlobDtype::U4, 0, &[]).unwrap(), 64);
    assert_eq!(writer.write_blob(BlobDtype::U8, 1, &[7]).unwrap(), 128);
    writer.finish().unwrap();
    let file = BlobFile::open(&path).unwrap();
    let blobs: Vec<_> = file.iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(blobs.len(), 2);
    assert_eq!(blobs[0].element_count, 0);
    assert_eq!(blobs[1].data, &[7]);
}

#[test]
fn blob_file_is_shareable_and_release_keeps_data_readable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<BlobFile>();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weight.bin");
    let data = sample(BlobDtype::F16, 50_000, 3);
    let mut writer = BlobWriter::create(&path).unwrap();
    let offset = writer.write_blob(BlobDtype::F16, 50_000, &data).unwrap();
    writer.finish().unwrap();

    let file = std::sync::Arc::new(BlobFile::open(&path).unwrap());
    let other = std::sync::Arc::clone(&file);
    let from_thread = std::thread::spawn(move || other.blob(offset).unwrap().data.to_vec());
    assert_eq!(from_thread.join().unwrap(), data);
    let blob = file.blob(offset).unwrap();
    file.release(&blob);
    assert_eq!(file.blob(offset).unwrap().data, data.as_slice());
}
