//! Deterministic random inputs for a model's signature.

use sd_mil::signature::{safety_checker, text_encoder, unet};
use sd_runtime::Tensor;
use std::collections::HashMap;

/// A small deterministic generator for check inputs.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32) / (1u64 << 24) as f32
    }
}

/// Random inputs for `model`'s signature: token ids below `vocab` (CLIP's layout: the last two
/// ids are BOS and EOT) with BOS first and EOT padding, timestep 981, images in [0, 1],
/// everything else in [-1, 1].
pub fn random_inputs(model: &sd_mil::Model, vocab: usize, seed: u64) -> HashMap<String, Tensor> {
    let (bos, eot) = ((vocab - 2) as f32, (vocab - 1) as f32);
    let mut r = Lcg(seed);
    model
        .description
        .inputs
        .iter()
        .map(|f| {
            let n: usize = f.shape.iter().product();
            let data: Vec<f32> = match f.name.as_str() {
                text_encoder::INPUT_IDS => {
                    let mut v: Vec<f32> = (0..n).map(|_| (r.next() * bos).floor()).collect();
                    let end = (r.next() * (n - 1) as f32) as usize + 1;
                    v[0] = bos;
                    for x in &mut v[end..] {
                        *x = eot;
                    }
                    v
                }
                unet::TIMESTEP => vec![981.0; n],
                unet::CONTROLNET_COND | safety_checker::IMAGES => {
                    (0..n).map(|_| r.next()).collect()
                }
                safety_checker::ADJUSTMENT => vec![0.0; n],
                _ => (0..n).map(|_| r.next() * 2.0 - 1.0).collect(),
            };
            (f.name.clone(), Tensor::f32(f.shape.clone(), data))
        })
        .collect()
}
