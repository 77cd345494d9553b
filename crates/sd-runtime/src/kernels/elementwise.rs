//! Elementwise ops: binary arithmetic with numpy broadcasting, comparisons, logic, unary
//! math, cast, select, identity.

use super::util::{self, broadcast_pair, dims, from_mask, to_mask};
use super::{Ctx, KResult, KernelError, Registry, Val};
use crate::backend::RtBackend;
use burn_tensor::BoolDType;
use burn_tensor::ops::FloatTensor;
use sd_mil::DType;

pub(super) fn register<B: RtBackend>(r: &mut Registry<B>) {
    r.insert("add", |c| binary(c, |a, b| Ok(B::float_add(a, b))));
    r.insert("sub", |c| binary(c, |a, b| Ok(B::float_sub(a, b))));
    r.insert("mul", |c| binary(c, |a, b| Ok(B::float_mul(a, b))));
    r.insert("real_div", real_div);
    r.insert("floor_div", |c| {
        binary(c, |a, b| Ok(B::float_floor(B::float_div(a, b))))
    });
    r.insert("mod", |c| {
        binary(c, |a, b| {
            // Python/numpy modulo: the result takes the divisor's sign.
            let q = B::float_floor(B::float_div(a.clone(), b.clone()));
            Ok(B::float_sub(a, B::float_mul(q, b)))
        })
    });
    r.insert("pow", |c| binary(c, |a, b| Ok(B::float_powf(a, b))));
    r.insert("maximum", |c| binary(c, |a, b| Ok(pick::<B>(a, b, true))));
    r.insert("minimum", |c| binary(c, |a, b| Ok(pick::<B>(a, b, false))));
    r.insert("equal", |c| compare(c, |a, b, d| B::float_equal(a, b, d)));
    r.insert("not_equal", |c| {
        compare(c, |a, b, d| B::float_not_equal(a, b, d))
    });
    r.insert("greater", |c| {
        compare(c, |a, b, d| B::float_greater(a, b, d))
    });
    r.insert("greater_equal", |c| {
        compare(c, |a, b, d| B::float_greater_equal(a, b, d))
    });
    r.insert("less", |c| compare(c, |a, b, d| B::float_lower(a, b, d)));
    r.insert("less_equal", |c| {
        compare(c, |a, b, d| B::float_lower_equal(a, b, d))
    });
    r.insert("logical_and", |c| {
        binary(c, |a, b| Ok(B::float_mul(bool01::<B>(a), bool01::<B>(b))))
    });
    r.insert("logical_or", |c| {
        binary(c, |a, b| {
            let s = B::float_add(bool01::<B>(a), bool01::<B>(b));
            Ok(B::float_clamp_max(s, 1.0f32.into()))
        })
    });
    r.insert("logical_not", |c| {
        unary(c, |x| {
            B::float_add_scalar(B::float_neg(bool01::<B>(x)), 1.0f32.into())
        })
    });
    r.insert("sqrt", |c| unary(c, B::float_sqrt));
    r.insert("exp", |c| unary(c, B::float_exp));
    r.insert("log", |c| {
        let eps = c.float("epsilon")?;
        unary(c, move |x| B::float_log(B::float_add_scalar(x, eps.into())))
    });
    r.insert("cos", |c| unary(c, B::float_cos));
    r.insert("sin", |c| unary(c, B::float_sin));
    r.insert("tanh", |c| unary(c, B::float_tanh));
    r.insert("erf", |c| unary(c, B::float_erf));
    r.insert("floor", |c| unary(c, B::float_floor));
    r.insert("ceil", |c| unary(c, B::float_ceil));
    r.insert("round", |c| unary(c, B::float_round));
    r.insert("square", |c| unary(c, |x| B::float_mul(x.clone(), x)));
    r.insert("abs", |c| unary(c, B::float_abs));
    r.insert("sign", |c| unary(c, B::float_sign));
    r.insert("rsqrt", |c| {
        let eps = c.float("epsilon")?;
        unary(c, move |x| {
            B::float_recip(B::float_sqrt(B::float_add_scalar(x, eps.into())))
        })
    });
    r.insert("inverse", |c| {
        let eps = c.float("epsilon")?;
        unary(c, move |x| {
            B::float_recip(B::float_add_scalar(x, eps.into()))
        })
    });
    r.insert("clip", |c| {
        let (lo, hi) = (c.float("alpha")?, c.float("beta")?);
        unary(c, move |x| B::float_clamp(x, lo.into(), hi.into()))
    });
    r.insert("cast", cast);
    r.insert("select", select);
    r.insert("identity", |c| {
        let x = c.tensor("x")?;
        Ok(vec![c.val(x.t, 0)?])
    });
}

/// bool semantics of a float: 1 where non-zero.
fn bool01<B: RtBackend>(x: FloatTensor<B>) -> FloatTensor<B> {
    from_mask::<B>(to_mask::<B>(x))
}

fn pick<B: RtBackend>(a: FloatTensor<B>, b: FloatTensor<B>, max: bool) -> FloatTensor<B> {
    let dt: BoolDType =
        burn_tensor::backend::get_device_settings::<B>(&B::float_device(&a)).bool_dtype;
    // Where b beats a, take b.
    let m = if max {
        B::float_greater(b.clone(), a.clone(), dt)
    } else {
        B::float_lower(b.clone(), a.clone(), dt)
    };
    B::float_mask_where(a, m, b)
}

fn binary<B: RtBackend>(
    c: &mut Ctx<'_, B>,
    f: impl Fn(FloatTensor<B>, FloatTensor<B>) -> KResult<FloatTensor<B>>,
) -> KResult<Vec<Val<B>>> {
    let (x, y) = (c.tensor("x")?, c.tensor("y")?);
    let (a, b) = broadcast_pair::<B>(x.t, y.t)?;
    let out = f(a, b)?;
    Ok(vec![c.val(out, 0)?])
}

fn real_div<B: RtBackend>(c: &mut Ctx<'_, B>) -> KResult<Vec<Val<B>>> {
    let (x, y) = (c.tensor("x")?, c.tensor("y")?);
    let int = x.dtype == DType::I32;
    let (a, b) = broadcast_pair::<B>(x.t, y.t)?;
    let mut out = B::float_div(a, b);
    if int {
        // Integer real_div truncates toward zero.
        out = B::float_trunc(out);
    }
    Ok(vec![c.val(out, 0)?])
}

fn compare<B: RtBackend>(
    c: &mut Ctx<'_, B>,
    f: impl Fn(FloatTensor<B>, FloatTensor<B>, BoolDType) -> burn_tensor::ops::BoolTensor<B>,
) -> KResult<Vec<Val<B>>> {
    let dt: BoolDType = burn_tensor::backend::get_device_settings::<B>(c.device).bool_dtype;
    binary(c, |a, b| Ok(from_mask::<B>(f(a, b, dt))))
}

fn unary<B: RtBackend>(
    c: &mut Ctx<'_, B>,
    f: impl Fn(FloatTensor<B>) -> FloatTensor<B>,
) -> KResult<Vec<Val<B>>> {
    let x = c.tensor("x")?;
    Ok(vec![c.val(f(x.t), 0)?])
}

fn cast<B: RtBackend>(c: &mut Ctx<'_, B>) -> KResult<Vec<Val<B>>> {
    let x = c.tensor("x")?;
    let to = c.out(0)?.dtype;
    let t = match to {
        // fp16 rounding happens at the op output (see the executor).
        DType::F16 | DType::F32 | DType::F64 => x.t,
        DType::Bool => bool01::<B>(x.t),
        d if d.is_int() => {
            if x.dtype.is_float() {
                B::float_trunc(x.t)
            } else {
                x.t
            }
        }
        d => return Err(KernelError::param("dtype", format!("cannot cast to {d}"))),
    };
    Ok(vec![Val::new(t, to)])
}

fn select<B: RtBackend>(c: &mut Ctx<'_, B>) -> KResult<Vec<Val<B>>> {
    let (cond, a, b) = (c.tensor("cond")?, c.tensor("a")?, c.tensor("b")?);
    let shape = util::broadcast(&util::broadcast(&cond.shape(), &a.shape())?, &b.shape())?;
    let m = to_mask::<B>(util::expand::<B>(cond.t, &shape));
    let (a, b) = (
        util::expand::<B>(a.t, &shape),
        util::expand::<B>(b.t, &shape),
    );
    let _ = dims::<B>;
    Ok(vec![c.val(B::float_mask_where(b, m, a), 0)?])
}
