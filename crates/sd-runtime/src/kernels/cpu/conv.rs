//! 2-D convolution: 3×3 stride-1 layers with enough output through Winograd's F(4×4, 3×3)
//! ([`winograd`]), every other one as im2col + GEMM: per image and group, the receptive fields of a band
//! of output rows are laid out as columns in a scratch that stays in L2, multiplied by the
//! weights [Cout/g, Cin/g·kh·kw] into the output, whose rows start as the bias; the
//! activation is applied to each band while it is hot. Bands run in parallel (each with its
//! own scratch and a single-threaded GEMM). A 1×1, stride-1, unpadded convolution multiplies
//! the input directly.

use super::act;
use super::gemm::{MatMut, MatRef, parallelism, sgemm};
use super::winograd;
use crate::kernels::{Activation, Conv2dGeometry};
use ::gemm::Parallelism;
use ndarray::{ArrayView, IxDyn};
use rayon::prelude::*;

/// Scratch elements for one band of im2col columns (a band's columns stay in L2).
const COL_BUDGET: usize = 1 << 16;

/// Fewest output columns per band, so that packing the weights (once per band) stays small
/// next to the product when there are many input channels.
const MIN_COLS: usize = 256;

/// Output size of spatial axis `a` (0: height, 1: width) for an input of `input` and a
/// kernel of `k` along it.
fn out_size(input: usize, k: usize, g: &Conv2dGeometry, a: usize) -> usize {
    let eff = g.dilations[a] * (k - 1) + 1;
    (input + g.pads[a].0 + g.pads[a].1).saturating_sub(eff) / g.strides[a] + 1
}

struct Geo {
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    ow: usize,
    g: Conv2dGeometry,
}

/// Writes the columns of output rows [oy0, oy0 + rows) of one image group's channels
/// `x` [cpg, H, W] into `col` [cpg·kh·kw, rows·ow].
fn im2col(x: &[f32], geo: &Geo, oy0: usize, rows: usize, col: &mut [f32], parallel: bool) {
    let Geo {
        h,
        w,
        kh,
        kw,
        ow,
        g,
        ..
    } = *geo;
    let [sh, sw] = g.strides;
    let [dh, dw] = g.dilations;
    let (pt, pl) = (g.pads[0].0 as isize, g.pads[1].0 as isize);
    let cols = rows * ow;
    let fill = |r: usize, dst: &mut [f32]| {
        let ci = r / (kh * kw);
        let ky = (r / kw) % kh;
        let kx = r % kw;
        let plane = &x[ci * h * w..][..h * w];
        for (j, seg) in dst.chunks_mut(ow).enumerate() {
            let iy = ((oy0 + j) * sh + ky * dh) as isize - pt;
            if iy < 0 || iy >= h as isize {
                seg.fill(0.0);
                continue;
            }
            let src = &plane[iy as usize * w..][..w];
            let x0 = (kx * dw) as isize - pl;
            if sw == 1 {
                // Output columns whose input column 0 ≤ x0 + ox < w.
                let lo = (-x0).clamp(0, ow as isize) as usize;
                let hi = (w as isize - x0).clamp(lo as isize, ow as isize) as usize;
                seg[..lo].fill(0.0);
                seg[hi..].fill(0.0);
                let s0 = (x0 + lo as isize) as usize;
                seg[lo..hi].copy_from_slice(&src[s0..s0 + (hi - lo)]);
            } else {
                for (ox, v) in seg.iter_mut().enumerate() {
                    let ix = x0 + (ox * sw) as isize;
                    *v = if ix >= 0 && ix < w as isize {
                        src[ix as usize]
                    } else {
                        0.0
                    };
                }
            }
        }
    };
    let col = &mut col[..kh * kw * (x.len() / (h * w)) * cols];
    if parallel && col.len() >= 1 << 15 {
        col.par_chunks_mut(cols)
            .enumerate()
            .for_each(|(r, d)| fill(r, d));
    } else {
        col.chunks_mut(cols)
            .enumerate()
            .for_each(|(r, d)| fill(r, d));
    }
}

/// How [`conv2d`] computes a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvMethod {
    /// Winograd where it applies and pays off ([`winograd::applies`]), else im2col.
    Auto,
    /// im2col + GEMM for every layer.
    Im2col,
}

/// Convolution of x [N, Cin, H, W] with w [Cout, Cin/groups, kh, kw] (any strides), plus
/// the per-channel bias, then `act`, by `method`. Returns the row-major output and its shape.
pub fn conv2d(
    x: &ArrayView<'_, f32, IxDyn>,
    w: &ArrayView<'_, f32, IxDyn>,
    bias: Option<&[f32]>,
    g: Conv2dGeometry,
    act: Activation,
    method: ConvMethod,
) -> (Vec<f32>, [usize; 4]) {
    let x = x.as_standard_layout();
    let w = w.as_standard_layout();
    let (xs, ws) = (x.shape(), w.shape());
    let (n, cin, h, wd) = (xs[0], xs[1], xs[2], xs[3]);
    let (cout, cpg, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
    let groups = g.groups;
    assert!(
        groups > 0 && cin == cpg * groups && cout.is_multiple_of(groups),
        "conv2d: x {xs:?}, w {ws:?}, {groups} groups"
    );
    let (oh, ow) = (out_size(h, kh, &g, 0), out_size(wd, kw, &g, 1));
    let opg = cout / groups;
    let kk = cpg * kh * kw;
    let plane = oh * ow;
    let mut out = vec![0.0f32; n * cout * plane];
    if out.is_empty() {
        return (out, [n, cout, oh, ow]);
    }
    let (xd, wdata) = (x.as_slice().unwrap(), w.as_slice().unwrap());
    if method == ConvMethod::Auto && winograd::applies(kh, kw, &g, winograd::tile_count(n, oh, ow))
    {
        winograd::conv3x3(
            xd,
            [n, cin, h, wd],
            wdata,
            cout,
            bias,
            g.pads,
            [oh, ow],
            &mut out,
        );
        act::apply_par(act, &mut out);
        return (out, [n, cout, oh, ow]);
    }
    let geo = Geo {
        h,
        w: wd,
        kh,
        kw,
        ow,
        g,
    };
    let direct = kh == 1 && kw == 1 && g.strides == [1, 1] && g.pads == [(0, 0), (0, 0)];
    let (rows_per_band, bands) = if direct {
        (oh, 1)
    } else {
        let rows = (COL_BUDGET / (kk * ow).max(1))
            .max(MIN_COLS.div_ceil(ow.max(1)))
            .clamp(1, oh);
        (rows, oh.div_ceil(rows))
    };
    let (dst0, dst_len) = (out.as_mut_ptr() as usize, out.len());
    // One task per (image, group, band of output rows); a task fills its band's columns
    // (unless direct), multiplies, and applies the activation while the band is in cache.
    let tasks = n * groups * bands;
    // Parallel over tasks when there are several and enough work, else inside each one.
    let over_tasks = tasks > 1 && kk * plane * opg >= 1 << 16;
    let task = |t: usize, col: &mut Vec<f32>| {
        let (img, gi, oy0) = (
            t / (groups * bands),
            (t / bands) % groups,
            (t % bands) * rows_per_band,
        );
        let rows = rows_per_band.min(oh - oy0);
        let cols = rows * ow;
        let xg = &xd[(img * cin + gi * cpg) * h * wd..][..cpg * h * wd];
        let lhs = MatRef {
            ptr: wdata[gi * opg * kk..].as_ptr(),
            rs: kk as isize,
            cs: 1,
        };
        let rhs = if direct {
            MatRef {
                ptr: xg.as_ptr(),
                rs: plane as isize,
                cs: 1,
            }
        } else {
            col.resize(kk * cols, 0.0);
            im2col(xg, &geo, oy0, rows, col, !over_tasks);
            MatRef {
                ptr: col.as_ptr(),
                rs: cols as isize,
                cs: 1,
            }
        };
        let start = (img * cout + gi * opg) * plane + oy0 * ow;
        debug_assert!(start + (opg - 1) * plane + cols <= dst_len);
        // SAFETY: rows [start + c·plane, + cols) for c < opg lie inside `out` and belong to
        // this task's (image, group, band) alone.
        let row = |c: usize| unsafe {
            std::slice::from_raw_parts_mut((dst0 as *mut f32).add(start + c * plane), cols)
        };
        if let Some(b) = bias {
            (0..opg).for_each(|c| row(c).fill(b[gi * opg + c]));
        }
        let dst = MatMut {
            ptr: (dst0 as *mut f32).wrapping_add(start),
            rs: plane as isize,
            cs: 1,
        };
        let par = if over_tasks {
            Parallelism::None
        } else {
            parallelism(opg, cols, kk)
        };
        // SAFETY: lhs is w's group block [opg, kk], rhs [kk, cols] lies in `col` or in x's
        // group planes, dst [opg, cols] (row stride `plane`) is this task's own output.
        unsafe { sgemm(opg, cols, kk, dst, bias.is_some(), lhs, rhs, par) };
        if act != Activation::None {
            (0..opg).for_each(|c| act::apply(act, row(c)));
        }
    };
    if over_tasks {
        (0..tasks)
            .into_par_iter()
            .for_each_init(Vec::new, |col, t| task(t, col));
    } else {
        let mut col = Vec::new();
        (0..tasks).for_each(|t| task(t, &mut col));
    }
    (out, [n, cout, oh, ow])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::naive_conv;
    use ndarray::Array;

    fn vals(n: usize, s: f32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7 + 3) % 13) as f32 * s - 0.4)
            .collect()
    }

    fn check(xs: [usize; 4], ws: [usize; 4], g: Conv2dGeometry, bias: bool, act: Activation) {
        let x = vals(xs.iter().product(), 0.07);
        let w = vals(ws.iter().product(), 0.05);
        let b: Vec<f32> = (0..ws[0]).map(|i| i as f32 * 0.1 - 0.2).collect();
        let zero = vec![0.0; ws[0]];
        let pads = [g.pads[0].0, g.pads[0].1, g.pads[1].0, g.pads[1].1];
        let b_or_zero = if bias { &b } else { &zero };
        let (mut want, _) = naive_conv(
            &x,
            xs,
            &w,
            ws,
            b_or_zero,
            g.strides,
            pads,
            g.dilations,
            g.groups,
        );
        super::act::apply(act, &mut want);
        let xa = Array::from_shape_vec(IxDyn(&xs), x).unwrap();
        let wa = Array::from_shape_vec(IxDyn(&ws), w).unwrap();
        let (got, _) = conv2d(
            &xa.view(),
            &wa.view(),
            bias.then_some(&b[..]),
            g,
            act,
            ConvMethod::Auto,
        );
        assert_eq!(got.len(), want.len(), "{xs:?} {ws:?} {g:?}");
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() < 1e-4 * (1.0 + b.abs()),
                "{i}: {a} vs {b} ({g:?})"
            );
        }
    }

    fn geo(
        strides: [usize; 2],
        pads: [(usize, usize); 2],
        dil: [usize; 2],
        groups: usize,
    ) -> Conv2dGeometry {
        Conv2dGeometry {
            strides,
            pads,
            dilations: dil,
            groups,
        }
    }

    #[test]
    fn matches_naive_convolution() {
        // 3×3 same padding, odd sizes, bias + SiLU.
        check(
            [2, 3, 7, 5],
            [4, 3, 3, 3],
            geo([1, 1], [(1, 1), (1, 1)], [1, 1], 1),
            true,
            Activation::Silu,
        );
        // Stride 2, asymmetric padding (as the VAE encoder's downsampling), no bias.
        check(
            [1, 4, 8, 9],
            [2, 4, 3, 3],
            geo([2, 2], [(0, 1), (0, 1)], [1, 1], 1),
            false,
            Activation::None,
        );
        // Groups, dilation, rectangular kernel, uneven strides.
        check(
            [2, 4, 9, 8],
            [6, 2, 3, 2],
            geo([2, 1], [(1, 2), (0, 1)], [1, 2], 2),
            true,
            Activation::None,
        );
        // 1×1 direct path and 1×1 with padding.
        check(
            [2, 5, 3, 4],
            [3, 5, 1, 1],
            geo([1, 1], [(0, 0), (0, 0)], [1, 1], 1),
            true,
            Activation::Relu,
        );
        check(
            [1, 2, 3, 3],
            [2, 2, 1, 1],
            geo([1, 1], [(1, 0), (0, 2)], [1, 1], 1),
            true,
            Activation::None,
        );
        // Padding wider than the kernel reach, large enough to thread and band.
        check(
            [1, 8, 40, 33],
            [16, 8, 3, 3],
            geo([1, 1], [(3, 2), (2, 3)], [2, 2], 1),
            true,
            Activation::GeluExact,
        );
    }

    #[test]
    fn bands_when_columns_exceed_the_budget() {
        // kk·ow = 576·70 > COL_BUDGET, so bands of ⌈MIN_COLS / 70⌉ = 4 rows: 20 bands run in
        // parallel, each with its own scratch.
        check(
            [1, 64, 80, 70],
            [8, 64, 3, 3],
            geo([1, 1], [(1, 1), (1, 1)], [1, 1], 1),
            true,
            Activation::None,
        );
    }
}
