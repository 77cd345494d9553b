//! Activations and softmax.

use super::util::axis;
use super::{Ctx, KResult, KernelError, Registry, Val};
use crate::backend::RtBackend;
use burn_tensor::ops::FloatTensor;

pub(super) fn register<B: RtBackend>(r: &mut Registry<B>) {
    r.insert("silu", |c| act(c, |x| B::activation(x, Activation::Silu)));
    r.insert("sigmoid", |c| {
        act(c, |x| B::activation(x, Activation::Sigmoid))
    });
    r.insert("relu", |c| act(c, |x| B::activation(x, Activation::Relu)));
    r.insert("gelu", gelu);
    r.insert("softmax", |c| {
        let x = c.tensor("x")?;
        let a = axis(c.int("axis")?, x.rank())?;
        Ok(vec![c.val(B::softmax_fused(x.t, a), 0)?])
    });
}

/// An activation that a fused op applies to its result (see `passes::activation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// None: the identity.
    #[default]
    None,
    /// x·σ(x).
    Silu,
    /// max(x, 0).
    Relu,
    /// GELU with erf.
    GeluExact,
    /// GELU, tanh approximation.
    GeluTanh,
    /// GELU, x·σ(1.702·x).
    GeluSigmoid,
    /// σ(x) = 1 / (1 + e⁻ˣ).
    Sigmoid,
}

impl Activation {
    /// The activation an op computes: `silu`, `relu`, or `gelu` with its mode.
    pub fn of_op(op_type: &str, gelu_mode: Option<&str>) -> Option<Self> {
        Some(match (op_type, gelu_mode.unwrap_or("EXACT")) {
            ("silu", _) => Activation::Silu,
            ("relu", _) => Activation::Relu,
            ("gelu", "EXACT") => Activation::GeluExact,
            ("gelu", "TANH_APPROXIMATION") => Activation::GeluTanh,
            ("gelu", "SIGMOID_APPROXIMATION") => Activation::GeluSigmoid,
            _ => return None,
        })
    }

    /// The name fused ops carry in their `activation` parameter.
    pub fn name(self) -> &'static str {
        match self {
            Activation::None => "none",
            Activation::Silu => "silu",
            Activation::Relu => "relu",
            Activation::GeluExact => "gelu_exact",
            Activation::GeluTanh => "gelu_tanh",
            Activation::GeluSigmoid => "gelu_sigmoid",
            Activation::Sigmoid => "sigmoid",
        }
    }

    /// The activation of a [`Self::name`].
    pub fn parse(name: &str) -> Option<Self> {
        [
            Activation::None,
            Activation::Silu,
            Activation::Relu,
            Activation::GeluExact,
            Activation::GeluTanh,
            Activation::GeluSigmoid,
            Activation::Sigmoid,
        ]
        .into_iter()
        .find(|a| a.name() == name)
    }

    /// Applies the activation with burn ops (any backend).
    pub fn apply<B: RtBackend>(self, x: FloatTensor<B>) -> FloatTensor<B> {
        match self {
            Activation::None => x,
            Activation::Silu => silu::<B>(x),
            Activation::Relu => B::float_clamp_min(x, 0.0f32.into()),
            Activation::GeluExact => gelu_mode::<B>(x, "EXACT").expect("known mode"),
            Activation::GeluTanh => gelu_mode::<B>(x, "TANH_APPROXIMATION").expect("known mode"),
            Activation::GeluSigmoid => {
                gelu_mode::<B>(x, "SIGMOID_APPROXIMATION").expect("known mode")
            }
            Activation::Sigmoid => B::sigmoid(x),
        }
    }
}

/// The `activation` parameter of a fused op (absent: none).
pub fn activation_param<B: RtBackend>(c: &mut Ctx<'_, B>) -> KResult<Activation> {
    if !c.has("activation") {
        return Ok(Activation::None);
    }
    let name = c.string("activation")?;
    Activation::parse(&name)
        .ok_or_else(|| KernelError::param("activation", format!("unknown activation `{name}`")))
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
    let act = Activation::of_op("gelu", Some(&mode))
        .ok_or_else(|| KernelError::param("mode", format!("unknown gelu mode `{mode}`")))?;
    let x = c.tensor("x")?;
    Ok(vec![c.val(B::activation(x.t, act), 0)?])
}
