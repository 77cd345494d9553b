//! Activations and softmax.

use super::util::{axis, dims};
use super::{Ctx, KResult, KernelError, Registry, Val};
use crate::backend::RtBackend;
use burn_tensor::ops::FloatTensor;

pub(super) fn register<B: RtBackend>(r: &mut Registry<B>) {
    r.insert("silu", |c| act(c, silu::<B>));
    r.insert("sigmoid", |c| act(c, B::sigmoid));
    r.insert("relu", |c| act(c, |x| B::float_clamp_min(x, 0.0f32.into())));
    r.insert("gelu", gelu);
    r.insert("softmax", |c| {
        let x = c.tensor("x")?;
        let a = axis(c.int("axis")?, x.rank())?;
        Ok(vec![c.val(softmax::<B>(x.t, a), 0)?])
    });
}

fn act<B: RtBackend>(
    c: &mut Ctx<'_, B>,
    f: impl Fn(FloatTensor<B>) -> FloatTensor<B>,
) -> KResult<Vec<Val<B>>> {
    let x = c.tensor("x")?;
    Ok(vec![c.val(f(x.t), 0)?])
}

/// x·σ(x).
pub fn silu<B: RtBackend>(x: FloatTensor<B>) -> FloatTensor<B> {
    B::float_mul(x.clone(), B::sigmoid(x))
}

/// Numerically stable softmax along `axis`.
pub fn softmax<B: RtBackend>(x: FloatTensor<B>, axis: usize) -> FloatTensor<B> {
    let m = B::float_max_dim(x.clone(), axis);
    let e = B::float_exp(B::float_sub(x, m));
    let s = B::float_sum_dim(e.clone(), axis);
    B::float_div(e, s)
}

/// GELU in Core ML's three modes.
pub fn gelu_mode<B: RtBackend>(x: FloatTensor<B>, mode: &str) -> KResult<FloatTensor<B>> {
    Ok(match mode {
        "EXACT" => {
            let e = B::float_erf(B::float_mul_scalar(
                x.clone(),
                std::f32::consts::FRAC_1_SQRT_2.into(),
            ));
            B::float_mul(
                B::float_mul_scalar(x, 0.5f32.into()),
                B::float_add_scalar(e, 1.0f32.into()),
            )
        }
        "TANH_APPROXIMATION" => {
            let k = (2.0f32 / std::f32::consts::PI).sqrt();
            let x3 = B::float_mul(B::float_mul(x.clone(), x.clone()), x.clone());
            let inner = B::float_mul_scalar(
                B::float_add(x.clone(), B::float_mul_scalar(x3, 0.044715f32.into())),
                k.into(),
            );
            B::float_mul(
                B::float_mul_scalar(x, 0.5f32.into()),
                B::float_add_scalar(B::float_tanh(inner), 1.0f32.into()),
            )
        }
        "SIGMOID_APPROXIMATION" => B::float_mul(
            x.clone(),
            B::sigmoid(B::float_mul_scalar(x, 1.702f32.into())),
        ),
        m => {
            return Err(KernelError::param(
                "mode",
                format!("unknown gelu mode `{m}`"),
            ));
        }
    })
}

fn gelu<B: RtBackend>(c: &mut Ctx<'_, B>) -> KResult<Vec<Val<B>>> {
    let mode = c.string("mode")?;
    let x = c.tensor("x")?;
    let _ = dims::<B>;
    Ok(vec![c.val(gelu_mode::<B>(x.t, &mode)?, 0)?])
}
