//! Layer norm over one axis of a row-major tensor viewed as [outer, C, inner]: statistics
//! for every (outer, inner) position over the C values (vectorized along `inner`, or along
//! C when inner = 1), then y = (x − mean)·rstd·gamma[c] + beta[c], in place.

use super::simd::{self, multiversion};
use rayon::prelude::*;

multiversion! {
    /// Normalizes one [C, inner] block in place; `acc` holds 2·inner scratch values.
    fn block(
        x: &mut [f32],
        c: usize,
        inner: usize,
        eps: f32,
        gamma: Option<&[f32]>,
        beta: Option<&[f32]>,
        acc: &mut [f32],
    ) {
        let (mean, rstd) = acc.split_at_mut(inner);
        mean.fill(0.0);
        rstd.fill(0.0);
        for row in x.chunks_exact(inner) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += *v;
            }
        }
        let inv_c = 1.0 / c as f32;
        mean.iter_mut().for_each(|m| *m *= inv_c);
        for row in x.chunks_exact(inner) {
            for ((q, v), m) in rstd.iter_mut().zip(row).zip(mean.iter()) {
                let d = *v - *m;
                *q += d * d;
            }
        }
        rstd.iter_mut()
            .for_each(|q| *q = 1.0 / (*q * inv_c + eps).sqrt());
        for (ci, row) in x.chunks_exact_mut(inner).enumerate() {
            let g = gamma.map_or(1.0, |g| g[ci]);
            let b = beta.map_or(0.0, |b| b[ci]);
            for ((v, m), r) in row.iter_mut().zip(mean.iter()).zip(rstd.iter()) {
                *v = (*v - *m) * *r * g + b;
            }
        }
    }
}

multiversion! {
    /// Normalizes contiguous rows of `c` values in place (the inner = 1 case).
    fn rows(x: &mut [f32], c: usize, eps: f32, gamma: Option<&[f32]>, beta: Option<&[f32]>) {
        for row in x.chunks_exact_mut(c) {
            let mean = simd::sum(row) / c as f32;
            let mut var = 0.0f32;
            let mut lanes = [0.0f32; 8];
            let mut it = row.chunks_exact(8);
            for ch in &mut it {
                for i in 0..8 {
                    lanes[i] += (ch[i] - mean) * (ch[i] - mean);
                }
            }
            for v in it.remainder() {
                var += (v - mean) * (v - mean);
            }
            let var = (var + lanes.iter().sum::<f32>()) / c as f32;
            let r = 1.0 / (var + eps).sqrt();
            for (ci, v) in row.iter_mut().enumerate() {
                let g = gamma.map_or(1.0, |g| g[ci]);
                let b = beta.map_or(0.0, |b| b[ci]);
                *v = (*v - mean) * r * g + b;
            }
        }
    }
}

/// Layer norm in place over the middle axis of `x` viewed as [outer, c, inner].
pub fn layer_norm_in_place(
    x: &mut [f32],
    c: usize,
    inner: usize,
    eps: f32,
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
) {
    if x.is_empty() || c == 0 {
        return;
    }
    if inner == 1 {
        let per = (1 << 14) / c.max(1) + 1;
        x.par_chunks_mut(per * c)
            .for_each(|b| rows(b, c, eps, gamma, beta));
        return;
    }
    // Split along inner too when there are few outer blocks, so both threads work.
    let outer = x.len() / (c * inner);
    let parts = if outer >= 4 {
        1
    } else {
        inner.div_ceil(1024).max(1)
    };
    if parts == 1 {
        x.par_chunks_mut(c * inner).for_each_init(
            || vec![0.0f32; 2 * inner],
            |acc, b| block(b, c, inner, eps, gamma, beta, acc),
        );
        return;
    }
    // Gather column strips [c, w] into scratch, normalize, scatter back.
    let w = inner.div_ceil(parts);
    let tasks: Vec<(usize, usize)> = (0..outer)
        .flat_map(|o| (0..parts).map(move |p| (o, p * w)))
        .filter(|(_, s)| *s < inner)
        .collect();
    let base = x.as_mut_ptr() as usize;
    tasks.into_par_iter().for_each(|(o, s)| {
        let width = w.min(inner - s);
        let mut strip = vec![0.0f32; c * width];
        let mut acc = vec![0.0f32; 2 * width];
        // SAFETY: each task reads and writes only columns [s, s + width) of block o.
        let blk = unsafe {
            std::slice::from_raw_parts_mut((base as *mut f32).add(o * c * inner), c * inner)
        };
        for ci in 0..c {
            strip[ci * width..][..width].copy_from_slice(&blk[ci * inner + s..][..width]);
        }
        block(&mut strip, c, width, eps, gamma, beta, &mut acc);
        for ci in 0..c {
            blk[ci * inner + s..][..width].copy_from_slice(&strip[ci * width..][..width]);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &[f32], c: usize, inner: usize, g: &[f32], b: &[f32]) -> Vec<f32> {
        let outer = x.len() / (c * inner);
        let mut y = x.to_vec();
        for o in 0..outer {
            for i in 0..inner {
                let at = |ci: usize| o * c * inner + ci * inner + i;
                let mean = (0..c).map(|ci| x[at(ci)] as f64).sum::<f64>() / c as f64;
                let var = (0..c)
                    .map(|ci| (x[at(ci)] as f64 - mean).powi(2))
                    .sum::<f64>()
                    / c as f64;
                for ci in 0..c {
                    y[at(ci)] =
                        ((x[at(ci)] as f64 - mean) / (var + 1e-5).sqrt()) as f32 * g[ci] + b[ci];
                }
            }
        }
        y
    }

    #[test]
    fn matches_reference_for_every_layout() {
        // (outer, c, inner): last axis, channel axis with few and many outer blocks.
        for (outer, c, inner) in [(5, 33, 1), (2, 12, 77), (1, 8, 2500), (6, 5, 3)] {
            let x: Vec<f32> = (0..outer * c * inner)
                .map(|i| ((i * 29 + 11) % 37) as f32 * 0.21 - 3.0)
                .collect();
            let g: Vec<f32> = (0..c).map(|i| 1.0 + i as f32 * 0.01).collect();
            let b: Vec<f32> = (0..c).map(|i| i as f32 * 0.03).collect();
            let want = reference(&x, c, inner, &g, &b);
            let mut got = x.clone();
            layer_norm_in_place(&mut got, c, inner, 1e-5, Some(&g), Some(&b));
            for (a, w) in got.iter().zip(&want) {
                assert!(
                    (a - w).abs() < 2e-5 * (1.0 + w.abs()),
                    "{a} vs {w} ({outer},{c},{inner})"
                );
            }
        }
    }
}
