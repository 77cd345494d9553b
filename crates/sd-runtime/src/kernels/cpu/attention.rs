//! Attention softmax(q·kᵀ·scale + mask)·v without materializing the whole score tensor:
//! each task takes one batch entry and a block of query rows, computes their scores into a
//! cache-sized scratch with GEMM, turns them into exponentials in place (vectorized), then
//! multiplies by v and divides each output row by its sum. Without a mask, on CPUs with
//! AVX-512, [`super::attention_lanes`] runs instead.

use super::attention_lanes as lanes;
use super::gemm::{MatMut, MatRef, batch_offsets, sgemm};
use super::simd::{self, multiversion};
use gemm::Parallelism;
use ndarray::{ArrayView, IxDyn};
use rayon::prelude::*;

/// Score elements per task (1 MiB of scratch: blocks of 64 query rows at 4096 keys, so K and
/// V are packed once per 64 rows).
const SCORE_BUDGET: usize = 1 << 18;

multiversion! {
    /// row ← exp(row·scale − max(row·scale)), returning the sum of the new row.
    fn softmax_numerators(row: &mut [f32], scale: f32) -> f32 {
        let scale = if scale < 0.0 {
            row.iter_mut().for_each(|v| *v *= scale);
            1.0
        } else {
            scale
        };
        let mut mx = simd::max(row) * scale;
        if mx == f32::NEG_INFINITY {
            mx = 0.0;
        }
        simd::exp_scaled_sum(row, scale, mx)
    }
}

/// Where a batched operand's matrices are: the view's (0, …) address, per-batch offsets,
/// and the strides of its last two axes.
struct Operand {
    base: MatRef,
    offs: Vec<isize>,
}

impl Operand {
    fn new(a: &ArrayView<'_, f32, IxDyn>, batch: &[usize]) -> Operand {
        let r = a.ndim();
        let s = a.strides();
        Operand {
            base: MatRef {
                ptr: a.as_ptr(),
                rs: s[r - 2],
                cs: s[r - 1],
            },
            offs: batch_offsets(batch, &a.shape()[..r - 2], &s[..r - 2]),
        }
    }
    fn at(&self, b: usize) -> MatRef {
        // SAFETY: the offsets come from the view's own shape and strides.
        unsafe { self.base.offset(self.offs[b]) }
    }
}

/// softmax(q·kᵀ·scale + mask)·v for q [..., sq, d], k [..., sk, d], v [..., sk, dv] of one
/// rank (batch dims equal or 1) and an additive mask broadcastable to [..., sq, sk]; any
/// strides. Returns the row-major [..., sq, dv] elements and shape.
pub fn attention(
    q: &ArrayView<'_, f32, IxDyn>,
    k: &ArrayView<'_, f32, IxDyn>,
    v: &ArrayView<'_, f32, IxDyn>,
    scale: f32,
    mask: Option<&ArrayView<'_, f32, IxDyn>>,
) -> (Vec<f32>, Vec<usize>) {
    let r = q.ndim();
    assert!(
        r >= 2 && k.ndim() == r && v.ndim() == r,
        "attention operand ranks"
    );
    let (sq, d) = (q.shape()[r - 2], q.shape()[r - 1]);
    let (sk, dv) = (k.shape()[r - 2], v.shape()[r - 1]);
    assert!(
        k.shape()[r - 1] == d && v.shape()[r - 2] == sk,
        "attention shapes"
    );
    let batch: Vec<usize> = (0..r - 2)
        .map(|i| q.shape()[i].max(k.shape()[i]).max(v.shape()[i]))
        .collect();
    let nb: usize = batch.iter().product();
    let (qo, ko, vo) = (
        Operand::new(q, &batch),
        Operand::new(k, &batch),
        Operand::new(v, &batch),
    );
    let mut full = batch.clone();
    full.extend([sq, sk]);
    let mask = mask.map(|m| {
        let pad = r - m.ndim();
        let mut s = vec![1; pad];
        s.extend_from_slice(m.shape());
        let m = m.to_shape(IxDyn(&s)).expect("reshape mask");
        let m = m
            .broadcast(IxDyn(&full))
            .expect("mask broadcasts")
            .to_owned();
        m.as_standard_layout().into_owned()
    });
    let mut out = vec![0.0f32; nb * sq * dv];
    let mut shape = batch;
    shape.extend([sq, dv]);
    if out.is_empty() {
        return (out, shape);
    }
    if mask.is_none() && lanes::available() {
        let per = sq.div_ceil(lanes::ROWS);
        let dst = MatMut {
            ptr: out.as_mut_ptr(),
            rs: dv as isize,
            cs: 1,
        };
        (0..nb * per)
            .into_par_iter()
            .for_each_init(lanes::Scratch::default, |scratch, t| {
                let (b, q0) = (t / per, (t % per) * lanes::ROWS);
                let qm = qo.at(b);
                // SAFETY: rows [q0, q0 + rows) of batch b of q, and this task's own output
                // rows; the CPU has AVX-512F.
                unsafe {
                    let block = lanes::Block {
                        q: qm.offset(q0 as isize * qm.rs),
                        k: ko.at(b),
                        v: vo.at(b),
                        out: dst.add((b * sq + q0) * dv),
                        rows: lanes::ROWS.min(sq - q0),
                        sk,
                        d,
                        dv,
                        scale,
                    };
                    lanes::run(&block, scratch);
                }
            });
        return (out, shape);
    }
    let block = (SCORE_BUDGET / sk.max(1)).clamp(8, 256).min(sq);
    let per = sq.div_ceil(block);
    let dst_base = MatMut {
        ptr: out.as_mut_ptr(),
        rs: dv as isize,
        cs: 1,
    };
    let mask_data = mask.as_ref().map(|m| m.as_slice().expect("row-major mask"));
    (0..nb * per)
        .into_par_iter()
        .for_each_init(Vec::new, |scores: &mut Vec<f32>, t| {
            let (b, q0) = (t / per, (t % per) * block);
            let rows = block.min(sq - q0);
            scores.resize(rows * sk, 0.0);
            let sdst = MatMut {
                ptr: scores.as_mut_ptr(),
                rs: sk as isize,
                cs: 1,
            };
            let qm = qo.at(b);
            // SAFETY: rows [q0, q0 + rows) of batch b of q, all of k's batch b, and this
            // task's own scratch and output rows.
            unsafe {
                let qm = qm.offset(q0 as isize * qm.rs);
                sgemm(
                    rows,
                    sk,
                    d,
                    sdst,
                    false,
                    qm,
                    ko.at(b).t(),
                    Parallelism::None,
                );
            }
            let mut sums = [0.0f32; 256];
            for (i, row) in scores.chunks_mut(sk).enumerate() {
                sums[i] = match mask_data {
                    Some(m) => {
                        let mrow = &m[(b * sq + q0 + i) * sk..][..sk];
                        for (s, mv) in row.iter_mut().zip(mrow) {
                            *s = *s * scale + mv;
                        }
                        softmax_numerators(row, 1.0)
                    }
                    None => softmax_numerators(row, scale),
                };
            }
            // SAFETY: inside `out`: batch b, rows [q0, q0 + rows).
            let odst = unsafe { dst_base.add((b * sq + q0) * dv) };
            let p = MatRef {
                ptr: scores.as_ptr(),
                rs: sk as isize,
                cs: 1,
            };
            // SAFETY: p is [rows, sk] scratch, v's batch b is [sk, dv], odst is this task's.
            unsafe { sgemm(rows, dv, sk, odst, false, p, vo.at(b), Parallelism::None) };
            for (i, s) in sums.iter().enumerate().take(rows) {
                let inv = 1.0 / s;
                // SAFETY: row i of this task's output block.
                let o = unsafe { std::slice::from_raw_parts_mut(odst.ptr.add(i * dv), dv) };
                o.iter_mut().for_each(|x| *x *= inv);
            }
        });
    (out, shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array;

    fn vals(n: usize, s: f32, o: f32) -> Vec<f32> {
        (0..n).map(|i| ((i * 11 + 3) % 19) as f32 * s + o).collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn naive(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        m: Option<&[f32]>,
        sq: usize,
        sk: usize,
        d: usize,
        dv: usize,
        scale: f32,
    ) -> Vec<f32> {
        let mut out = vec![0.0; sq * dv];
        for i in 0..sq {
            let s: Vec<f32> = (0..sk)
                .map(|j| {
                    (0..d).map(|p| q[i * d + p] * k[j * d + p]).sum::<f32>() * scale
                        + m.map_or(0.0, |m| m[i * sk + j])
                })
                .collect();
            let mx = s.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = s.iter().map(|x| (x - mx).exp()).collect();
            let z: f32 = e.iter().sum();
            for c in 0..dv {
                out[i * dv + c] = (0..sk).map(|j| e[j] * v[j * dv + c]).sum::<f32>() / z;
            }
        }
        out
    }

    #[test]
    fn matches_naive_at_head_widths_and_ragged_blocks() {
        // (sq, sk, d, dv): SD's head widths, fewer keys than one score step, value widths
        // split into passes, and one row.
        for (sq, sk, d, dv) in [
            (70, 77, 40, 40),
            (33, 5, 64, 64),
            (1, 1, 8, 13),
            (40, 100, 160, 160),
            (65, 24, 3, 25),
        ] {
            let q = vals(2 * sq * d, 0.02, -0.15);
            let k = vals(sk * d, 0.03, -0.25);
            let v = vals(sk * dv, 0.1, -0.9);
            let qa = Array::from_shape_vec(IxDyn(&[2, sq, d]), q.clone()).unwrap();
            // One k and v for both batch entries (batch dim 1, broadcast).
            let ka = Array::from_shape_vec(IxDyn(&[1, sk, d]), k.clone()).unwrap();
            let va = Array::from_shape_vec(IxDyn(&[1, sk, dv]), v.clone()).unwrap();
            let (got, shape) = attention(&qa.view(), &ka.view(), &va.view(), -0.3, None);
            assert_eq!(shape, [2, sq, dv]);
            for b in 0..2 {
                let want = naive(&q[b * sq * d..], &k, &v, None, sq, sk, d, dv, -0.3);
                for (x, y) in got[b * sq * dv..][..sq * dv].iter().zip(&want) {
                    assert!(
                        (x - y).abs() < 1e-5 * (1.0 + y.abs()),
                        "{sq} {sk} {d} {dv}: {x} vs {y}"
                    );
                }
            }
        }
    }

    #[test]
    fn matches_naive_with_permuted_views_mask_and_blocks() {
        // Two heads, sq = 300 (several query blocks and a ragged last one), sk = 260.
        let (h, sq, sk, d, dv) = (2, 300, 260, 5, 3);
        let q = Array::from_shape_vec(IxDyn(&[h, sq, d]), vals(h * sq * d, 0.03, -0.2)).unwrap();
        // k stored as [h, d, sk] and viewed as [h, sk, d].
        let kt = Array::from_shape_vec(IxDyn(&[h, d, sk]), vals(h * sk * d, 0.05, -0.4)).unwrap();
        let k = kt.view().permuted_axes(IxDyn(&[0, 2, 1]));
        let v = Array::from_shape_vec(IxDyn(&[h, sk, dv]), vals(h * sk * dv, 0.1, -0.9)).unwrap();
        // Causal mask [sq, sk] shared by the heads.
        let m: Vec<f32> = (0..sq * sk)
            .map(|i| {
                if i % sk > i / sk {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let ma = Array::from_shape_vec(IxDyn(&[sq, sk]), m.clone()).unwrap();
        for mask in [None, Some(&ma)] {
            let (got, shape) = attention(
                &q.view(),
                &k,
                &v.view(),
                0.7,
                mask.map(|m| m.view()).as_ref(),
            );
            assert_eq!(shape, [h, sq, dv]);
            for b in 0..h {
                let qb: Vec<f32> = q.slice(ndarray::s![b, .., ..]).iter().copied().collect();
                let kb: Vec<f32> = k.slice(ndarray::s![b, .., ..]).iter().copied().collect();
                let vb: Vec<f32> = v.slice(ndarray::s![b, .., ..]).iter().copied().collect();
                let want = naive(&qb, &kb, &vb, mask.map(|_| &m[..]), sq, sk, d, dv, 0.7);
                for (x, y) in got[b * sq * dv..][..sq * dv].iter().zip(&want) {
                    assert!((x - y).abs() < 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
                }
            }
        }
    }
}
