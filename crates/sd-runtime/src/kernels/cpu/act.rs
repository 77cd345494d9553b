//! Activations applied in place over f32 slices (the epilogue of fused CPU kernels).

use super::simd::{self, multiversion};
use crate::kernels::Activation;
use rayon::prelude::*;

multiversion! {
    fn silu_slice(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = simd::silu(*v);
        }
    }
}

multiversion! {
    fn relu_slice(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = v.max(0.0);
        }
    }
}

multiversion! {
    fn gelu_exact_slice(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = 0.5 * *v * (1.0 + simd::erf(*v * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

multiversion! {
    fn gelu_tanh_slice(x: &mut [f32]) {
        let k = (2.0f32 / std::f32::consts::PI).sqrt();
        for v in x.iter_mut() {
            let u = *v;
            *v = 0.5 * u * (1.0 + simd::tanh(k * (u + 0.044_715 * u * u * u)));
        }
    }
}

multiversion! {
    fn gelu_sigmoid_slice(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v /= 1.0 + simd::exp(-1.702 * *v);
        }
    }
}

multiversion! {
    fn sigmoid_slice(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = 1.0 / (1.0 + simd::exp(-*v));
        }
    }
}

/// Applies `act` to every element of `x` (single-threaded; callers split the work).
pub fn apply(act: Activation, x: &mut [f32]) {
    match act {
        Activation::None => {}
        Activation::Silu => silu_slice(x),
        Activation::Relu => relu_slice(x),
        Activation::GeluExact => gelu_exact_slice(x),
        Activation::GeluTanh => gelu_tanh_slice(x),
        Activation::GeluSigmoid => gelu_sigmoid_slice(x),
        Activation::Sigmoid => sigmoid_slice(x),
    }
}

/// Applies `act` to every element of `x`, threaded over large slices.
pub fn apply_par(act: Activation, x: &mut [f32]) {
    const CHUNK: usize = 1 << 14;
    if act == Activation::None {
        return;
    }
    if x.len() >= 4 * CHUNK {
        x.par_chunks_mut(CHUNK).for_each(|c| apply(act, c));
    } else {
        apply(act, x);
    }
}
