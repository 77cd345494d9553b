//! The exact 1-D k-means on the distinct values of a full-size fp16 weight: about 25 000
//! distinct values (normal, σ = 0.02, as SD's convolutions), k = 16 and 64.

use criterion::{Criterion, criterion_group, criterion_main};
use sd_compress::kmeans::optimal_kmeans_1d;

/// Distinct fp16 values of a N(0, 0.02²) weight of 3.7 M elements, with their counts.
fn fp16_histogram() -> (Vec<f64>, Vec<f64>) {
    let mut counts = vec![0u64; 1 << 16];
    let mut seed = 1u64;
    let mut uniform = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    for _ in 0..3_686_400 / 2 {
        let (u, v) = (uniform(), uniform());
        let r = (-2.0 * u.ln()).sqrt() * 0.02;
        for z in [
            r * (std::f64::consts::TAU * v).cos(),
            r * (std::f64::consts::TAU * v).sin(),
        ] {
            counts[half::f16::from_f64(z).to_bits() as usize] += 1;
        }
    }
    let mut pairs: Vec<(f64, f64)> = counts
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .map(|(b, c)| (half::f16::from_bits(b as u16).to_f64(), *c as f64))
        .collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    pairs.dedup_by(|a, b| {
        let same = a.0 == b.0;
        if same {
            b.1 += a.1;
        }
        same
    });
    pairs.into_iter().unzip()
}

fn kmeans(c: &mut Criterion) {
    let (points, weights) = fp16_histogram();
    let mut g = c.benchmark_group(format!("optimal_kmeans_1d/{}_points", points.len()));
    g.sample_size(10);
    for k in [16, 64] {
        g.bench_function(format!("k{k}"), |b| {
            b.iter(|| optimal_kmeans_1d(&points, &weights, k))
        });
    }
    g.finish();
}

criterion_group!(benches, kmeans);
criterion_main!(benches);
