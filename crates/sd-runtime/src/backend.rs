//! The backend boundary: which burn backend runs the kernels, and the hooks a backend may
//! override for the hot ops.
//!
//! Kernels are plain functions over burn's primitive tensor ops (`B::float_*`), so every
//! burn backend runs every op. The hot ops go through the hooks of [`RtBackend`] — f16
//! rounding, convolution, matmul, linear, group and layer norm, softmax, attention — whose defaults are those
//! generic burn implementations; a backend overrides the ones it can do better ([`Cpu`]
//! serves them from `kernels::cpu`: GEMM-based convolution and matmul, fused group norm and
//! blocked attention). A single op can also be replaced in the [`crate::kernels::Registry`].

use crate::kernels::cpu::{self, array};
use crate::kernels::{self, Activation, Conv2dGeometry, KResult};
use burn_ndarray::NdArrayTensor;
use burn_tensor::backend::Backend;
use burn_tensor::ops::{FloatTensor, InterpolateMode, InterpolateOptions, ModuleOps};
use burn_tensor::{FloatDType, TensorMetadata};

/// The CPU backend: burn's NdArray backend in f32.
pub type Cpu = burn_ndarray::NdArray<f32>;

/// A burn backend the runtime can execute on.
pub trait RtBackend: Backend {
    /// Rounds every element to the nearest fp16 value (overflow → ±inf), keeping the
    /// tensor's storage type. This is how fp16 programs run on f32-only backends.
    fn round_f16(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_cast(Self::float_cast(x, FloatDType::F16), FloatDType::F32)
    }

    /// 2-D convolution of x [N, Cin, H, W] with w [Cout, Cin/groups, kH, kW], plus the
    /// per-output-channel bias, then `act`.
    fn conv2d_fused(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        geometry: Conv2dGeometry,
        act: Activation,
    ) -> KResult<FloatTensor<Self>> {
        kernels::conv2d_generic::<Self>(x, w, bias, geometry, act)
    }

    /// Batched a·b for a [..., m, k] and b [..., k, n] of one rank whose batch dims are
    /// equal or 1.
    fn matmul_batched(a: FloatTensor<Self>, b: FloatTensor<Self>) -> KResult<FloatTensor<Self>> {
        kernels::matmul_generic::<Self>(a, b)
    }

    /// x·wᵀ + bias, then `act`, for x [..., din] and w [dout, din].
    fn linear_fused(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        act: Activation,
    ) -> KResult<FloatTensor<Self>> {
        kernels::linear_generic::<Self>(x, w, bias, act)
    }

    /// A constant linear weight [dout, din] in the storage [`Self::linear_fused`] reads
    /// fastest; the values and shape stay the same. Called once, at load.
    fn linear_weight_layout(w: FloatTensor<Self>) -> FloatTensor<Self> {
        w
    }

    /// Group norm of x [N, C, …] over `groups` channel groups, per-channel gamma/beta, then
    /// `act`; x's shape is kept.
    fn group_norm_fused(
        x: FloatTensor<Self>,
        groups: usize,
        eps: f32,
        gamma: Option<FloatTensor<Self>>,
        beta: Option<FloatTensor<Self>>,
        act: Activation,
    ) -> KResult<FloatTensor<Self>> {
        kernels::group_norm_generic::<Self>(x, groups, eps, gamma, beta, act)
    }

    /// Numerically stable softmax along `axis`.
    fn softmax_fused(x: FloatTensor<Self>, axis: usize) -> FloatTensor<Self> {
        kernels::softmax_generic::<Self>(x, axis)
    }

    /// Layer norm of x over one axis, then gamma/beta (one value per position of that
    /// axis); x's shape is kept.
    fn layer_norm_fused(
        x: FloatTensor<Self>,
        axis: usize,
        eps: f32,
        gamma: Option<FloatTensor<Self>>,
        beta: Option<FloatTensor<Self>>,
    ) -> KResult<FloatTensor<Self>> {
        kernels::layer_norm_generic::<Self>(x, axis, eps, gamma, beta)
    }

    /// `x[.., start..end, ..]` along `axis` (the `split` op's pieces).
    fn narrow(x: FloatTensor<Self>, axis: usize, start: usize, end: usize) -> FloatTensor<Self> {
        kernels::narrow_generic::<Self>(x, axis, start, end)
    }

    /// An activation applied to every element (the standalone `silu`, `relu`, `gelu` ops).
    fn activation(x: FloatTensor<Self>, act: Activation) -> FloatTensor<Self> {
        act.apply::<Self>(x)
    }

    /// Nearest-neighbour upsampling of x [N, C, H, W] to [N, C, oh, ow] (source index
    /// ⌊o·H/oh⌋, as Core ML's `upsample_nearest_neighbor`).
    fn upsample_nearest(x: FloatTensor<Self>, oh: usize, ow: usize) -> FloatTensor<Self> {
        let options = InterpolateOptions::new(InterpolateMode::Nearest);
        Self::interpolate(x, [oh, ow], options)
    }

    /// softmax(q·kᵀ·scale + mask)·v for q [..., Sq, d], k [..., Sk, d], v [..., Sk, dv] of one
    /// rank (batch dims equal or 1) and an additive mask broadcastable to [..., Sq, Sk].
    fn attention_fused(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f32,
        mask: Option<FloatTensor<Self>>,
    ) -> KResult<FloatTensor<Self>> {
        kernels::attention_generic::<Self>(q, k, v, scale, mask)
    }
}

/// Host elements of a small optional f32 tensor (bias, gamma, beta), row-major.
fn host_vec(t: Option<&NdArrayTensor>) -> Option<Vec<f32>> {
    t.and_then(array::view).map(|v| v.iter().copied().collect())
}

/// Runs `f` over the row-major elements of the f32 tensor `x` in place (see
/// [`array::into_standard`]).
fn in_place(x: NdArrayTensor, f: impl FnOnce(&mut [f32])) -> NdArrayTensor {
    let mut a = array::into_standard(x);
    f(a.as_slice_mut().expect("row-major"));
    array::from_array(a)
}

impl RtBackend for Cpu {
    fn round_f16(x: FloatTensor<Self>) -> FloatTensor<Self> {
        if !array::is_f32(&x) {
            return x;
        }
        in_place(x, cpu::round::round_f16_in_place)
    }

    fn conv2d_fused(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        geometry: Conv2dGeometry,
        act: Activation,
    ) -> KResult<FloatTensor<Self>> {
        let (Some(xv), Some(wv)) = (array::view(&x), array::view(&w)) else {
            return kernels::conv2d_generic::<Self>(x, w, bias, geometry, act);
        };
        let b = host_vec(bias.as_ref());
        let (y, shape) = cpu::conv::conv2d(
            &xv,
            &wv,
            b.as_deref(),
            geometry,
            act,
            cpu::conv::ConvMethod::Auto,
        );
        Ok(array::tensor(y, &shape))
    }

    fn matmul_batched(a: FloatTensor<Self>, b: FloatTensor<Self>) -> KResult<FloatTensor<Self>> {
        let (Some(av), Some(bv)) = (array::view(&a), array::view(&b)) else {
            return kernels::matmul_generic::<Self>(a, b);
        };
        let (y, shape) = cpu::gemm::matmul(&av, &bv);
        Ok(array::tensor(y, &shape))
    }

    fn linear_fused(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        act: Activation,
    ) -> KResult<FloatTensor<Self>> {
        let (Some(xv), Some(wv)) = (array::view(&x), array::view(&w)) else {
            return kernels::linear_generic::<Self>(x, w, bias, act);
        };
        let b = host_vec(bias.as_ref());
        let (y, shape) = cpu::gemm::linear(&xv, &wv, b.as_deref(), act);
        Ok(array::tensor(y, &shape))
    }

    /// When din ≥ dout, stores wᵀ row-major and hands back its transposed view (strides
    /// (1, dout)): the GEMM then reads the weights as a row-major [din, dout] right-hand
    /// side. Measured (`examples/gemm_probe.rs`, 77 rows, AVX-512, 2 threads): 3072→768
    /// 204 against 61 GFLOP/s, 768→768 217 against 115, 4096→1024 132 against 88; with
    /// more outputs than inputs the stored layout is as fast or faster (768→3072: 206
    /// against 101), so it is kept.
    fn linear_weight_layout(w: FloatTensor<Self>) -> FloatTensor<Self> {
        match array::view(&w) {
            Some(v) if v.ndim() == 2 && v.shape()[1] >= v.shape()[0] => {
                let t = v.t().as_standard_layout().into_owned().into_shared();
                array::from_array(t.reversed_axes())
            }
            _ => w,
        }
    }

    fn group_norm_fused(
        x: FloatTensor<Self>,
        groups: usize,
        eps: f32,
        gamma: Option<FloatTensor<Self>>,
        beta: Option<FloatTensor<Self>>,
        act: Activation,
    ) -> KResult<FloatTensor<Self>> {
        if !array::is_f32(&x) {
            return kernels::group_norm_generic::<Self>(x, groups, eps, gamma, beta, act);
        }
        let d = x.shape().to_vec();
        let (c, plane) = (d[1], d[2..].iter().product::<usize>());
        let (g, b) = (host_vec(gamma.as_ref()), host_vec(beta.as_ref()));
        let norm = cpu::group_norm::GroupNorm {
            c,
            plane,
            groups,
            eps,
            gamma: g.as_deref(),
            beta: b.as_deref(),
            act,
        };
        if !array::is_unique(&x)
            && let Some(xs) = array::view(&x).filter(|v| v.is_standard_layout())
        {
            let mut out = vec![0.0f32; xs.len()];
            norm.write_into(xs.as_slice().expect("row-major"), &mut out);
            return Ok(array::tensor(out, &d));
        }
        Ok(in_place(x, |a| norm.in_place(a)))
    }

    fn narrow(x: FloatTensor<Self>, axis: usize, start: usize, end: usize) -> FloatTensor<Self> {
        // A strided view of the same buffer (burn-ndarray's slice copies); kernels read
        // views, and in-place kernels copy them out first.
        if !array::is_f32(&x) {
            return kernels::narrow_generic::<Self>(x, axis, start, end);
        }
        array::narrowed(x, axis, start, end)
    }

    fn activation(x: FloatTensor<Self>, act: Activation) -> FloatTensor<Self> {
        if !array::is_f32(&x) {
            return act.apply::<Self>(x);
        }
        in_place(x, |a| cpu::act::apply_par(act, a))
    }

    fn upsample_nearest(x: FloatTensor<Self>, oh: usize, ow: usize) -> FloatTensor<Self> {
        let d = x.shape().to_vec();
        let whole = d[2] > 0 && d[3] > 0 && oh.is_multiple_of(d[2]) && ow.is_multiple_of(d[3]);
        let Some(xv) = array::view(&x).filter(|_| whole) else {
            let options = InterpolateOptions::new(InterpolateMode::Nearest);
            return Self::interpolate(x, [oh, ow], options);
        };
        let xs = xv.as_standard_layout();
        let data = xs.as_slice().expect("row-major");
        let (sy, sx) = (oh / d[2], ow / d[3]);
        let y = cpu::upsample::upsample_nearest(data, d[0] * d[1], d[2], d[3], sy, sx);
        array::tensor(y, &[d[0], d[1], oh, ow])
    }

    fn softmax_fused(x: FloatTensor<Self>, axis: usize) -> FloatTensor<Self> {
        let d = x.shape().to_vec();
        if !array::is_f32(&x) || axis + 1 != d.len() {
            return kernels::softmax_generic::<Self>(x, axis);
        }
        in_place(x, |a| cpu::softmax::softmax_rows_in_place(a, d[axis]))
    }

    fn layer_norm_fused(
        x: FloatTensor<Self>,
        axis: usize,
        eps: f32,
        gamma: Option<FloatTensor<Self>>,
        beta: Option<FloatTensor<Self>>,
    ) -> KResult<FloatTensor<Self>> {
        if !array::is_f32(&x) {
            return kernels::layer_norm_generic::<Self>(x, axis, eps, gamma, beta);
        }
        let d = x.shape().to_vec();
        let inner = d[axis + 1..].iter().product::<usize>();
        let (g, b) = (host_vec(gamma.as_ref()), host_vec(beta.as_ref()));
        Ok(in_place(x, |a| {
            cpu::layer_norm::layer_norm_in_place(a, d[axis], inner, eps, g.as_deref(), b.as_deref())
        }))
    }

    fn attention_fused(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f32,
        mask: Option<FloatTensor<Self>>,
    ) -> KResult<FloatTensor<Self>> {
        let mv = mask.as_ref().map(array::view);
        let mask_not_f32 = matches!(mv, Some(None));
        let views = (array::view(&q), array::view(&k), array::view(&v));
        let ((Some(qv), Some(kv), Some(vv)), false) = (views, mask_not_f32) else {
            return kernels::attention_generic::<Self>(q, k, v, scale, mask);
        };
        let (y, shape) = cpu::attention::attention(&qv, &kv, &vv, scale, mv.flatten().as_ref());
        Ok(array::tensor(y, &shape))
    }
}

/// Dimensions of a float primitive.
pub fn dims<B: Backend>(t: &FloatTensor<B>) -> Vec<usize> {
    t.shape().to_vec()
}
