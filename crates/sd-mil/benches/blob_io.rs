//! Throughput of `weight.bin` writing, reading and sub-byte packing at moderate sizes.
//!
//! The 1.7 GB end-to-end measurement with peak RSS is `cargo xtask bench weights`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sd_mil::blob::{BlobDtype, BlobFile, BlobWriter, pack_bits, unpack_bits};
use std::hint::black_box;
use std::io::Write;

/// 64 MiB of fp16 weights in 32 tensors of 1 Mi elements.
const TENSORS: usize = 32;
const ELEMENTS: usize = 1 << 20;

fn tensor(seed: u8) -> Vec<u8> {
    (0..ELEMENTS * 2)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn write_read(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("weight.bin");
    let data: Vec<Vec<u8>> = (0..4).map(tensor).collect();
    let bytes = (TENSORS * ELEMENTS * 2) as u64;

    let mut group = c.benchmark_group("weight.bin 64 MiB fp16");
    group.throughput(Throughput::Bytes(bytes));
    group.sample_size(10);
    group.bench_function("write_blob", |b| {
        b.iter(|| {
            let mut w = BlobWriter::create(&path).expect("create");
            for i in 0..TENSORS {
                w.write_blob(BlobDtype::F16, ELEMENTS as u64, &data[i % 4])
                    .expect("write");
            }
            w.finish().expect("finish");
        })
    });
    group.bench_function("begin_blob streamed in 64 KiB pieces", |b| {
        b.iter(|| {
            let mut w = BlobWriter::create(&path).expect("create");
            for i in 0..TENSORS {
                let mut s = w
                    .begin_blob(BlobDtype::F16, ELEMENTS as u64)
                    .expect("begin");
                for piece in data[i % 4].chunks(64 << 10) {
                    s.write_all(piece).expect("write");
                }
                s.finish().expect("finish blob");
            }
            w.finish().expect("finish");
        })
    });
    group.bench_function("open + iter + checksum", |b| {
        b.iter(|| {
            let file = BlobFile::open(&path).expect("open");
            let mut sum = 0u64;
            for blob in file.iter() {
                let blob = blob.expect("blob");
                sum = blob.data.chunks_exact(8).fold(sum, |s, c| {
                    s.wrapping_add(u64::from_le_bytes(c.try_into().unwrap()))
                });
            }
            black_box(sum)
        })
    });
    group.finish();
}

fn packing(c: &mut Criterion) {
    let values: Vec<u8> = (0..ELEMENTS).map(|i| (i * 7 % 61) as u8).collect();
    let mut group = c.benchmark_group("sub-byte packing 1 Mi elements");
    group.throughput(Throughput::Elements(ELEMENTS as u64));
    for bits in [4u32, 6] {
        let masked: Vec<u8> = values.iter().map(|v| v & ((1 << bits) - 1)).collect();
        let packed = pack_bits(&masked, bits);
        group.bench_function(format!("pack u{bits}"), |b| {
            b.iter(|| pack_bits(black_box(&masked), bits))
        });
        group.bench_function(format!("unpack u{bits}"), |b| {
            b.iter(|| unpack_bits(black_box(&packed), bits, ELEMENTS))
        });
    }
    group.finish();
}

criterion_group!(benches, write_read, packing);
criterion_main!(benches);
