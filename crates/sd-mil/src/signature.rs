//! The Core ML signatures of the Stable Diffusion models: the feature names Apple's converter
//! writes and its Swift package reads. Defined once here, used by the converter (which declares
//! them), the correctness check (which feeds them) and the pipeline (which runs them).

/// The text encoder (`TextEncoder`, `…_text_encoder`).
pub mod text_encoder {
    /// Token ids, float32 `(1, 77)`.
    pub const INPUT_IDS: &str = "input_ids";
    /// The last hidden state `(1, 77, C)`.
    pub const LAST_HIDDEN_STATE: &str = "last_hidden_state";
    /// The pooled output `(1, C)`.
    pub const POOLED_OUTPUTS: &str = "pooled_outputs";
    /// The penultimate hidden state (SDXL form).
    pub const HIDDEN_EMBEDS: &str = "hidden_embeds";
}

/// The UNet, the control-unet and the ControlNets (which share the first three inputs).
pub mod unet {
    /// The latents `(B, 4 or 9, h, w)`.
    pub const SAMPLE: &str = "sample";
    /// One timestep per batch entry `(B,)`.
    pub const TIMESTEP: &str = "timestep";
    /// Text embeddings `(B, C, 1, S)`.
    pub const ENCODER_HIDDEN_STATES: &str = "encoder_hidden_states";
    /// The predicted noise (or v), the shape of the first 4 channels of `sample`.
    pub const NOISE_PRED: &str = "noise_pred";
    /// The ControlNet's conditioning image `(B, 3, H, W)`.
    pub const CONTROLNET_COND: &str = "controlnet_cond";
    /// The prefix of the residual names (`additional_residual_<i>`): ControlNet outputs and
    /// control-unet inputs.
    pub const ADDITIONAL_RESIDUAL: &str = "additional_residual";

    /// `additional_residual_<i>`.
    pub fn additional_residual(i: usize) -> String {
        format!("{ADDITIONAL_RESIDUAL}_{i}")
    }
}

/// The VAE decoder (`decoder(post_quant_conv(z))`).
pub mod vae_decoder {
    /// Latents divided by the VAE scale `(1, 4, h, w)`.
    pub const Z: &str = "z";
    /// The picture in [−1, 1] `(1, 3, H, W)`.
    pub const IMAGE: &str = "image";
}

/// The VAE encoder (`quant_conv(encoder(x))`).
pub mod vae_encoder {
    /// The picture in [−1, 1] `(1, 3, H, W)`.
    pub const X: &str = "x";
    /// Mean then log-variance channels `(1, 8, h, w)`.
    pub const LATENT: &str = "latent";
}

/// The safety checker (Apple's branch-free form).
pub mod safety_checker {
    /// The CLIP-preprocessed picture `(1, 3, S, S)`.
    pub const CLIP_INPUT: &str = "clip_input";
    /// The decoded pictures in [0, 1], channels last `(1, H, W, 3)`.
    pub const IMAGES: &str = "images";
    /// Added to the special-care scores `(1,)`.
    pub const ADJUSTMENT: &str = "adjustment";
    /// `images`, or zeros where flagged.
    pub const FILTERED_IMAGES: &str = "filtered_images";
    /// 1 where flagged.
    pub const HAS_NSFW_CONCEPTS: &str = "has_nsfw_concepts";
    /// Scores before thresholding.
    pub const CONCEPT_SCORES: &str = "concept_scores";
}
