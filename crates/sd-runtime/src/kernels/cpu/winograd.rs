//! 3×3, stride-1 convolution by Winograd's minimal filtering F(4×4, 3×3) (Lavin and Gray,
//! "Fast Algorithms for Convolutional Neural Networks", 2016): each 4×4 block of output comes
//! from a 6×6 block of input through 36 products instead of 144, so the convolution's
//! multiply-adds drop 4×. The weights become U = G·g·Gᵀ (36 matrices [Cout, Cin]), each
//! band of tiles of the input becomes V = Bᵀ·d·B (36 matrices [Cin, tiles]), 36 GEMMs give
//! M = U·V, and every tile's output is Aᵀ·m·A plus the bias. The interpolation points are
//! 0, ±1, ±2 (and ∞), which keep f32 results within a few ulps of the direct sum.
//!
//! Each band runs in three parallel phases (input transform over channels, the 36 GEMMs over
//! their index, output transform over output channels); bands are sized so that their
//! transformed input and products stay a few MB.

use super::gemm::{MatMut, MatRef, sgemm};
use super::simd::multiversion;
use ::gemm::Parallelism;
use rayon::prelude::*;

/// Side of the transformed tile (4 outputs + 3 − 1).
const ALPHA: usize = 6;
/// Transformed elements per tile.
const POINTS: usize = ALPHA * ALPHA;
/// Output rows and columns per tile.
const OUT: usize = 4;

/// Floats that one scratch block (a band's transformed input, a block's transformed weights,
/// their products) may hold: 16 MB, small enough to be reused by the allocator from call to
/// call instead of mapped afresh.
const BLOCK_FLOATS: usize = 1 << 22;

/// Fewest tiles (4×4 output blocks, all images together) for which transforming the weights
/// at every call pays off against im2col; below it a layer is too small for Winograd to win.
/// Measured on AVX-512 with 2 threads (`benches/conv_layers.rs`), 1280→1280 channels: at 32
/// tiles (16² batch 2) Winograd takes 38 ms against im2col's 50 ms; at 8 tiles 31 ms against 13.
pub const MIN_TILES: usize = 32;

/// The filter transform G (6×3).
const G: [[f32; 3]; ALPHA] = [
    [0.25, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// dᵀ·B for one row `d` of six inputs (the input transform Bᵀ applied along a row).
#[inline(always)]
fn input_row(d: [f32; ALPHA]) -> [f32; ALPHA] {
    [
        4.0 * d[0] - 5.0 * d[2] + d[4],
        -4.0 * d[1] - 4.0 * d[2] + d[3] + d[4],
        4.0 * d[1] - 4.0 * d[2] - d[3] + d[4],
        -2.0 * d[1] - d[2] + 2.0 * d[3] + d[4],
        2.0 * d[1] - d[2] - 2.0 * d[3] + d[4],
        4.0 * d[1] - 5.0 * d[3] + d[5],
    ]
}

/// Aᵀ·m for one column `m` of six products (the output transform along a column).
#[inline(always)]
fn output_row(m: [f32; ALPHA]) -> [f32; OUT] {
    let (a, b) = (m[1] + m[2], m[1] - m[2]);
    let (c, d) = (m[3] + m[4], m[3] - m[4]);
    [m[0] + a + c, b + 2.0 * d, a + 4.0 * c, b + 8.0 * d + m[5]]
}

/// Whether a convolution of this geometry runs here, for `tiles` 4×4 output blocks.
pub fn applies(kh: usize, kw: usize, g: &crate::kernels::Conv2dGeometry, tiles: usize) -> bool {
    kh == 3
        && kw == 3
        && g.strides == [1, 1]
        && g.dilations == [1, 1]
        && g.groups == 1
        && tiles >= MIN_TILES
}

/// Number of 4×4 output tiles of `n` images of `oh`×`ow` outputs.
pub fn tile_count(n: usize, oh: usize, ow: usize) -> usize {
    n * oh.div_ceil(OUT) * ow.div_ceil(OUT)
}

/// U = G·g·Gᵀ for output channels `co0..co0 + cb` of w [Cout, Cin, 3, 3], every input
/// channel, laid out as 36 matrices [cb, Cin] in `u`. Per output channel the nine taps are
/// first laid out as rows over the input channels, so that both passes of the transform are
/// vector loops along them.
fn transform_weights(w: &[f32], cin: usize, co0: usize, cb: usize, u: &mut [f32]) {
    debug_assert_eq!(u.len(), POINTS * cb * cin);
    let plane = cb * cin;
    let dst = u.as_mut_ptr() as usize;
    (0..cb).into_par_iter().for_each_init(
        || vec![0.0f32; 27 * cin],
        |scratch, c| {
            let (taps, t) = scratch.split_at_mut(9 * cin);
            let kernel = &w[(co0 + c) * cin * 9..][..cin * 9];
            for (ci, g) in kernel.chunks_exact(9).enumerate() {
                for (tap, &v) in g.iter().enumerate() {
                    taps[tap * cin + ci] = v;
                }
            }
            // t[i][b] = Σ_a G[i][a]·g[a][b] (6×3 rows over the input channels).
            for (ib, row) in t.chunks_exact_mut(cin).enumerate() {
                let (gi, b) = (&G[ib / 3], ib % 3);
                combine3(
                    row,
                    &taps[b * cin..],
                    &taps[(3 + b) * cin..],
                    &taps[(6 + b) * cin..],
                    *gi,
                );
            }
            for i in 0..ALPHA {
                for (j, gj) in G.iter().enumerate() {
                    // SAFETY: row (i·6 + j, c) of `u` holds cin floats at (i·6 + j)·plane +
                    // c·cin, inside `u`; output channel `c` is written by this task alone.
                    let row = unsafe {
                        std::slice::from_raw_parts_mut(
                            (dst as *mut f32).add((i * ALPHA + j) * plane + c * cin),
                            cin,
                        )
                    };
                    let t0 = &t[i * 3 * cin..];
                    combine3(row, t0, &t0[cin..], &t0[2 * cin..], *gj);
                }
            }
        },
    );
}

multiversion! {
    /// out[i] = c[0]·a[i] + c[1]·b[i] + c[2]·d[i] over `out`'s length.
    fn combine3(out: &mut [f32], a: &[f32], b: &[f32], d: &[f32], c: [f32; 3]) {
        let n = out.len();
        let (a, b, d) = (&a[..n], &b[..n], &d[..n]);
        for i in 0..n {
            out[i] = c[0] * a[i] + c[1] * b[i] + c[2] * d[i];
        }
    }
}

/// Where tile `t` (over images, tile rows, tile columns) sits: image, first output row and
/// first output column.
#[inline]
fn tile_origin(t: usize, th: usize, tw: usize) -> (usize, usize, usize) {
    let per_image = th * tw;
    let (img, r) = (t / per_image, t % per_image);
    (img, (r / tw) * OUT, (r % tw) * OUT)
}

/// What one convolution is: shapes and padding.
struct Shape {
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    /// Top and left padding.
    pad: (usize, usize),
    /// Tile rows and columns per image.
    th: usize,
    tw: usize,
}

/// V[k][ci][j] = (Bᵀ·d·B)[k] of input channel `ci` for the band's tiles `t0 + j`.
fn transform_input(x: &[f32], s: &Shape, t0: usize, tb: usize, v: &mut [f32]) {
    let dst = v.as_mut_ptr() as usize;
    let stride = s.cin * tb;
    (0..s.cin).into_par_iter().for_each(|ci| {
        for j in 0..tb {
            let (img, oy, ox) = tile_origin(t0 + j, s.th, s.tw);
            let plane = &x[(img * s.cin + ci) * s.h * s.w..][..s.h * s.w];
            let (y0, x0) = (
                oy as isize - s.pad.0 as isize,
                ox as isize - s.pad.1 as isize,
            );
            let inside =
                y0 >= 0 && x0 >= 0 && y0 as usize + ALPHA <= s.h && x0 as usize + ALPHA <= s.w;
            // Rows of d·B (each input row transformed), then the columns.
            let mut rows = [[0.0f32; ALPHA]; ALPHA];
            for (i, r) in rows.iter_mut().enumerate() {
                let iy = y0 + i as isize;
                let mut d = [0.0f32; ALPHA];
                if inside {
                    let at = iy as usize * s.w + x0 as usize;
                    d.copy_from_slice(&plane[at..at + ALPHA]);
                } else if iy >= 0 && (iy as usize) < s.h {
                    for (c, dv) in d.iter_mut().enumerate() {
                        let ix = x0 + c as isize;
                        if ix >= 0 && (ix as usize) < s.w {
                            *dv = plane[iy as usize * s.w + ix as usize];
                        }
                    }
                }
                *r = input_row(d);
            }
            for c in 0..ALPHA {
                let col = input_row(rows.map(|r| r[c]));
                for (r, value) in col.into_iter().enumerate() {
                    // SAFETY: (r·6 + c)·stride + ci·tb + j < 36·cin·tb = v.len(), and input
                    // channel `ci` is written by this task alone.
                    unsafe {
                        *(dst as *mut f32).add((r * ALPHA + c) * stride + ci * tb + j) = value;
                    }
                }
            }
        }
    });
}

/// Output channels `co0..co0 + cb` of the band's tiles from the products M[k][c][j]: Aᵀ·m·A
/// plus the bias, clipped at the image's bottom and right edges.
#[allow(clippy::too_many_arguments)]
fn transform_output(
    m: &[f32],
    s: &Shape,
    t0: usize,
    tb: usize,
    co0: usize,
    cb: usize,
    bias: Option<&[f32]>,
    out: usize,
) {
    let stride = cb * tb;
    (0..cb).into_par_iter().for_each(|c| {
        let co = co0 + c;
        let b = bias.map_or(0.0, |b| b[co]);
        for j in 0..tb {
            let (img, oy, ox) = tile_origin(t0 + j, s.th, s.tw);
            let at = |k: usize| m[k * stride + c * tb + j];
            // Columns first: Aᵀ·m over each of the six columns, then along the rows.
            let mut cols = [[0.0f32; OUT]; ALPHA];
            for (c, col) in cols.iter_mut().enumerate() {
                *col = output_row([
                    at(c),
                    at(ALPHA + c),
                    at(2 * ALPHA + c),
                    at(3 * ALPHA + c),
                    at(4 * ALPHA + c),
                    at(5 * ALPHA + c),
                ]);
            }
            let plane = (img * s.cout + co) * s.oh * s.ow;
            for r in 0..OUT.min(s.oh - oy) {
                let row = output_row(cols.map(|col| col[r]));
                for (c, value) in row.into_iter().enumerate().take(s.ow - ox) {
                    // SAFETY: (oy + r, ox + c) lies inside output plane (img, co), which
                    // this task alone writes.
                    unsafe {
                        *(out as *mut f32).add(plane + (oy + r) * s.ow + ox + c) = value + b;
                    }
                }
            }
        }
    });
}

/// Convolution of x [N, Cin, H, W] (row-major) with w [Cout, Cin, 3, 3], stride 1, no
/// dilation, padding `pads` ((top, bottom), (left, right)), plus the bias, into `out`
/// [N, Cout, OH, OW]. The caller checks [`applies`] and applies any activation.
#[allow(clippy::too_many_arguments)]
pub fn conv3x3(
    x: &[f32],
    [n, cin, h, w]: [usize; 4],
    weights: &[f32],
    cout: usize,
    bias: Option<&[f32]>,
    pads: [(usize, usize); 2],
    [oh, ow]: [usize; 2],
    out: &mut [f32],
) {
    assert_eq!(x.len(), n * cin * h * w, "winograd: input size");
    assert_eq!(weights.len(), cout * cin * 9, "winograd: weight size");
    assert_eq!(out.len(), n * cout * oh * ow, "winograd: output size");
    assert!(
        h + pads[0].0 + pads[0].1 >= 3 + oh - 1 && w + pads[1].0 + pads[1].1 >= 3 + ow - 1,
        "winograd: output larger than the padded input"
    );
    let s = Shape {
        n,
        cin,
        cout,
        h,
        w,
        oh,
        ow,
        pad: (pads[0].0, pads[1].0),
        th: oh.div_ceil(OUT),
        tw: ow.div_ceil(OUT),
    };
    convolve(x, &s, weights, bias, out, BLOCK_FLOATS);
}

/// [`conv3x3`] of shape `s` with scratch blocks of about `budget` floats.
fn convolve(
    x: &[f32],
    s: &Shape,
    weights: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    budget: usize,
) {
    let (cin, cout) = (s.cin, s.cout);
    let tiles = s.n * s.th * s.tw;
    if tiles == 0 || cout == 0 {
        return;
    }
    let (tb, cb) = blocks(cin, cout, tiles, budget);
    // When every output channel fits one block, the weights are transformed once; else each
    // band of tiles transforms them again block by block.
    let whole_u = cb == cout;
    let mut u = vec![0.0f32; POINTS * cb * cin];
    if whole_u {
        transform_weights(weights, cin, 0, cout, &mut u);
    }
    let mut v = vec![0.0f32; POINTS * cin * tb];
    let mut m = vec![0.0f32; POINTS * cb * tb];
    let out_ptr = out.as_mut_ptr() as usize;
    for t0 in (0..tiles).step_by(tb) {
        let tb = tb.min(tiles - t0);
        let v = &mut v[..POINTS * cin * tb];
        transform_input(x, s, t0, tb, v);
        for co0 in (0..cout).step_by(cb) {
            let cb = cb.min(cout - co0);
            let u = &mut u[..POINTS * cb * cin];
            if !whole_u {
                transform_weights(weights, cin, co0, cb, u);
            }
            let m = &mut m[..POINTS * cb * tb];
            products(u, v, m, [cb, cin, tb]);
            transform_output(m, s, t0, tb, co0, cb, bias, out_ptr);
        }
    }
}

/// Tiles per band and output channels per block: each of the band's transformed input
/// [36, Cin, tiles], the block's transformed weights [36, channels, Cin] and their products
/// [36, channels, tiles] within about `budget` floats (at least 16 tiles and 16 channels).
fn blocks(cin: usize, cout: usize, tiles: usize, budget: usize) -> (usize, usize) {
    let tb = (budget / (POINTS * cin).max(1)).max(16).min(tiles);
    let cb = (budget / (POINTS * cin.max(tb)).max(1)).max(16);
    let cb = if cb >= cout { cout } else { cb / 16 * 16 };
    (tb, cb)
}

/// M[k] = U[k]·V[k] for the 36 points: U [36, cb, cin], V [36, cin, tb], M [36, cb, tb],
/// one GEMM per point, the points in parallel.
fn products(u: &[f32], v: &[f32], m: &mut [f32], [cb, cin, tb]: [usize; 3]) {
    assert!(u.len() >= POINTS * cb * cin && v.len() >= POINTS * cin * tb);
    assert!(m.len() >= POINTS * cb * tb);
    let (up, vp, mp) = (
        u.as_ptr() as usize,
        v.as_ptr() as usize,
        m.as_mut_ptr() as usize,
    );
    (0..POINTS).into_par_iter().for_each(|k| {
        let lhs = MatRef {
            ptr: (up as *const f32).wrapping_add(k * cb * cin),
            rs: cin as isize,
            cs: 1,
        };
        let rhs = MatRef {
            ptr: (vp as *const f32).wrapping_add(k * cin * tb),
            rs: tb as isize,
            cs: 1,
        };
        let dst = MatMut {
            ptr: (mp as *mut f32).wrapping_add(k * cb * tb),
            rs: tb as isize,
            cs: 1,
        };
        // SAFETY: U[k] [cb, cin], V[k] [cin, tb] and M[k] [cb, tb] lie inside their
        // buffers (checked above), and M[k] is this task's alone.
        unsafe { sgemm(cb, tb, cin, dst, false, lhs, rhs, Parallelism::None) };
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::naive_conv;

    fn vals(n: usize, s: f32, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i + seed) * 7919 + 3) % 101) as f32 * s - 0.5)
            .collect()
    }

    fn check(xs: [usize; 4], cout: usize, pads: [(usize, usize); 2], bias: bool) {
        check_in_blocks(xs, cout, pads, bias, BLOCK_FLOATS);
    }

    fn check_in_blocks(
        xs: [usize; 4],
        cout: usize,
        pads: [(usize, usize); 2],
        bias: bool,
        budget: usize,
    ) {
        let [n, cin, ..] = xs;
        let x = vals(xs.iter().product(), 0.01, 1);
        let wt = vals(cout * cin * 9, 0.004, 2);
        let b: Vec<f32> = (0..cout).map(|i| i as f32 * 0.1 - 0.3).collect();
        let zero = vec![0.0; cout];
        let (want, shape) = naive_conv(
            &x,
            xs,
            &wt,
            [cout, cin, 3, 3],
            if bias { &b } else { &zero },
            [1, 1],
            [pads[0].0, pads[0].1, pads[1].0, pads[1].1],
            [1, 1],
            1,
        );
        let (oh, ow) = (shape[2], shape[3]);
        let mut got = vec![f32::NAN; n * cout * oh * ow];
        let s = Shape {
            n,
            cin,
            cout,
            h: xs[2],
            w: xs[3],
            oh,
            ow,
            pad: (pads[0].0, pads[1].0),
            th: oh.div_ceil(OUT),
            tw: ow.div_ceil(OUT),
        };
        if budget == BLOCK_FLOATS {
            conv3x3(
                &x,
                xs,
                &wt,
                cout,
                bias.then_some(&b[..]),
                pads,
                [oh, ow],
                &mut got,
            );
        } else {
            convolve(&x, &s, &wt, bias.then_some(&b[..]), &mut got, budget);
        }
        let scale = want.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        for (i, (a, e)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - e).abs() <= 2e-5 * scale + 1e-6,
                "{xs:?} → {cout}, pads {pads:?}, budget {budget}: element {i}: {a} vs {e}"
            );
        }
    }

    #[test]
    fn matches_the_direct_convolution() {
        // Same padding, sizes that are and are not multiples of 4.
        check([2, 3, 8, 8], 4, [(1, 1), (1, 1)], true);
        check([1, 5, 7, 9], 3, [(1, 1), (1, 1)], false);
        check([2, 2, 5, 6], 2, [(1, 1), (1, 1)], true);
        // No padding, asymmetric padding, padding on one side only.
        check([1, 4, 10, 11], 6, [(0, 0), (0, 0)], true);
        check([1, 3, 9, 7], 5, [(0, 1), (2, 0)], true);
        check([1, 2, 3, 3], 2, [(0, 0), (0, 0)], false);
        // Many channels and tiles, so that bands and threads split the work.
        check([2, 40, 21, 19], 24, [(1, 1), (1, 1)], true);
    }

    #[test]
    fn bands_and_channel_blocks_split_the_work() {
        // Several bands of tiles, weights transformed once.
        let (tb, cb) = blocks(8, 8, 200, POINTS * 8 * 40);
        assert!(tb < 200 && cb == 8, "{tb} {cb}");
        check_in_blocks([2, 8, 37, 41], 8, [(1, 1), (1, 1)], true, POINTS * 8 * 40);
        // Several blocks of output channels in one band (the weights are the big part).
        let (tb, cb) = blocks(24, 70, 30, POINTS * 24 * 30);
        assert!(tb == 30 && cb < 70 && cb % 16 == 0, "{tb} {cb}");
        check_in_blocks(
            [1, 24, 21, 19],
            70,
            [(1, 1), (1, 1)],
            true,
            POINTS * 24 * 30,
        );
        // Both: bands, each transforming the weights again block by block.
        let (tb, cb) = blocks(40, 50, 120, POINTS * 40 * 20);
        assert!(tb < 120 && cb < 50, "{tb} {cb}");
        check_in_blocks(
            [2, 40, 29, 31],
            50,
            [(1, 0), (0, 1)],
            false,
            POINTS * 40 * 20,
        );
        // The full-size budget on a layer of the UNet's middle: channel blocks.
        let (_, cb) = blocks(640, 640, tile_count(2, 32, 32), BLOCK_FLOATS);
        assert!(cb < 640);
    }
}
