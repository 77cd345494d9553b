//! Group norm in two passes over each (image, group) block: statistics (f32 lanes summed
//! into f64), then per channel y = x·scale + shift and the activation, in place when the
//! input buffer is not shared.

use super::act;
use super::simd::multiversion;
use crate::kernels::Activation;
use rayon::prelude::*;

multiversion! {
    /// Sum and sum of squared deviations from `shift` of a slice, in f64.
    fn moments(x: &[f32], shift: f32) -> (f64, f64) {
        let (mut s, mut q) = (0.0f64, 0.0f64);
        for block in x.chunks(512) {
            let mut ls = [0.0f32; 8];
            let mut lq = [0.0f32; 8];
            let mut it = block.chunks_exact(8);
            for c in &mut it {
                for i in 0..8 {
                    let d = c[i] - shift;
                    ls[i] += d;
                    lq[i] += d * d;
                }
            }
            for &v in it.remainder() {
                let d = v - shift;
                ls[0] += d;
                lq[0] += d * d;
            }
            s += ls.iter().map(|v| *v as f64).sum::<f64>();
            q += lq.iter().map(|v| *v as f64).sum::<f64>();
        }
        (s, q)
    }
}

multiversion! {
    fn scale_shift(x: &mut [f32], scale: f32, shift: f32) {
        for v in x.iter_mut() {
            *v = *v * scale + shift;
        }
    }
}

multiversion! {
    fn scale_shift_into(x: &[f32], y: &mut [f32], scale: f32, shift: f32) {
        for (o, v) in y.iter_mut().zip(x) {
            *o = *v * scale + shift;
        }
    }
}

/// Group norm of `x` [N, C, rest…] (row-major, `c` channels of `plane` elements per image)
/// over `groups` groups, then per-channel gamma/beta and `act`.
pub struct GroupNorm<'a> {
    /// Channels.
    pub c: usize,
    /// Elements per channel and image.
    pub plane: usize,
    /// Channel groups.
    pub groups: usize,
    /// Added to the variance.
    pub eps: f32,
    /// Per-channel scale.
    pub gamma: Option<&'a [f32]>,
    /// Per-channel shift.
    pub beta: Option<&'a [f32]>,
    /// Applied last.
    pub act: Activation,
}

impl GroupNorm<'_> {
    /// Normalizes `x` in place.
    pub fn in_place(&self, x: &mut [f32]) {
        self.run(None, x);
    }

    /// Reads `x` and writes `out` (same length): for an input still needed elsewhere, this
    /// saves the copy an in-place run would start with.
    pub fn write_into(&self, x: &[f32], out: &mut [f32]) {
        self.run(Some(x), out);
    }
}

impl GroupNorm<'_> {
    /// Normalizes `src` (or `dst` itself) into `dst`, block by block.
    fn run(&self, src: Option<&[f32]>, dst: &mut [f32]) {
        let (plane, groups) = (self.plane, self.groups);
        let cpg = self.c / groups;
        let block = cpg * plane;
        if block == 0 {
            return;
        }
        let run = |bi: usize, xb: Option<&[f32]>, yb: &mut [f32]| {
            let g = bi % groups;
            let stats = xb.unwrap_or(yb);
            // Shifting by a sample keeps the one-pass variance exact enough in f32 lanes.
            let (s, q) = moments(stats, stats[0]);
            let n = block as f64;
            let mean_d = s / n;
            let var = (q / n - mean_d * mean_d).max(0.0);
            let mean = stats[0] as f64 + mean_d;
            let rstd = 1.0 / (var + self.eps as f64).sqrt();
            for (j, ch) in yb.chunks_mut(plane).enumerate() {
                let ci = g * cpg + j;
                let ga = self.gamma.map_or(1.0, |v| v[ci]) as f64;
                let be = self.beta.map_or(0.0, |v| v[ci]) as f64;
                let scale = ga * rstd;
                let shift = (be - mean * scale) as f32;
                match xb {
                    Some(xb) => {
                        scale_shift_into(&xb[j * plane..][..plane], ch, scale as f32, shift)
                    }
                    None => scale_shift(ch, scale as f32, shift),
                }
                act::apply(self.act, ch);
            }
        };
        let parallel = dst.len() >= 1 << 14;
        match src {
            Some(x) => {
                let pairs = x
                    .par_chunks(block)
                    .zip(dst.par_chunks_mut(block))
                    .enumerate();
                if parallel {
                    pairs.for_each(|(bi, (xb, yb))| run(bi, Some(xb), yb));
                } else {
                    x.chunks(block)
                        .zip(dst.chunks_mut(block))
                        .enumerate()
                        .for_each(|(bi, (xb, yb))| run(bi, Some(xb), yb));
                }
            }
            None if parallel => dst
                .par_chunks_mut(block)
                .enumerate()
                .for_each(|(bi, yb)| run(bi, None, yb)),
            None => dst
                .chunks_mut(block)
                .enumerate()
                .for_each(|(bi, yb)| run(bi, None, yb)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_place_equals_in_place() {
        let (n, c, plane, groups) = (2, 8, 1000, 4);
        let x: Vec<f32> = (0..n * c * plane)
            .map(|i| ((i * 13 + 5) % 29) as f32 * 0.21 - 3.0)
            .collect();
        let gamma: Vec<f32> = (0..c).map(|i| 1.0 + i as f32 * 0.05).collect();
        let norm = GroupNorm {
            c,
            plane,
            groups,
            eps: 1e-5,
            gamma: Some(&gamma),
            beta: None,
            act: Activation::Silu,
        };
        let mut in_place = x.clone();
        norm.in_place(&mut in_place);
        let mut out = vec![0.0; x.len()];
        norm.write_into(&x, &mut out);
        assert_eq!(out, in_place);
    }

    #[test]
    fn matches_two_pass_reference() {
        let (n, c, plane, groups) = (2, 6, 37, 3);
        let x: Vec<f32> = (0..n * c * plane)
            .map(|i| 100.0 + ((i * 31 + 7) % 23) as f32 * 0.37)
            .collect();
        let gamma: Vec<f32> = (0..c).map(|i| 0.5 + i as f32 * 0.1).collect();
        let beta: Vec<f32> = (0..c).map(|i| i as f32 * -0.2).collect();
        for act in [Activation::None, Activation::Silu] {
            let mut got = x.clone();
            let norm = GroupNorm {
                c,
                plane,
                groups,
                eps: 1e-5,
                gamma: Some(&gamma),
                beta: Some(&beta),
                act,
            };
            norm.in_place(&mut got);
            let per = c / groups * plane;
            for b in 0..n * groups {
                let blk = &x[b * per..][..per];
                let mean = blk.iter().map(|v| *v as f64).sum::<f64>() / per as f64;
                let var = blk.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / per as f64;
                for (k, v) in blk.iter().enumerate() {
                    let ci = (b % groups) * (c / groups) + k / plane;
                    let mut y =
                        ((*v as f64 - mean) / (var + 1e-5).sqrt()) as f32 * gamma[ci] + beta[ci];
                    if act == Activation::Silu {
                        y /= 1.0 + (-y).exp();
                    }
                    let g = got[b * per + k];
                    assert!((g - y).abs() < 2e-5 * (1.0 + y.abs()), "{g} vs {y}");
                }
            }
        }
    }
}
