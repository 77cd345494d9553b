//! GEMM throughput of linear-layer shapes with the weight stored either way: as [n, k]
//! (read transposed) or as [k, n] row-major. Behind the choice in the CPU backend's
//! `linear_weight_layout`.
//!
//! `cargo run --release -p sd-runtime --example gemm_probe`

use sd_runtime::kernels::cpu::gemm::{MatMut, MatRef, parallelism, sgemm};
use std::time::Instant;

/// (rows m, inputs k, outputs n): CLIP-L and OpenCLIP-H text encoders at 77 tokens, a
/// UNet feed-forward at 8192 tokens.
const SHAPES: [(usize, usize, usize); 8] = [
    (77, 3072, 768),
    (77, 768, 3072),
    (77, 1024, 4096),
    (77, 4096, 1024),
    (77, 768, 768),
    (154, 768, 3072),
    (8192, 320, 1280),
    (8192, 1280, 320),
];

fn main() {
    for (m, k, n) in SHAPES {
        let a = vec![0.5f32; m * k];
        let w = vec![0.25f32; n * k];
        let mut c = vec![0.0f32; m * n];
        let layouts = [
            ("w [n, k] read transposed", k as isize, 1),
            ("w [k, n] row-major", 1, n as isize),
        ];
        for (label, w_cs, w_rs) in layouts {
            let lhs = MatRef {
                ptr: a.as_ptr(),
                rs: k as isize,
                cs: 1,
            };
            let rhs = MatRef {
                ptr: w.as_ptr(),
                rs: w_rs,
                cs: w_cs,
            };
            let dst = MatMut {
                ptr: c.as_mut_ptr(),
                rs: n as isize,
                cs: 1,
            };
            let mut best = f64::MAX;
            for _ in 0..20 {
                let t = Instant::now();
                // SAFETY: a is m×k, w holds k·n elements for either layout, c is m×n.
                unsafe { sgemm(m, n, k, dst, false, lhs, rhs, parallelism(m, n, k)) };
                best = best.min(t.elapsed().as_secs_f64());
            }
            println!(
                "{m}×{k} · {k}×{n}, {label}: {:.3} ms, {:.0} GFLOP/s",
                best * 1e3,
                2.0 * (m * n * k) as f64 / best / 1e9
            );
        }
    }
}
