//! Beta schedules and the numpy / torch array arithmetic the schedulers' setup relies on,
//! reproduced operation for operation so that timesteps and sigmas come out identical.

use crate::config::{BetaSchedule, TimestepSpacing};

/// `torch.linspace(start, end, n, dtype=float32)` on the CPU: `start + step·i` for the first half,
/// `end − step·(n−1−i)` for the second, in float32.
pub fn torch_linspace_f32(start: f32, end: f32, n: usize) -> Vec<f32> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f32;
    let halfway = n / 2;
    (0..n)
        .map(|i| {
            if i < halfway {
                start + step * i as f32
            } else {
                end - step * (n - i - 1) as f32
            }
        })
        .collect()
}

/// The betas of `schedule` over `n` training steps, as diffusers builds them (float32).
pub fn betas(schedule: BetaSchedule, beta_start: f64, beta_end: f64, n: usize) -> Vec<f32> {
    match schedule {
        BetaSchedule::Linear => torch_linspace_f32(beta_start as f32, beta_end as f32, n),
        BetaSchedule::ScaledLinear => {
            torch_linspace_f32(beta_start.sqrt() as f32, beta_end.sqrt() as f32, n)
                .into_iter()
                .map(|b| b * b)
                .collect()
        }
        BetaSchedule::SquaredcosCapV2 => betas_for_alpha_bar(n, 0.999),
    }
}

/// `betas_for_alpha_bar` with the cosine alpha-bar, in float64 (real division, not integer).
pub fn betas_for_alpha_bar(n: usize, max_beta: f64) -> Vec<f32> {
    let alpha_bar = |t: f64| {
        ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0)
            .cos()
            .powi(2)
    };
    (0..n)
        .map(|i| {
            let t1 = i as f64 / n as f64;
            let t2 = (i + 1) as f64 / n as f64;
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(max_beta) as f32
        })
        .collect()
}

/// `torch.cumprod(1 - betas)`: float32 values, the running product kept in float64 as ATen's CPU
/// kernel does.
pub fn alphas_cumprod(betas: &[f32]) -> Vec<f32> {
    let mut acc = 1.0f64;
    betas
        .iter()
        .map(|&b| {
            acc *= (1.0f32 - b) as f64;
            acc as f32
        })
        .collect()
}

/// `np.linspace(start, stop, n)` (float64, endpoint included).
pub fn np_linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    if n == 0 {
        return Vec::new();
    }
    if n == 1 {
        return vec![start];
    }
    let step = (stop - start) / (n - 1) as f64;
    let mut y: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
    y[n - 1] = stop;
    y
}

/// `np.linspace(start, stop, n, endpoint=False)`.
pub fn np_linspace_open(start: f64, stop: f64, n: usize) -> Vec<f64> {
    let step = (stop - start) / n as f64;
    (0..n).map(|i| i as f64 * step + start).collect()
}

/// `np.arange(start, stop, step)` for a float step (numpy fills `start + i * (x1 - start)`).
pub fn np_arange(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let len = ((stop - start) / step).ceil();
    if len.is_nan() || len <= 0.0 {
        return Vec::new();
    }
    let len = len as usize;
    let delta = (start + step) - start;
    (0..len)
        .map(|i| match i {
            0 => start,
            1 => start + step,
            _ => start + i as f64 * delta,
        })
        .collect()
}

/// `np.interp(x, arange(len(fp)), fp)` in float64.
pub fn np_interp(x: f64, fp: &[f32]) -> f64 {
    let n = fp.len();
    let last = (n - 1) as f64;
    if x.is_nan() {
        return x;
    }
    if x <= 0.0 {
        return fp[0] as f64;
    }
    if x >= last {
        return fp[n - 1] as f64;
    }
    let j = x.floor() as usize;
    if j as f64 == x {
        return fp[j] as f64;
    }
    let slope = (fp[j + 1] as f64 - fp[j] as f64) / 1.0;
    slope * (x - j as f64) + fp[j] as f64
}

/// `((1 - alphas_cumprod) / alphas_cumprod) ** 0.5` in float32 (ascending in t).
pub fn train_sigmas(alphas_cumprod: &[f32]) -> Vec<f32> {
    alphas_cumprod
        .iter()
        .map(|&a| ((1.0 - a) / a).sqrt())
        .collect()
}

/// `np.log(sigmas)` of float32 sigmas (float32 result).
pub fn log_sigmas(sigmas: &[f32]) -> Vec<f32> {
    sigmas.iter().map(|&s| (s as f64).ln() as f32).collect()
}

/// diffusers' `_sigma_to_t`: the fractional training timestep whose log-sigma is `sigma`'s.
pub fn sigma_to_t(sigma: f64, log_sigmas: &[f32]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    let n = log_sigmas.len();
    // Index of the last log-sigma <= log_sigma (0 when none), clipped to n - 2.
    let mut low = 0usize;
    for (i, &ls) in log_sigmas.iter().enumerate() {
        if log_sigma - ls as f64 >= 0.0 {
            low = i;
        }
    }
    let low = low.min(n - 2);
    let high = low + 1;
    let lo = log_sigmas[low] as f64;
    let hi = log_sigmas[high] as f64;
    let w = ((lo - log_sigma) / (lo - hi)).clamp(0.0, 1.0);
    (1.0 - w) * low as f64 + w * high as f64
}

/// Karras et al. (2022) sigmas, rho = 7, from `sigma_max` down to `sigma_min` (float64).
pub fn karras_sigmas(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    let rho = 7.0f64;
    let min_inv_rho = sigma_min.powf(1.0 / rho);
    let max_inv_rho = sigma_max.powf(1.0 / rho);
    np_linspace(0.0, 1.0, n)
        .into_iter()
        .map(|r| (max_inv_rho + r * (min_inv_rho - max_inv_rho)).powf(rho))
        .collect()
}

/// Descending inference timesteps (float64, before any cast) as the sigma-based schedulers
/// (Euler, Euler ancestral, LMS) compute them.
pub fn sigma_scheduler_timesteps(
    spacing: TimestepSpacing,
    n: usize,
    num_train: usize,
    steps_offset: i64,
) -> Vec<f32> {
    match spacing {
        TimestepSpacing::Linspace => np_linspace(0.0, (num_train - 1) as f64, n)
            .into_iter()
            .rev()
            .map(|v| v as f32)
            .collect(),
        TimestepSpacing::Leading => {
            let ratio = num_train / n;
            (0..n)
                .rev()
                .map(|i| (i * ratio) as f32 + steps_offset as f32)
                .collect()
        }
        TimestepSpacing::Trailing => {
            let ratio = num_train as f64 / n as f64;
            np_arange(num_train as f64, 0.0, -ratio)
                .into_iter()
                .map(|v| v.round_ties_even() as f32 - 1.0)
                .collect()
        }
    }
}

/// Index of `t` in `timesteps` as diffusers' `index_for_timestep`: the second match when there
/// are several (so image-to-image starting mid-schedule does not skip a sigma), else the first.
pub fn index_for_timestep(timesteps: &[f32], t: f32) -> Option<usize> {
    let mut it = timesteps
        .iter()
        .enumerate()
        .filter(|(_, v)| **v == t)
        .map(|(i, _)| i);
    let first = it.next()?;
    Some(it.next().unwrap_or(first))
}

/// Refuses `n` steps when `timesteps(n)` holds a timestep outside `0..num_train` (where
/// diffusers indexes past `alphas_cumprod`, or clamps a sigma so that a step does not move),
/// naming the largest step count that stays in range.
pub fn check_timestep_range<T: Copy + Into<f64>>(
    n: usize,
    num_train: usize,
    timesteps: impl Fn(usize) -> Vec<T>,
) -> crate::Result<()> {
    let outside = |m: usize| {
        timesteps(m)
            .into_iter()
            .map(Into::into)
            .find(|&t: &f64| t < 0.0 || t >= num_train as f64)
    };
    match outside(n) {
        None => Ok(()),
        Some(t) => Err(crate::SchedError::TimestepOutOfRange {
            steps: n,
            timestep: t as i64,
            num_train,
            max_ok: (1..n).rev().find(|&m| outside(m).is_none()).unwrap_or(0),
        }),
    }
}

/// [`int_timesteps_desc`] after [`check_timestep_range`].
pub fn checked_int_timesteps_desc(
    spacing: TimestepSpacing,
    n: usize,
    num_train: usize,
    steps_offset: i64,
) -> crate::Result<Vec<i64>> {
    let make = |m| {
        int_timesteps_desc(spacing, m, num_train, steps_offset)
            .into_iter()
            .map(|t| t as f64)
            .collect::<Vec<f64>>()
    };
    check_timestep_range(n, num_train, make)?;
    Ok(int_timesteps_desc(spacing, n, num_train, steps_offset))
}

/// Descending integer inference timesteps as DDIM and PNDM compute them.
pub fn int_timesteps_desc(
    spacing: TimestepSpacing,
    n: usize,
    num_train: usize,
    steps_offset: i64,
) -> Vec<i64> {
    match spacing {
        TimestepSpacing::Linspace => np_linspace(0.0, (num_train - 1) as f64, n)
            .into_iter()
            .rev()
            .map(|v| v.round_ties_even() as i64)
            .collect(),
        TimestepSpacing::Leading => {
            let ratio = num_train / n;
            (0..n)
                .rev()
                .map(|i| (i * ratio) as i64 + steps_offset)
                .collect()
        }
        TimestepSpacing::Trailing => {
            let ratio = num_train as f64 / n as f64;
            np_arange(num_train as f64, 0.0, -ratio)
                .into_iter()
                .map(|v| v.round_ties_even() as i64 - 1)
                .collect()
        }
    }
}

/// `sqrt(alpha_prod) * original + sqrt(1 - alpha_prod) * noise` (float32), the forward process of
/// the alpha-based schedulers.
pub fn add_noise_alpha(alpha_prod: f32, original: &[f32], noise: &[f32]) -> Vec<f32> {
    let sa = alpha_prod.sqrt();
    let sb = (1.0 - alpha_prod).sqrt();
    original
        .iter()
        .zip(noise)
        .map(|(&x, &n)| sa * x + sb * n)
        .collect()
}
