//! `torch.randn(shape, generator=torch.Generator().manual_seed(seed))` on the CPU, float32.

use super::NoiseSource;
use super::mt19937::Mt19937;

/// Which of ATen's CPU kernels to reproduce for tensors of 16 or more values.
///
/// Smaller tensors take the same double-precision path on every CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TorchKernel {
    /// The portable kernel (`std::log`, `std::cos`, `std::sin` in float32): what PyTorch runs on
    /// ARM (Apple silicon), on AVX-512 x86 CPUs, or with `ATEN_CPU_CAPABILITY=default`.
    #[default]
    Portable,
    /// The AVX2 kernel (avx_mathfun's Cephes `log256_ps` / `sincos256_ps`): what PyTorch runs on
    /// x86 CPUs whose best capability is AVX2.
    Avx2,
}

/// torch's CPU generator (`CPUGeneratorImpl`): MT19937 seeded with the low 32 bits of the seed.
///
/// * fewer than 16 values: double-precision Box–Muller from 53-bit uniforms, the second value of
///   each pair cached in the generator (across calls);
/// * 16 or more: 24-bit float uniforms, Box–Muller in blocks of 16 pairing `j` with `j + 8`;
///   when the count is not a multiple of 16 the last 16 values are redrawn from fresh uniforms.
#[derive(Clone, Debug)]
pub struct TorchRng {
    mt: Mt19937,
    cached: Option<f64>,
    kernel: TorchKernel,
}

impl TorchRng {
    /// `torch.Generator().manual_seed(seed)` with the portable kernel.
    pub fn new(seed: u64) -> Self {
        Self::with_kernel(seed, TorchKernel::Portable)
    }

    /// `torch.Generator().manual_seed(seed)` reproducing the given CPU kernel.
    pub fn with_kernel(seed: u64, kernel: TorchKernel) -> Self {
        Self {
            mt: Mt19937::new(seed as u32),
            cached: None,
            kernel,
        }
    }

    fn uniform_f32(&mut self) -> f32 {
        ((self.mt.next_u32() & 0x00ff_ffff) as f32) * (1.0 / 16_777_216.0)
    }

    fn uniform_f64(&mut self) -> f64 {
        let hi = self.mt.next_u32() as u64;
        let lo = self.mt.next_u32() as u64;
        (((hi << 32) | lo) & ((1u64 << 53) - 1)) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    /// One value of `at::normal_distribution<double>` (used below 16 values).
    fn normal_f64(&mut self) -> f64 {
        if let Some(v) = self.cached.take() {
            return v;
        }
        let u1 = self.uniform_f64();
        let u2 = self.uniform_f64();
        let r = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u1;
        self.cached = Some(r * theta.sin());
        r * theta.cos()
    }

    fn fill16(&self, d: &mut [f32]) {
        match self.kernel {
            TorchKernel::Portable => {
                for j in 0..8 {
                    let u1 = 1.0 - d[j];
                    let u2 = d[j + 8];
                    let radius = (-2.0 * u1.ln()).sqrt();
                    let theta = (2.0f64 * std::f64::consts::PI * u2 as f64) as f32;
                    d[j] = radius * theta.cos();
                    d[j + 8] = radius * theta.sin();
                }
            }
            TorchKernel::Avx2 => {
                let two_pi = (2.0f64 * std::f64::consts::PI) as f32;
                for j in 0..8 {
                    let u1 = 1.0 - d[j];
                    let u2 = d[j + 8];
                    let radius = (-2.0 * avx_mathfun::log(u1)).sqrt();
                    let (s, c) = avx_mathfun::sincos(two_pi * u2);
                    d[j] = radius * c;
                    d[j + 8] = radius * s;
                }
            }
        }
    }
}

impl NoiseSource for TorchRng {
    fn randn(&mut self, count: usize) -> Vec<f32> {
        if count < 16 {
            return (0..count).map(|_| self.normal_f64() as f32).collect();
        }
        let mut data: Vec<f32> = (0..count).map(|_| self.uniform_f32()).collect();
        let mut i = 0;
        while i + 16 <= count {
            let (head, _) = data[i..].split_at_mut(16);
            self.fill16(head);
            i += 16;
        }
        if !count.is_multiple_of(16) {
            let start = count - 16;
            for k in 0..16 {
                data[start + k] = self.uniform_f32();
            }
            let tail = &mut data[start..];
            self.fill16(tail);
        }
        data
    }
}

/// Scalar transcriptions of avx_mathfun.h (Cephes single-precision log and sincos), operation for
/// operation, as PyTorch's AVX2 `normal_fill_16` uses them — with each multiply feeding an add
/// fused into one FMA, as the compiler contracts them in PyTorch's AVX2 build.
#[allow(clippy::excessive_precision)]
mod avx_mathfun {
    // The constants are written as in avx_mathfun.h (double literals narrowed to float).
    const SQRTHF: f32 = std::f64::consts::FRAC_1_SQRT_2 as f32; // 0.707106781186547524
    const LOG_P: [f32; 9] = [
        7.0376836292E-2_f64 as f32,
        -1.1514610310E-1_f64 as f32,
        1.1676998740E-1_f64 as f32,
        -1.2420140846E-1_f64 as f32,
        1.4249322787E-1_f64 as f32,
        -1.6668057665E-1_f64 as f32,
        2.0000714765E-1_f64 as f32,
        -2.4999993993E-1_f64 as f32,
        3.3333331174E-1_f64 as f32,
    ];
    const LOG_Q1: f32 = -2.12194440e-4_f64 as f32;
    const LOG_Q2: f32 = 0.693359375_f64 as f32;

    pub(super) fn log(x: f32) -> f32 {
        let invalid = x <= 0.0;
        let x = x.max(f32::from_bits(0x0080_0000));
        let bits = x.to_bits();
        let imm0 = (bits >> 23) as i32 - 0x7f;
        let mut x = f32::from_bits((bits & !0x7f80_0000) | 0.5f32.to_bits());
        let mut e = imm0 as f32 + 1.0;
        let mask = x < SQRTHF;
        let tmp = if mask { x } else { 0.0 };
        x -= 1.0;
        e -= if mask { 1.0 } else { 0.0 };
        x += tmp;
        let z = x * x;
        let mut y = LOG_P[0];
        for &p in &LOG_P[1..] {
            y = y.mul_add(x, p);
        }
        y *= x;
        y *= z;
        y = e.mul_add(LOG_Q1, y);
        y = (-z).mul_add(0.5, y);
        x += y;
        x = e.mul_add(LOG_Q2, x);
        if invalid { f32::NAN } else { x }
    }

    const FOPI: f32 = 1.27323954473516_f64 as f32;
    const DP1: f32 = -0.78515625_f64 as f32;
    const DP2: f32 = -2.4187564849853515625e-4_f64 as f32;
    const DP3: f32 = -3.77489497744594108e-8_f64 as f32;
    const SINCOF: [f32; 3] = [
        -1.9515295891E-4_f64 as f32,
        8.3321608736E-3_f64 as f32,
        -1.6666654611E-1_f64 as f32,
    ];
    const COSCOF: [f32; 3] = [
        2.443315711809948E-005_f64 as f32,
        -1.388731625493765E-003_f64 as f32,
        4.166664568298827E-002_f64 as f32,
    ];

    /// Returns (sin x, cos x).
    pub(super) fn sincos(x: f32) -> (f32, f32) {
        let sign_sin = x.to_bits() & 0x8000_0000;
        let x = x.abs();
        let y = x * FOPI;
        let mut j = y as i32; // truncation, as cvttps
        j = (j + 1) & !1;
        let y = j as f32;
        let swap_sin = ((j & 4) as u32) << 29;
        let poly_mask = (j & 2) == 0;
        let x = y.mul_add(DP3, y.mul_add(DP2, y.mul_add(DP1, x)));
        let sign_cos = ((!(j - 2) & 4) as u32) << 29;
        let sign_sin = sign_sin ^ swap_sin;
        let z = x * x;
        let mut yc = COSCOF[0];
        yc = yc.mul_add(z, COSCOF[1]);
        yc = yc.mul_add(z, COSCOF[2]);
        yc *= z;
        yc *= z;
        yc = (-z).mul_add(0.5, yc);
        yc += 1.0;
        let mut ys = SINCOF[0];
        ys = ys.mul_add(z, SINCOF[1]);
        ys = ys.mul_add(z, SINCOF[2]);
        ys *= z;
        ys = ys.mul_add(x, x);
        let (sin_v, cos_v) = if poly_mask {
            (0.0 + ys, yc + 0.0)
        } else {
            (yc + 0.0, 0.0 + ys)
        };
        (
            f32::from_bits(sin_v.to_bits() ^ sign_sin),
            f32::from_bits(cos_v.to_bits() ^ sign_cos),
        )
    }
}
