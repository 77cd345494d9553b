//! Nearest-neighbour upsampling by whole factors: each output row is a source row with every
//! element repeated, and repeated rows are copies of the first.

use rayon::prelude::*;

/// Upsamples `planes` row-major planes of h×w by the whole factors (sy, sx); returns the
/// (h·sy)×(w·sx) planes, row-major.
pub fn upsample_nearest(
    x: &[f32],
    planes: usize,
    h: usize,
    w: usize,
    sy: usize,
    sx: usize,
) -> Vec<f32> {
    let (oh, ow) = (h * sy, w * sx);
    let mut out = vec![0.0f32; planes * oh * ow];
    let plane = |(src, dst): (&[f32], &mut [f32])| {
        for (iy, block) in dst.chunks_mut(sy * ow).enumerate() {
            let (first, rest) = block.split_at_mut(ow);
            let row = &src[iy * w..][..w];
            for (o, v) in first.chunks_mut(sx).zip(row) {
                o.fill(*v);
            }
            for copy in rest.chunks_mut(ow) {
                copy.copy_from_slice(first);
            }
        }
    };
    if out.len() >= 1 << 16 {
        let pairs = x.par_chunks(h * w).zip(out.par_chunks_mut(oh * ow));
        pairs.for_each(plane);
    } else {
        x.chunks(h * w).zip(out.chunks_mut(oh * ow)).for_each(plane);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::upsample_nearest;

    #[test]
    fn repeats_rows_and_columns() {
        // Two 2×3 planes, factors 2 and 3.
        let x: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let y = upsample_nearest(&x, 2, 2, 3, 2, 3);
        assert_eq!(y.len(), 2 * 4 * 9);
        for p in 0..2 {
            for oy in 0..4 {
                for ox in 0..9 {
                    let want = x[p * 6 + (oy / 2) * 3 + ox / 3];
                    assert_eq!(y[p * 36 + oy * 9 + ox], want, "plane {p} ({oy}, {ox})");
                }
            }
        }
    }
}
