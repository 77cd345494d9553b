//! numpy / torch / nvidia noise against the fixtures written by the reference generators.

mod common;
use common::*;
use sd_sched::noise::{NoiseSource, NumpyRng, NvidiaRng, TorchKernel, TorchRng};

/// Checks every case of a fixture; returns (calls checked, max abs diff).
fn check(
    cases: &serde_json::Value,
    mut make: impl FnMut(u64) -> Box<dyn NoiseSource>,
    tol: f32,
) -> (usize, f32) {
    let mut n = 0;
    let mut max_diff = 0f32;
    for case in cases.as_array().unwrap() {
        let seed = case["seed"].as_u64().unwrap();
        let mut rng = make(seed);
        for call in case["calls"].as_array().unwrap() {
            let count = call["count"].as_u64().unwrap() as usize;
            let got = rng.randn(count);
            let cmp = |exp: &[f32], got: &[f32], what: &str, max_diff: &mut f32| {
                for (i, (e, g)) in exp.iter().zip(got).enumerate() {
                    let d = (e - g).abs();
                    *max_diff = max_diff.max(d);
                    if tol == 0.0 {
                        assert_eq!(
                            e.to_bits(),
                            g.to_bits(),
                            "seed {seed} count {count} {what}[{i}]: {e} vs {g}"
                        );
                    } else {
                        assert!(
                            d <= tol,
                            "seed {seed} count {count} {what}[{i}]: {e} vs {g}"
                        );
                    }
                }
            };
            if let Some(h) = call["f32"].as_str() {
                cmp(&hex_f32(h), &got, "value", &mut max_diff);
            } else {
                cmp(
                    &hex_f32(call["head_f32"].as_str().unwrap()),
                    &got[..16],
                    "head",
                    &mut max_diff,
                );
                cmp(
                    &hex_f32(call["tail_f32"].as_str().unwrap()),
                    &got[count - 16..],
                    "tail",
                    &mut max_diff,
                );
                if tol == 0.0 {
                    assert_eq!(
                        call["fnv1a64_f32"].as_str().unwrap(),
                        fnv1a64_f32(&got),
                        "seed {seed} count {count} hash"
                    );
                }
            }
            n += 1;
        }
    }
    (n, max_diff)
}

#[test]
fn numpy_bit_identical() {
    let fx = json("noise/numpy.json");
    let (n, _) = check(&fx["cases"], |s| Box::new(NumpyRng::new(s as u32)), 0.0);
    assert!(n > 40);
    // float64 values too
    for case in fx["cases"].as_array().unwrap() {
        let mut rng = NumpyRng::new(case["seed"].as_u64().unwrap() as u32);
        for call in case["calls"].as_array().unwrap() {
            let count = call["count"].as_u64().unwrap() as usize;
            let got = rng.randn_f64(count);
            if let Some(h) = call["f64"].as_str() {
                let exp = hex_f64(h);
                for (e, g) in exp.iter().zip(&got) {
                    assert_eq!(e.to_bits(), g.to_bits());
                }
            }
        }
    }
}

#[test]
fn torch_portable_bit_identical() {
    let fx = json("noise/torch.json");
    let (n, _) = check(
        &fx["variants"]["default"],
        |s| Box::new(TorchRng::new(s)),
        0.0,
    );
    assert!(n > 40);
}

#[test]
fn torch_avx2_within_one_ulp() {
    let fx = json("noise/torch.json");
    let Some(cases) = fx["variants"].get("avx2") else {
        eprintln!("no avx2 variant in the fixture");
        return;
    };
    // Not yet bit for bit: about one value in a few hundred differs by 1 ulp (the exact FMA
    // contraction of PyTorch's AVX2 build is not reproduced).
    let (n, max_diff) = check(
        cases,
        |s| Box::new(TorchRng::with_kernel(s, TorchKernel::Avx2)),
        1e-6,
    );
    eprintln!("torch avx2: {n} calls, max abs diff {max_diff:e}");
    assert!(n > 40);
}

#[test]
fn nvidia_matches_gpu() {
    let fx = json("noise/nvidia.json");
    let sms = fx["multi_processor_count"].as_u64().unwrap() as usize;
    let threads = fx["max_threads_per_multi_processor"].as_u64().unwrap() as usize;
    let (n, max_diff) = check(
        &fx["cases"],
        |s| Box::new(NvidiaRng::with_grid(s, sms, threads)),
        2e-5,
    );
    eprintln!("nvidia: {n} calls, max abs diff {max_diff:e}");
    assert!(n > 40);
}
