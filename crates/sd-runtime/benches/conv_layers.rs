//! The 3×3 convolutions of the SD1.5 UNet (batch 2, 64×64 latent) and VAE decoder (512²
//! image) one by one, by Winograd F(4×4, 3×3) and by im2col + GEMM, on random data:
//! `cargo bench -p sd-runtime --bench conv_layers`. Decides where [`winograd::MIN_TILES`]
//! lies; the whole models' numbers are `--bench full_models`'s.
//!
//! [`winograd::MIN_TILES`]: sd_runtime::kernels::cpu::winograd::MIN_TILES

use criterion::{Criterion, criterion_group, criterion_main};
use ndarray::{Array, IxDyn};
use sd_runtime::kernels::cpu::conv::{ConvMethod, conv2d};
use sd_runtime::kernels::{Activation, Conv2dGeometry};
use std::time::Duration;

/// (name, x [N, C, H, W], output channels).
const LAYERS: &[(&str, [usize; 4], usize)] = &[
    ("unet 64² 320→320", [2, 320, 64, 64], 320),
    ("unet 32² 640→640", [2, 640, 32, 32], 640),
    ("unet 16² 1280→1280", [2, 1280, 16, 16], 1280),
    ("unet 8² 1280→1280", [2, 1280, 8, 8], 1280),
    ("vae 64² 512→512", [1, 512, 64, 64], 512),
    ("vae 256² 256→256", [1, 256, 256, 256], 256),
    ("vae 512² 128→128", [1, 128, 512, 512], 128),
];

fn random(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s as f32 / u32::MAX as f32 - 0.5
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("conv3x3");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    let geometry = Conv2dGeometry {
        strides: [1, 1],
        pads: [(1, 1), (1, 1)],
        dilations: [1, 1],
        groups: 1,
    };
    for &(name, xs, cout) in LAYERS {
        let x = Array::from_shape_vec(IxDyn(&xs), random(xs.iter().product(), 1)).unwrap();
        let ws = [cout, xs[1], 3, 3];
        let w = Array::from_shape_vec(IxDyn(&ws), random(ws.iter().product(), 2)).unwrap();
        let bias = random(cout, 3);
        for (method, label) in [(ConvMethod::Auto, "auto"), (ConvMethod::Im2col, "im2col")] {
            g.bench_function(format!("{name} {label}"), |b| {
                b.iter(|| {
                    conv2d(
                        &x.view(),
                        &w.view(),
                        Some(&bias),
                        geometry,
                        Activation::None,
                        method,
                    )
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
