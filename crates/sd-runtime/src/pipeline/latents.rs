//! Latent-space arithmetic of diffusers' pipelines: sampling the VAE encoder's diagonal
//! Gaussian, guidance, the inpainting mask at latent size, and layout moves.

use sd_sched::NoiseSource;

/// diffusers' `DiagonalGaussianDistribution(moments).sample(generator)` times the VAE scale:
/// `moments` is the encoder's `latent` output for one image (mean channels, then log-variance
/// channels); the log-variance is clamped to [−30, 20], one noise tensor is drawn.
pub fn sample_encoded(moments: &[f32], noise: &mut dyn NoiseSource, scaling: f32) -> Vec<f32> {
    let half = moments.len() / 2;
    let (mean, logvar) = moments.split_at(half);
    let eps = noise.randn(half);
    mean.iter()
        .zip(logvar)
        .zip(eps)
        .map(|((m, lv), e)| {
            let std = (0.5 * lv.clamp(-30.0, 20.0)).exp();
            scaling * (m + std * e)
        })
        .collect()
}

/// Classifier-free guidance: `uncond + scale · (text − uncond)`, as diffusers computes it.
pub fn guide(uncond: &[f32], text: &[f32], scale: f32) -> Vec<f32> {
    uncond
        .iter()
        .zip(text)
        .map(|(u, t)| u + scale * (t - u))
        .collect()
}

/// `(1, S, C)` text-encoder states → the UNet's `(C, 1, S)` layout (one batch entry).
pub fn to_channels_first(states: &[f32], seq: usize, channels: usize) -> Vec<f32> {
    let mut out = vec![0.0; states.len()];
    for s in 0..seq {
        for c in 0..channels {
            out[c * seq + s] = states[s * channels + c];
        }
    }
    out
}
