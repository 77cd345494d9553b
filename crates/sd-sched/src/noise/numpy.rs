//! `numpy.random.RandomState(seed).randn`: MT19937, 53-bit doubles, legacy polar Gaussian.

use super::NoiseSource;
use super::mt19937::Mt19937;

/// numpy's legacy `RandomState`: normals by the polar (Marsaglia) method with the second value
/// of each pair cached across calls, exactly as `RandomState.randn` / `standard_normal` draw them.
#[derive(Clone, Debug)]
pub struct NumpyRng {
    mt: Mt19937,
    cached: Option<f64>,
}

impl NumpyRng {
    /// `np.random.RandomState(seed)`.
    pub fn new(seed: u32) -> Self {
        Self {
            mt: Mt19937::new(seed),
            cached: None,
        }
    }

    /// One uniform double in [0, 1) from two 32-bit draws (27 + 26 bits).
    pub fn next_f64(&mut self) -> f64 {
        let a = (self.mt.next_u32() >> 5) as f64;
        let b = (self.mt.next_u32() >> 6) as f64;
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }

    /// One standard normal value as numpy's `legacy_gauss` computes it.
    pub fn next_gauss(&mut self) -> f64 {
        if let Some(v) = self.cached.take() {
            return v;
        }
        loop {
            let x1 = 2.0 * self.next_f64() - 1.0;
            let x2 = 2.0 * self.next_f64() - 1.0;
            let r2 = x1 * x1 + x2 * x2;
            if r2 >= 1.0 || r2 == 0.0 {
                continue;
            }
            let f = (-2.0 * r2.ln() / r2).sqrt();
            self.cached = Some(f * x1);
            return f * x2;
        }
    }

    /// `randn(count)` in float64, as numpy returns it.
    pub fn randn_f64(&mut self, count: usize) -> Vec<f64> {
        (0..count).map(|_| self.next_gauss()).collect()
    }
}

impl NoiseSource for NumpyRng {
    fn randn(&mut self, count: usize) -> Vec<f32> {
        (0..count).map(|_| self.next_gauss() as f32).collect()
    }
}
