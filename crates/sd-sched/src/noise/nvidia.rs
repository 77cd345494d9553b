//! `torch.randn(..., generator=torch.Generator(device="cuda").manual_seed(seed), device="cuda")`.

use super::NoiseSource;

const PHILOX_M0: u32 = 0xD251_1F53;
const PHILOX_M1: u32 = 0xCD9E_8D57;
const PHILOX_W0: u32 = 0x9E37_79B9;
const PHILOX_W1: u32 = 0xBB67_AE85;

/// Philox4x32-10 of `counter` under `key` (curand's `curand4` block function).
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(PHILOX_W0);
            k[1] = k[1].wrapping_add(PHILOX_W1);
        }
        let p0 = (PHILOX_M0 as u64) * (c[0] as u64);
        let p1 = (PHILOX_M1 as u64) * (c[2] as u64);
        c = [
            ((p1 >> 32) as u32) ^ c[1] ^ k[0],
            p1 as u32,
            ((p0 >> 32) as u32) ^ c[3] ^ k[1],
            p0 as u32,
        ];
    }
    c
}

/// curand's `_curand_box_muller` for one pair: (s·sin v, s·cos v).
fn box_muller(x: u32, y: u32) -> (f32, f32) {
    const INV: f32 = 2.328_306_4e-10; // CURAND_2POW32_INV
    const INV_2PI: f32 = 2.328_306_4e-10 * 6.283_185_5; // CURAND_2POW32_INV_2PI
    let u = (x as f32).mul_add(INV, INV / 2.0);
    let v = (y as f32).mul_add(INV_2PI, INV_2PI / 2.0);
    let s = (-2.0 * (u as f64).ln()).sqrt();
    let v = v as f64;
    ((s * v.sin()) as f32, (s * v.cos()) as f32)
}

/// The CUDA generator: Philox4x32-10 with key `[seed lo, seed hi]`; value `i` of a draw comes from
/// counter `[offset / 4, 0, i, 0]` (the sine branch of Box–Muller on the first two words), and the
/// offset advances by 4 per draw. For tensors larger than the kernel's grid (SMs × threads per
/// SM), a thread's later values use the remaining normals of its Philox blocks, as torch's
/// `distribution_nullary_kernel` does; [`NvidiaRng::with_grid`] sets the GPU's size.
///
/// The GPU computes the transcendental functions with its own approximations (`__sincosf`,
/// `logf`): this CPU version is equal to it to about 1e-6 (absolute), not bit for bit.
#[derive(Clone, Debug)]
pub struct NvidiaRng {
    seed: u64,
    offset: u64,
    max_threads: usize,
}

impl NvidiaRng {
    /// `torch.Generator(device="cuda").manual_seed(seed)` on an H100 (132 SMs × 2048 threads).
    pub fn new(seed: u64) -> Self {
        Self::with_grid(seed, 132, 2048)
    }

    /// The same for a GPU with `multi_processor_count` SMs of `max_threads_per_sm` threads.
    pub fn with_grid(seed: u64, multi_processor_count: usize, max_threads_per_sm: usize) -> Self {
        Self {
            seed,
            offset: 0,
            max_threads: multi_processor_count * (max_threads_per_sm / 256) * 256,
        }
    }

    /// The Philox offset the next draw starts from (torch's `philox_offset_per_thread`).
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

impl NoiseSource for NvidiaRng {
    fn randn(&mut self, count: usize) -> Vec<f32> {
        let mut out = vec![0f32; count];
        if count == 0 {
            return out;
        }
        let blocks = count.div_ceil(256);
        let stride = (blocks * 256).min(self.max_threads);
        let per_thread = (count - 1) / (stride * 4) + 1;
        let key = [self.seed as u32, (self.seed >> 32) as u32];
        let base = self.offset / 4;
        for idx in 0..stride.min(count) {
            let mut linear = idx;
            for k in 0..per_thread as u64 {
                let ctr = base + k;
                let r = philox4x32_10([ctr as u32, (ctr >> 32) as u32, idx as u32, 0], key);
                let (a, b) = box_muller(r[0], r[1]);
                let (c, d) = box_muller(r[2], r[3]);
                for (ii, v) in [a, b, c, d].into_iter().enumerate() {
                    let li = linear + stride * ii;
                    if li < count {
                        out[li] = v;
                    }
                }
                linear += stride * 4;
            }
        }
        self.offset += per_thread as u64 * 4;
        out
    }
}
