//! Rounding f32 values to the nearest fp16 value in place, through half's slice conversions
//! (F16C instructions where the CPU has them), threaded over large tensors.

use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

/// Elements converted per stack buffer.
const BUF: usize = 1024;
/// Elements per thread task.
const TASK: usize = 1 << 15;

fn round_chunk(x: &mut [f32]) {
    let mut buf = [f16::ZERO; BUF];
    for c in x.chunks_mut(BUF) {
        let b = &mut buf[..c.len()];
        b.convert_from_f32_slice(c);
        b.convert_to_f32_slice(c);
    }
}

/// Rounds every element to the nearest fp16 value (ties to even; overflow → ±inf).
pub fn round_f16_in_place(x: &mut [f32]) {
    if x.len() >= 2 * TASK {
        x.par_chunks_mut(TASK).for_each(round_chunk);
    } else {
        round_chunk(x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_per_element_rounding() {
        let mut x: Vec<f32> = (0..100_003)
            .map(|i| ((i as f32) * 0.7311).sin() * 10f32.powi(i % 11 - 5))
            .collect();
        x.extend([
            65504.0,
            65520.0,
            1e6,
            -1e6,
            6e-8,
            2.98e-8,
            0.0,
            -0.0,
            f32::INFINITY,
        ]);
        let want: Vec<f32> = x.iter().map(|v| f16::from_f32(*v).to_f32()).collect();
        round_f16_in_place(&mut x);
        for (a, b) in x.iter().zip(&want) {
            assert_eq!(a.to_bits(), b.to_bits(), "{a} vs {b}");
        }
        assert_eq!(x[x.len() - 8], f32::INFINITY, "65520 overflows to inf");
    }
}
