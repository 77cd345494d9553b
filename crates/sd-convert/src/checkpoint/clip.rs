//! The text encoders of single-file checkpoints, in transformers' `CLIPTextModel` terms.
//!
//! SD 1.x (`cond_stage_model.transformer.*`) holds a transformers `CLIPTextModel` whose names
//! only lack the prefix (very old files also lack `text_model.`). SD 2.x
//! (`cond_stage_model.model.*`) holds OpenCLIP's text tower: `token_embedding`,
//! `positional_embedding`, `transformer.resblocks.i.{ln_1, attn, ln_2, mlp.c_fc, mlp.c_proj}`,
//! `ln_final`, `text_projection`; the attention's q, k and v projections are fused into
//! `attn.in_proj_weight` / `in_proj_bias` (rows q, then k, then v) and are split here as views.
//! SD 2.x uses the penultimate layer, so diffusers' text encoder has one layer fewer than the
//! tower (23 of 24): the resblocks from `num_hidden_layers` on are left out.

use super::Part;
use crate::error::Result;
use crate::weights::TensorView;
use serde_json::{Value, json};

/// Which text tower a checkpoint holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextLayout {
    /// transformers' CLIP (SD 1.x), under `cond_stage_model.transformer.`.
    Clip,
    /// OpenCLIP (SD 2.x), under `cond_stage_model.model.`.
    OpenClip,
}

/// The transformers name of SD 1.x text-encoder tensor `key` (without
/// `cond_stage_model.transformer.`).
pub fn clip_name(key: &str) -> String {
    if key.starts_with("text_model.") {
        key.to_string()
    } else {
        format!("text_model.{key}")
    }
}

/// The transformers names and views of OpenCLIP tensor `key` (without `cond_stage_model.model.`)
/// of a text encoder with `layers` layers of width `hidden`: none for tensors diffusers does not
/// use, three for a fused projection.
pub fn open_clip_names(
    key: &str,
    view: &TensorView,
    layers: usize,
    hidden: usize,
) -> Vec<(String, TensorView)> {
    let p: Vec<&str> = key.split('.').collect();
    let one = |n: String| vec![(n, view.clone())];
    match p.as_slice() {
        ["token_embedding", "weight"] => one("text_model.embeddings.token_embedding.weight".into()),
        ["positional_embedding"] => one("text_model.embeddings.position_embedding.weight".into()),
        ["ln_final", rest] => one(format!("text_model.final_layer_norm.{rest}")),
        ["transformer", "resblocks", i, rest @ ..] => {
            let Some(i) = i.parse::<usize>().ok().filter(|i| *i < layers) else {
                return Vec::new();
            };
            let base = format!("text_model.encoder.layers.{i}");
            match rest {
                ["ln_1", r] => one(format!("{base}.layer_norm1.{r}")),
                ["ln_2", r] => one(format!("{base}.layer_norm2.{r}")),
                ["attn", "out_proj", r] => one(format!("{base}.self_attn.out_proj.{r}")),
                ["mlp", "c_fc", r] => one(format!("{base}.mlp.fc1.{r}")),
                ["mlp", "c_proj", r] => one(format!("{base}.mlp.fc2.{r}")),
                ["attn", fused @ ("in_proj_weight" | "in_proj_bias")] => {
                    let what = if *fused == "in_proj_weight" {
                        "weight"
                    } else {
                        "bias"
                    };
                    ["q", "k", "v"]
                        .iter()
                        .enumerate()
                        .filter_map(|(n, x)| {
                            let v = view.rows(n * hidden..(n + 1) * hidden)?;
                            Some((format!("{base}.self_attn.{x}_proj.{what}"), v))
                        })
                        .collect()
                }
                _ => Vec::new(),
            }
        }
        _ => Vec::new(),
    }
}

/// Heads of a text encoder of width `hidden`: 64 channels per head in both CLIP ViT-L/14
/// (768 → 12) and OpenCLIP ViT-H/14 (1024 → 16); a narrower model gets 0, which the
/// configuration check rejects.
fn heads(hidden: usize) -> usize {
    hidden / 64
}

/// The `CLIPTextModel` configuration of the tensors in `part`.
pub fn infer_config(part: &Part<'_>, layout: TextLayout) -> Result<Value> {
    match layout {
        TextLayout::Clip => {
            let p = if part.has("text_model.embeddings.token_embedding.weight") {
                "text_model."
            } else {
                ""
            };
            let tok = part.shape_of(&format!("{p}embeddings.token_embedding.weight"), 2)?;
            let pos = part.shape_of(&format!("{p}embeddings.position_embedding.weight"), 2)?;
            let layers = part.count_indices(&format!("{p}encoder.layers."));
            let fc1 = part.shape_of(&format!("{p}encoder.layers.0.mlp.fc1.weight"), 2)?;
            Ok(json!({
                "architectures": ["CLIPTextModel"],
                "vocab_size": tok[0],
                "hidden_size": tok[1],
                "max_position_embeddings": pos[0],
                "num_hidden_layers": layers,
                "intermediate_size": fc1[0],
                "num_attention_heads": heads(tok[1]),
                "hidden_act": "quick_gelu",
                "layer_norm_eps": 1e-5,
                "projection_dim": tok[1],
            }))
        }
        TextLayout::OpenClip => {
            let tok = part.shape_of("token_embedding.weight", 2)?;
            let pos = part.shape_of("positional_embedding", 2)?;
            let blocks = part.count_indices("transformer.resblocks.");
            let fc = part.shape_of("transformer.resblocks.0.mlp.c_fc.weight", 2)?;
            let projection = part
                .shape("text_projection")
                .map_or(512, |s| s[s.len() - 1]);
            Ok(json!({
                "architectures": ["CLIPTextModel"],
                "vocab_size": tok[0],
                "hidden_size": tok[1],
                "max_position_embeddings": pos[0],
                "num_hidden_layers": blocks.saturating_sub(1).max(1),
                "intermediate_size": fc[0],
                "num_attention_heads": heads(tok[1]),
                "hidden_act": "gelu",
                "layer_norm_eps": 1e-5,
                "projection_dim": projection,
            }))
        }
    }
}
