//! Vector loops over f32 slices: plain Rust written so that LLVM vectorizes it, compiled
//! three times — for AVX-512F, for AVX2+FMA (the widest the CPU has is taken, detected at
//! run time) and for the baseline target. `exp` is a branch-free Cephes-style polynomial (about 2 ulp), so that
//! softmax and SiLU vectorize instead of calling libm per element.

/// Defines `fn $name(args)` whose body runs in an AVX-512F or AVX2+FMA copy when the CPU
/// supports one.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])* $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn fast($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features `wide` was compiled for (AVX-512F
                    // implies AVX2 and FMA).
                    return unsafe { wide($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has the features `fast` was compiled for.
                    return unsafe { fast($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use multiversion;

/// e^x, branch-free (inlines into vector loops). Below −87.3 the result is 0; above 88.37 it
/// saturates at e^88.37 ≈ 2.4e38.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    exp_with::<false>(x)
}

/// [`exp`] with its multiply-adds fused, for code compiled with FMA enabled (there each is
/// one instruction; without FMA `mul_add` is a library call): shorter dependency chains and
/// a result as close or closer.
#[inline(always)]
pub fn exp_fused(x: f32) -> f32 {
    exp_with::<true>(x)
}

/// a·b + c, fused into one rounding when `FUSED`.
#[inline(always)]
fn madd<const FUSED: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FUSED { a.mul_add(b, c) } else { a * b + c }
}

/// The Cephes-style e^x of [`exp`] and [`exp_fused`].
#[inline(always)]
fn exp_with<const FUSED: bool>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    let c = x.clamp(-87.3, 88.37);
    let n = madd::<FUSED>(c, LOG2E, 0.5).floor();
    let r = madd::<FUSED>(-n, -2.121_944_4e-4, madd::<FUSED>(-n, 0.693_359_4, c));
    let mut p = 1.987_569_1e-4_f32;
    p = madd::<FUSED>(p, r, 1.398_199_9e-3);
    p = madd::<FUSED>(p, r, 8.333_452e-3);
    p = madd::<FUSED>(p, r, 4.166_579_6e-2);
    p = madd::<FUSED>(p, r, 0.166_666_65);
    p = madd::<FUSED>(p, r, 0.5);
    let y = madd::<FUSED>(p * r, r, r) + 1.0;
    // 2^n from n's bits: adding 2^23 puts the integer n + 127 (1..=255 here) in the low
    // mantissa bits. (`n as i32` is a saturating cast that keeps the loop scalar.)
    let biased = (n + (127.0 + 8_388_608.0)).to_bits() & 0x7f_ffff;
    let scale = f32::from_bits(biased << 23);
    if x < -87.3 { 0.0 } else { y * scale }
}

/// Lanes of the reductions below: independent accumulators, so that LLVM vectorizes them
/// (a single f32 accumulator is a serial chain it may not reorder).
const LANES: usize = 16;

/// The largest element (−inf for an empty slice); inlines into multiversioned callers.
#[inline(always)]
pub fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut it = x.chunks_exact(LANES);
    for c in &mut it {
        for i in 0..LANES {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    let mut m = it
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &v| a.max(v));
    for a in acc {
        m = m.max(a);
    }
    m
}

/// The sum of the elements, in lanes.
#[inline(always)]
pub fn sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut it = x.chunks_exact(LANES);
    for c in &mut it {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    it.remainder().iter().sum::<f32>() + acc.iter().sum::<f32>()
}

/// x ← e^(x·scale − shift) element-wise; returns the sum of the new elements.
#[inline(always)]
pub fn exp_scaled_sum(x: &mut [f32], scale: f32, shift: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut it = x.chunks_exact_mut(LANES);
    for c in &mut it {
        for i in 0..LANES {
            c[i] = exp(c[i] * scale - shift);
            acc[i] += c[i];
        }
    }
    let mut s = 0.0;
    for v in it.into_remainder() {
        *v = exp(*v * scale - shift);
        s += *v;
    }
    s + acc.iter().sum::<f32>()
}

/// erf(x), Abramowitz–Stegun 7.1.26 (absolute error below 1.5e-7).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

/// x·σ(x).
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// tanh(x) through exp (saturates to ±1).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let e = exp(-2.0 * x.abs());
    ((1.0 - e) / (1.0 + e)).copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_erf_tanh_match_libm() {
        let mut x = -100.0f32;
        while x < 88.3 {
            let (got, want) = (exp(x), x.exp());
            assert!(
                (got - want).abs() <= 4.0 * f32::EPSILON * want + f32::MIN_POSITIVE,
                "exp({x}) = {got}, libm {want}"
            );
            x += 0.173;
        }
        for i in -600..600 {
            let x = i as f32 * 0.01;
            let e = libm_erf(x as f64) as f32;
            assert!((erf(x) - e).abs() < 3e-7, "erf({x}) = {} vs {e}", erf(x));
            assert!((tanh(x) - x.tanh()).abs() < 3e-7, "tanh({x})");
            assert!((silu(x) - x / (1.0 + (-x).exp())).abs() < 1e-6 * (1.0 + x.abs()));
        }
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(1000.0).is_finite() && exp(1000.0) > 2e38);
    }

    /// erf by its Taylor series (|x| ≤ 3) or continued fraction, in f64.
    fn libm_erf(x: f64) -> f64 {
        if x.abs() > 3.0 {
            // erfc asymptotic: tiny beyond 3.
            let a = x.abs();
            let erfc = (-a * a).exp() / (a * std::f64::consts::PI.sqrt())
                * (1.0 - 1.0 / (2.0 * a * a) + 3.0 / (4.0 * a.powi(4)));
            return (1.0 - erfc).copysign(x);
        }
        let mut sum = 0.0;
        let mut term = x;
        let mut n = 0.0;
        while term.abs() > 1e-17 {
            sum += term / (2.0 * n + 1.0);
            n += 1.0;
            term *= -x * x / n;
        }
        2.0 / std::f64::consts::PI.sqrt() * sum
    }
}
