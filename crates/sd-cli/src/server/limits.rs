//! The bounds every request is held to, one value the server and its OpenAPI description share.

use serde::Serialize;

/// Bounds on what one request may ask for. The defaults suit a desktop; `sd serve` flags change
/// them.
#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    /// The largest request body accepted, in bytes (base64 images included).
    pub max_body_bytes: usize,
    /// The longest prompt or negative prompt, in characters (CLIP reads 77 tokens of it).
    pub max_prompt_chars: usize,
    /// The most denoising steps one image may take.
    pub max_steps: usize,
    /// The most images one request may make (A1111's `batch_size × n_iter`, OpenAI's `n`).
    pub max_images: usize,
    /// The widest or tallest starting image or mask accepted, in pixels, before it is resized
    /// to the model's size.
    pub max_image_side: usize,
    /// The most jobs waiting behind the running one; more are refused with 429.
    pub max_queued: usize,
    /// How many finished jobs keep their results in memory (older ones are forgotten; their
    /// files stay in the output folder).
    pub kept_jobs: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 32 << 20,
            max_prompt_chars: 4000,
            max_steps: 150,
            max_images: 8,
            max_image_side: 4096,
            max_queued: 16,
            kept_jobs: 32,
        }
    }
}
