//! The Stable Diffusion safety checker (diffusers' `StableDiffusionSafetyChecker`) in the
//! vectorised, branch-free form of Apple's `forward_coreml` (torch2coreml):
//!
//! ```text
//! e       = visual_projection(post_layernorm(CLIP vision tower(clip_input)[:, 0]))
//! cos_s   = normalize(e) · normalize(special_care_embeds)ᵀ          (1, S)
//! cos_c   = normalize(e) · normalize(concept_embeds)ᵀ               (1, K)
//! care    = any(cos_s − special_care_embeds_weights + adjustment > 0)
//! concept_scores    = cos_c − concept_embeds_weights + 0.01·care    (1, K)
//! has_nsfw_concepts = any(concept_scores > 0)                        (1, 1, 1, 1)
//! filtered_images   = has_nsfw_concepts ? 0 : images                 (1, H, W, 3)
//! ```
//!
//! "any(x > 0)" is computed as "max(x) > 0" (the same predicate, one reduction). The concept
//! embeddings are constants: they are normalised at build time (see `cosine`).
//! Inputs are in the compute type (fp16 by default, as Apple's converter declares them: its
//! sample inputs are cast to float16 before conversion); outputs are fp32.

use crate::clip::{self, LayerDims};
use crate::config::{ClipVisionConfig, SafetyCheckerConfig};
use crate::error::Result;
use crate::nn::{Net, join};
use sd_mil::Var;
use sd_mil::signature::safety_checker;

/// Added to every concept score when a special-care concept is detected.
pub const SPECIAL_CARE_BONUS: f32 = 0.01;

/// The published checkpoints nest the vision tower twice (`vision_model.vision_model.…`);
/// transformers ≥ 5 saves it once.
fn vision_prefix(net: &Net<'_>) -> &'static str {
    if net
        .w
        .contains("vision_model.vision_model.embeddings.class_embedding")
    {
        "vision_model.vision_model"
    } else {
        "vision_model"
    }
}

/// Builds the safety checker with inputs `clip_input` (1, C, S, S) (S = the vision tower's
/// `image_size`), `images` (1, `image_h`, `image_w`, 3) and `adjustment` (1,); outputs
/// `filtered_images`, `has_nsfw_concepts`, `concept_scores`, in Apple's order.
pub fn build(
    net: &mut Net<'_>,
    cfg: &SafetyCheckerConfig,
    image_h: usize,
    image_w: usize,
) -> Result<Vec<Var>> {
    let v = &cfg.vision_config;
    let dt = net.dtype();
    let clip_input = net.input(
        safety_checker::CLIP_INPUT,
        dt,
        &[1, v.num_channels, v.image_size, v.image_size],
    )?;
    let images = net.input(safety_checker::IMAGES, dt, &[1, image_h, image_w, 3])?;
    let adjustment = net.input(safety_checker::ADJUSTMENT, dt, &[1])?;

    let p = vision_prefix(net);
    let pooled = vision_tower(net, v, p, &clip_input)?;
    let embeds = net.linear(&pooled, "visual_projection", cfg.projection_dim, false)?;
    let embeds = normalize(net, &embeds)?;

    let special = cosine(net, &embeds, "special_care_embeds", cfg.projection_dim)?;
    let special_w = thresholds(net, "special_care_embeds")?;
    let special = net.binary("sub", &special, &special_w)?;
    let special = net.add(&special, &adjustment)?;
    let care = any_positive(net, &special, &[1, 1])?;
    let care = net.cast(
        &care,
        if dt == sd_mil::DType::F16 {
            "fp16"
        } else {
            "fp32"
        },
        None,
    )?;
    let bonus = net.mul_scalar(&care, SPECIAL_CARE_BONUS)?;

    let concept = cosine(net, &embeds, "concept_embeds", cfg.projection_dim)?;
    let concept_w = thresholds(net, "concept_embeds")?;
    let concept = net.binary("sub", &concept, &concept_w)?;
    let scores = net.add(&concept, &bonus)?;
    let flagged = any_positive(net, &scores, &[1, 1, 1, 1])?;

    let zero = net.scalar(0.0);
    let filtered = net
        .fb
        .op("select")
        .input("cond", &flagged)
        .param("a", zero)
        .input("b", &images)
        .build_one()?;
    Ok(vec![
        net.output(&filtered, safety_checker::FILTERED_IMAGES)?,
        net.output(&flagged, safety_checker::HAS_NSFW_CONCEPTS)?,
        net.output(&scores, safety_checker::CONCEPT_SCORES)?,
    ])
}

/// transformers' `CLIPVisionTransformer` up to the pooled output: patch embedding, class
/// token, positions, pre-norm, encoder layers, post-norm of the class token → (1, hidden).
fn vision_tower(net: &mut Net<'_>, v: &ClipVisionConfig, p: &str, x: &Var) -> Result<Var> {
    let hidden = v.hidden_size;
    let grid = v.image_size / v.patch_size;
    let n = grid * grid;
    let patches = net.conv2d_no_bias(
        x,
        &join(p, "embeddings.patch_embedding"),
        hidden,
        v.patch_size,
        v.patch_size,
        0,
    )?;
    let patches = net.reshape(&patches, &[1, hidden, n])?;
    let patches = net.transpose(&patches, &[0, 2, 1])?;
    let class = net.weight_view(
        &join(p, "embeddings.class_embedding"),
        &[hidden],
        &[1, 1, hidden],
    )?;
    let x = net.concat(&[&class, &patches], 1)?;
    let pos = net.weight_view(
        &join(p, "embeddings.position_embedding.weight"),
        &[n + 1, hidden],
        &[1, n + 1, hidden],
    )?;
    let x = net.add(&x, &pos)?;
    let mut x = net.layer_norm(&x, &join(p, "pre_layrnorm"), -1, v.layer_norm_eps)?;
    let dims = LayerDims {
        hidden,
        heads: v.num_attention_heads,
        intermediate: v.intermediate_size,
        quick_gelu: v.hidden_act == "quick_gelu",
        eps: v.layer_norm_eps,
    };
    for l in 0..v.num_hidden_layers {
        let lp = join(p, &format!("encoder.layers.{l}"));
        x = clip::encoder_layer(net, &dims, &lp, &x, None)?;
    }
    let class = net.slice(&x, &[0, 0, 0], &[1, 1, hidden])?;
    let class = net.reshape(&class, &[1, hidden])?;
    net.layer_norm(&class, &join(p, "post_layernorm"), -1, v.layer_norm_eps)
}

/// `F.normalize` on the last axis of (1, P): x / max(‖x‖, ε).
fn normalize(net: &mut Net<'_>, x: &Var) -> Result<Var> {
    let sq = net.unary("square", x)?;
    let sum = net.reduce_sum(&sq, &[1])?;
    let norm = net.unary("sqrt", &sum)?;
    // PyTorch's 1e-12 is 0 in fp16; the smallest normal fp16 keeps a zero vector finite.
    let eps = net.scalar(if net.dtype() == sd_mil::DType::F16 {
        6.1e-5
    } else {
        1e-12
    });
    let norm = net
        .fb
        .op("maximum")
        .input("x", &norm)
        .param("y", eps)
        .build_one()?;
    net.binary("real_div", x, &norm)
}

/// Cosine similarity of the normalised embedding (1, P) with every row of the (K, P) weight
/// `key` → (1, K). The rows are normalised here in f64 and stored transposed (P, K), rounded
/// once to the compute type: the constant Apple's package holds after coremltools folds
/// `F.normalize(embeds)` (a constant subgraph would also trip coremltools' value inference).
fn cosine(net: &mut Net<'_>, embeds: &Var, key: &str, dim: usize) -> Result<Var> {
    let rows = net.w.shape(key)?.first().copied().unwrap_or(0);
    let table = net.w.read_f32(key, &[rows, dim])?;
    let mut t = vec![0f32; rows * dim];
    for (r, row) in table.chunks_exact(dim).enumerate() {
        let norm = row
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>()
            .sqrt()
            .max(1e-12);
        for (c, &v) in row.iter().enumerate() {
            t[c * rows + r] = (f64::from(v) / norm) as f32;
        }
    }
    let normalized = net.tensor(&format!("{key}_normalized"), &[dim, rows], &t)?;
    net.matmul(embeds, &normalized, false, false)
}

/// The per-row thresholds `<key>_weights` (K,) of the (K, P) embeddings `key`.
fn thresholds(net: &mut Net<'_>, key: &str) -> Result<Var> {
    let rows = net.w.shape(key)?.first().copied().unwrap_or(0);
    net.weight(&format!("{key}_weights"), &[rows])
}

/// Whether any element of the (1, K) scores is positive, as a bool of shape `shape`.
fn any_positive(net: &mut Net<'_>, scores: &Var, shape: &[usize]) -> Result<Var> {
    let max = net.reduce_max(scores, &[1])?;
    let max = if max.ty.shape == shape {
        max
    } else {
        net.reshape(&max, shape)?
    };
    let zero = net.scalar(0.0);
    Ok(net
        .fb
        .op("greater")
        .input("x", &max)
        .param("y", zero)
        .build_one()?)
}
