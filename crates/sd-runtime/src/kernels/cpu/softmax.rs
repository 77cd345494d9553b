//! Softmax along the last axis of a row-major tensor, in place, one row at a time
//! (vectorized exponentials), threaded over rows.

use super::simd::{self, multiversion};
use rayon::prelude::*;

multiversion! {
    /// row ← softmax(row).
    fn softmax_row(row: &mut [f32]) {
        let mut mx = simd::max(row);
        if mx == f32::NEG_INFINITY {
            mx = 0.0;
        }
        let inv = 1.0 / simd::exp_scaled_sum(row, 1.0, mx);
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

/// Softmax over every contiguous row of `n` values of `x`, in place.
pub fn softmax_rows_in_place(x: &mut [f32], n: usize) {
    if n == 0 {
        return;
    }
    let per = ((1 << 14) / n).max(1) * n;
    x.par_chunks_mut(per)
        .for_each(|c| c.chunks_exact_mut(n).for_each(softmax_row));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_sum_to_one_and_match_libm() {
        let n = 77;
        let mut x: Vec<f32> = (0..n * 300)
            .map(|i| ((i * 17 + 5) % 41) as f32 * 0.5 - 9.0)
            .collect();
        x[3] = f32::NEG_INFINITY;
        let want: Vec<f32> = x
            .chunks(n)
            .flat_map(|r| {
                let m = r.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let s: f32 = r.iter().map(|v| (v - m).exp()).sum();
                r.iter().map(move |v| (v - m).exp() / s).collect::<Vec<_>>()
            })
            .collect();
        softmax_rows_in_place(&mut x, n);
        for (a, b) in x.iter().zip(&want) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        assert_eq!(x[3], 0.0);
    }
}
