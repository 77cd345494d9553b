//! How a pipeline draws its noise: the order that makes a seed reproduce a picture.
//!
//! Apple's Swift package (and diffusers with one generator) draws the initial latents first, as
//! one tensor, then one tensor per stochastic scheduler step, from the same source. Image-to-image
//! draws the noise added to the encoded image in place of the initial latents.

use crate::noise::NoiseSource;

/// The initial latents: one draw of `count` values times the scheduler's `init_noise_sigma`
/// (float32 product, as `randn(...) * scheduler.init_noise_sigma`).
pub fn initial_latents(
    noise: &mut dyn NoiseSource,
    count: usize,
    init_noise_sigma: f32,
) -> Vec<f32> {
    noise
        .randn(count)
        .into_iter()
        .map(|v| v * init_noise_sigma)
        .collect()
}
