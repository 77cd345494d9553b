//! f32 matrix products on the `gemm` crate (the GEMM candle uses): strided operands,
//! threaded by rayon; batched matmul with batch broadcasting and linear layers with a fused
//! bias and activation.

use super::act;
use crate::kernels::Activation;
use gemm::Parallelism;
use ndarray::{ArrayView, IxDyn};
use rayon::prelude::*;

/// A read-only matrix: the address of element (0, 0) and strides in elements.
#[derive(Debug, Clone, Copy)]
pub struct MatRef {
    /// Element (0, 0).
    pub ptr: *const f32,
    /// Row stride.
    pub rs: isize,
    /// Column stride.
    pub cs: isize,
}

/// A writable matrix: the address of element (0, 0) and strides in elements.
#[derive(Debug, Clone, Copy)]
pub struct MatMut {
    /// Element (0, 0).
    pub ptr: *mut f32,
    /// Row stride.
    pub rs: isize,
    /// Column stride.
    pub cs: isize,
}

// SAFETY: the pointers are plain addresses; the functions taking them state who may write
// where, and callers hand disjoint destinations to different threads.
unsafe impl Send for MatRef {}
unsafe impl Sync for MatRef {}
unsafe impl Send for MatMut {}
unsafe impl Sync for MatMut {}

impl MatRef {
    /// The same matrix, transposed.
    pub fn t(self) -> MatRef {
        MatRef {
            ptr: self.ptr,
            rs: self.cs,
            cs: self.rs,
        }
    }
    /// The matrix starting `off` elements further.
    ///
    /// # Safety
    /// The result must stay inside the allocation.
    pub unsafe fn offset(self, off: isize) -> MatRef {
        MatRef {
            ptr: unsafe { self.ptr.offset(off) },
            ..self
        }
    }
}

impl MatMut {
    /// The matrix starting `off` elements further.
    ///
    /// # Safety
    /// The result must stay inside the allocation.
    pub unsafe fn add(self, off: usize) -> MatMut {
        MatMut {
            ptr: unsafe { self.ptr.add(off) },
            ..self
        }
    }
}

/// Work (multiply-adds) below which a product runs on one thread.
const SERIAL_MACS: usize = 1 << 16;

/// Threading for one product of the given size.
pub fn parallelism(m: usize, n: usize, k: usize) -> Parallelism {
    if m * n * k < SERIAL_MACS || rayon::current_num_threads() < 2 {
        Parallelism::None
    } else {
        Parallelism::Rayon(rayon::current_num_threads())
    }
}

/// dst := (dst if `accumulate`, else 0) + lhs·rhs for lhs m×k, rhs k×n and dst m×n.
///
/// # Safety
/// Every operand must be valid for its shape and strides, and `dst` must not overlap the
/// inputs nor be written by anyone else meanwhile.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    dst: MatMut,
    accumulate: bool,
    lhs: MatRef,
    rhs: MatRef,
    par: Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m as isize {
                for j in 0..n as isize {
                    // SAFETY: (i, j) is inside dst.
                    unsafe { *dst.ptr.offset(i * dst.rs + j * dst.cs) = 0.0 };
                }
            }
        }
        return;
    }
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm::gemm(
            m, n, k, dst.ptr, dst.cs, dst.rs, accumulate, lhs.ptr, lhs.cs, lhs.rs, rhs.ptr, rhs.cs,
            rhs.rs, 1.0f32, 1.0f32, false, false, false, par,
        )
    }
}

/// Element offsets of every output batch into an operand with the given batch dims and
/// strides (dims of 1 broadcast).
pub(super) fn batch_offsets(out_batch: &[usize], dims: &[usize], strides: &[isize]) -> Vec<isize> {
    let nb: usize = out_batch.iter().product();
    let mut offs = Vec::with_capacity(nb);
    let mut idx = vec![0usize; out_batch.len()];
    for _ in 0..nb {
        let off = idx
            .iter()
            .zip(dims.iter().zip(strides))
            .map(|(&i, (&d, &s))| if d == 1 { 0 } else { i as isize * s })
            .sum();
        offs.push(off);
        for ax in (0..idx.len()).rev() {
            idx[ax] += 1;
            if idx[ax] < out_batch[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    offs
}

/// Batched a·b for a [..., m, k] and b [..., k, n] of one rank whose batch dims are equal
/// or 1, with any strides. Returns the row-major [batch..., m, n] elements and shape.
pub fn matmul(
    a: &ArrayView<'_, f32, IxDyn>,
    b: &ArrayView<'_, f32, IxDyn>,
) -> (Vec<f32>, Vec<usize>) {
    let r = a.ndim();
    assert!(
        r >= 2 && b.ndim() == r,
        "matmul operands of ranks {} and {}",
        r,
        b.ndim()
    );
    let (m, k, n) = (a.shape()[r - 2], a.shape()[r - 1], b.shape()[r - 1]);
    assert_eq!(b.shape()[r - 2], k, "matmul inner dimensions");
    let out_batch: Vec<usize> = (0..r - 2).map(|i| a.shape()[i].max(b.shape()[i])).collect();
    let nb: usize = out_batch.iter().product();
    let ao = batch_offsets(&out_batch, &a.shape()[..r - 2], &a.strides()[..r - 2]);
    let bo = batch_offsets(&out_batch, &b.shape()[..r - 2], &b.strides()[..r - 2]);
    let (sa, sb) = (a.strides(), b.strides());
    let lhs = MatRef {
        ptr: a.as_ptr(),
        rs: sa[r - 2],
        cs: sa[r - 1],
    };
    let rhs = MatRef {
        ptr: b.as_ptr(),
        rs: sb[r - 2],
        cs: sb[r - 1],
    };
    let mut out = vec![0.0f32; nb * m * n];
    let mut shape = out_batch;
    shape.extend([m, n]);
    if m * n == 0 {
        return (out, shape);
    }
    let one = |(i, dst): (usize, &mut [f32]), par: Parallelism| {
        let d = MatMut {
            ptr: dst.as_mut_ptr(),
            rs: n as isize,
            cs: 1,
        };
        // SAFETY: the offsets come from the views' own shapes and strides; each batch
        // writes its own chunk of `out`.
        unsafe { sgemm(m, n, k, d, false, lhs.offset(ao[i]), rhs.offset(bo[i]), par) };
    };
    if nb > 1 && m * n * k < 1 << 20 {
        out.par_chunks_mut(m * n)
            .enumerate()
            .for_each(|c| one(c, Parallelism::None));
    } else {
        let par = parallelism(m, n, k);
        out.chunks_mut(m * n).enumerate().for_each(|c| one(c, par));
    }
    (out, shape)
}

/// x·wᵀ + bias, then `act`, for x [..., din] and w [dout, din] (any strides). Returns the
/// row-major [..., dout] elements and shape.
pub fn linear(
    x: &ArrayView<'_, f32, IxDyn>,
    w: &ArrayView<'_, f32, IxDyn>,
    bias: Option<&[f32]>,
    act: Activation,
) -> (Vec<f32>, Vec<usize>) {
    let x = x.as_standard_layout();
    let din = *x.shape().last().expect("rank ≥ 1");
    let dout = w.shape()[0];
    let m = x.len() / din.max(1);
    let mut out = vec![0.0f32; m * dout];
    if let Some(b) = bias {
        for row in out.chunks_mut(dout) {
            row.copy_from_slice(b);
        }
    }
    let sw = w.strides();
    let lhs = MatRef {
        ptr: x.as_ptr(),
        rs: din as isize,
        cs: 1,
    };
    let rhs = MatRef {
        ptr: w.as_ptr(),
        rs: sw[0],
        cs: sw[1],
    }
    .t();
    let dst = MatMut {
        ptr: out.as_mut_ptr(),
        rs: dout as isize,
        cs: 1,
    };
    // SAFETY: shapes and strides come from the views; `out` is fresh.
    unsafe {
        sgemm(
            m,
            dout,
            din,
            dst,
            bias.is_some(),
            lhs,
            rhs,
            parallelism(m, dout, din),
        )
    };
    act::apply_par(act, &mut out);
    let mut shape = x.shape().to_vec();
    *shape.last_mut().unwrap() = dout;
    (out, shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array, ShapeBuilder};

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut o = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                o[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        o
    }

    fn vals(n: usize, s: f32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 13 + 5) % 17) as f32 * s - 1.0)
            .collect()
    }

    #[test]
    fn batched_broadcast_and_transposed_views() {
        // a [2, 1, 5, 3] broadcast against b [1, 3, 3, 4]; b handed in transposed storage.
        let (m, k, n) = (5, 3, 4);
        let a = Array::from_shape_vec(IxDyn(&[2, 1, m, k]), vals(2 * m * k, 0.1)).unwrap();
        let bt = Array::from_shape_vec(IxDyn(&[1, 3, n, k]), vals(3 * n * k, 0.2)).unwrap();
        let b = bt.view().permuted_axes(IxDyn(&[0, 1, 3, 2]));
        let (got, shape) = matmul(&a.view(), &b);
        assert_eq!(shape, [2, 3, m, n]);
        for i in 0..2 {
            for j in 0..3 {
                let ab: Vec<f32> = a.slice(ndarray::s![i, 0, .., ..]).iter().copied().collect();
                let bb: Vec<f32> = b.slice(ndarray::s![0, j, .., ..]).iter().copied().collect();
                let want = naive(&ab, &bb, m, k, n);
                let o = &got[(i * 3 + j) * m * n..][..m * n];
                for (x, y) in o.iter().zip(&want) {
                    assert!((x - y).abs() < 1e-5, "{x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn large_threaded_product_and_empty_inner_dimension() {
        let (m, k, n) = (67, 129, 71);
        let a = Array::from_shape_vec(IxDyn(&[m, k]), vals(m * k, 0.05)).unwrap();
        // Column-major b.
        let b = Array::from_shape_vec(IxDyn(&[k, n]).f(), vals(k * n, 0.03)).unwrap();
        let bs: Vec<f32> = b.iter().copied().collect();
        let (got, _) = matmul(&a.view(), &b.view());
        let want = naive(a.as_slice().unwrap(), &bs, m, k, n);
        for (x, y) in got.iter().zip(&want) {
            assert!((x - y).abs() < 1e-4 * (1.0 + y.abs()), "{x} vs {y}");
        }
        let z = Array::<f32, _>::zeros(IxDyn(&[2, 0]));
        let z2 = Array::<f32, _>::zeros(IxDyn(&[0, 3]));
        assert_eq!(matmul(&z.view(), &z2.view()).0, vec![0.0; 6]);
    }

    #[test]
    fn linear_bias_and_silu() {
        let (m, din, dout) = (7, 5, 3);
        let x = Array::from_shape_vec(IxDyn(&[1, m, din]), vals(m * din, 0.1)).unwrap();
        let w = Array::from_shape_vec(IxDyn(&[dout, din]), vals(dout * din, 0.07)).unwrap();
        let b = [0.5, -0.25, 0.0];
        let (got, shape) = linear(&x.view(), &w.view(), Some(&b), Activation::Silu);
        assert_eq!(shape, [1, m, dout]);
        for i in 0..m {
            for j in 0..dout {
                let s: f32 = (0..din).map(|p| x[[0, i, p]] * w[[j, p]]).sum::<f32>() + b[j];
                let want = s / (1.0 + (-s).exp());
                assert!((got[i * dout + j] - want).abs() < 1e-5);
            }
        }
    }
}
