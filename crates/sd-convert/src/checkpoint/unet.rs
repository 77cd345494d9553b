//! The LDM `openaimodel.UNetModel` layout (`model.diffusion_model.*`): its names in diffusers'
//! `UNet2DConditionModel` terms, and a diffusers configuration read off the tensors.
//!
//! LDM numbers the blocks flat: `input_blocks.0.0` is `conv_in`; then per level
//! `layers_per_block` entries `input_blocks.i.0` (resnet) with `input_blocks.i.1` (spatial
//! transformer, on attention levels), and — except after the last level — one
//! `input_blocks.i.0.op` (down-sampling conv). `middle_block.0/1/2` are resnet, transformer,
//! resnet. `output_blocks.i` holds `layers_per_block + 1` entries per level with the
//! up-sampling conv at `.1.conv` (levels without attention) or `.2.conv` after the
//! transformer. Inside resnets `in_layers.0/2`, `out_layers.0/3`, `emb_layers.1` and
//! `skip_connection` are `norm1`, `conv1`, `norm2`, `conv2`, `time_emb_proj` and
//! `conv_shortcut`; transformers keep diffusers' names.

use super::{Kind, Part, infer_error};
use crate::error::Result;
use serde_json::{Value, json};

/// The diffusers name of LDM UNet tensor `key` (without `model.diffusion_model.`), or None for
/// a name outside the layout.
pub fn diffusers_name(key: &str, layers_per_block: usize) -> Option<String> {
    let per = layers_per_block + 1;
    let p: Vec<&str> = key.split('.').collect();
    let num = |s: &str| s.parse::<usize>().ok();
    Some(match p.as_slice() {
        ["time_embed", "0", rest @ ..] => format!("time_embedding.linear_1.{}", rest.join(".")),
        ["time_embed", "2", rest @ ..] => format!("time_embedding.linear_2.{}", rest.join(".")),
        ["input_blocks", "0", "0", rest @ ..] => format!("conv_in.{}", rest.join(".")),
        ["out", "0", rest @ ..] => format!("conv_norm_out.{}", rest.join(".")),
        ["out", "2", rest @ ..] => format!("conv_out.{}", rest.join(".")),
        ["input_blocks", i, "0", "op", rest @ ..] => {
            let i = num(i)?.checked_sub(1)?;
            format!(
                "down_blocks.{}.downsamplers.0.conv.{}",
                i / per,
                rest.join(".")
            )
        }
        ["input_blocks", i, "0", rest @ ..] => {
            let i = num(i)?.checked_sub(1)?;
            format!(
                "down_blocks.{}.resnets.{}.{}",
                i / per,
                i % per,
                resnet(rest)?
            )
        }
        ["input_blocks", i, "1", rest @ ..] => {
            let i = num(i)?.checked_sub(1)?;
            format!(
                "down_blocks.{}.attentions.{}.{}",
                i / per,
                i % per,
                rest.join(".")
            )
        }
        ["middle_block", k @ ("0" | "2"), rest @ ..] => {
            format!("mid_block.resnets.{}.{}", num(k)? / 2, resnet(rest)?)
        }
        ["middle_block", "1", rest @ ..] => format!("mid_block.attentions.0.{}", rest.join(".")),
        ["output_blocks", i, "1" | "2", "conv", rest @ ..] => {
            format!(
                "up_blocks.{}.upsamplers.0.conv.{}",
                num(i)? / per,
                rest.join(".")
            )
        }
        ["output_blocks", i, "0", rest @ ..] => {
            let i = num(i)?;
            format!(
                "up_blocks.{}.resnets.{}.{}",
                i / per,
                i % per,
                resnet(rest)?
            )
        }
        ["output_blocks", i, "1", rest @ ..] => {
            let i = num(i)?;
            format!(
                "up_blocks.{}.attentions.{}.{}",
                i / per,
                i % per,
                rest.join(".")
            )
        }
        _ => return None,
    })
}

/// A resnet's inner name (`in_layers.0.weight` → `norm1.weight`).
fn resnet(rest: &[&str]) -> Option<String> {
    let (name, tail) = match rest {
        ["in_layers", "0", tail @ ..] => ("norm1", tail),
        ["in_layers", "2", tail @ ..] => ("conv1", tail),
        ["out_layers", "0", tail @ ..] => ("norm2", tail),
        ["out_layers", "3", tail @ ..] => ("conv2", tail),
        ["emb_layers", "1", tail @ ..] => ("time_emb_proj", tail),
        ["skip_connection", tail @ ..] => ("conv_shortcut", tail),
        _ => return None,
    };
    Some(format!("{name}.{}", tail.join(".")))
}

/// One level of the down path as the tensors show it.
#[derive(Debug)]
struct Level {
    channels: usize,
    resnets: usize,
    attention: bool,
    depth: usize,
}

/// Heads of a `channels`-wide attention level: SD 2.x (linear projections) uses 64-channel
/// heads, SD 1.x 8 heads, as the original configurations (`num_head_channels: 64` /
/// `num_heads: 8`) say. A level these do not fit gets a value the configuration check rejects.
fn heads(channels: usize, linear: bool) -> usize {
    if linear { channels / 64 } else { 8 }
}

/// The `UNet2DConditionModel` configuration of the tensors in `part`, with the standard values
/// of Stable Diffusion 1.x/2.x for what shapes do not tell (heads, 32 norm groups, image size);
/// a model these do not fit fails [`crate::config::UNetConfig::check`] and needs a config folder.
pub fn infer_config(part: &Part<'_>, kind: &Kind, vae_scale: usize) -> Result<Value> {
    let conv_in = part.shape_of("input_blocks.0.0.weight", 4)?;
    let conv_out = part.shape_of("out.2.weight", 4)?;
    let mut levels: Vec<Level> = Vec::new();
    let mut open = true;
    let mut i = 1;
    while part.has_prefix(&format!("input_blocks.{i}.")) {
        if part.has(&format!("input_blocks.{i}.0.op.weight")) {
            open = false;
        } else {
            let ch = part.shape_of(&format!("input_blocks.{i}.0.out_layers.3.weight"), 4)?[0];
            let attn = format!("input_blocks.{i}.1.");
            let depth = part.count_indices(&format!("{attn}transformer_blocks."));
            if open && let Some(l) = levels.last_mut() {
                l.resnets += 1;
                l.attention |= depth > 0;
                l.depth = l.depth.max(depth);
            } else {
                levels.push(Level {
                    channels: ch,
                    resnets: 1,
                    attention: depth > 0,
                    depth,
                });
                open = true;
            }
        }
        i += 1;
    }
    let Some(first) = levels.first() else {
        return Err(infer_error(part, "no `input_blocks.1.*` resnet".into()));
    };
    let layers = first.resnets;
    if let Some(l) = levels.iter().find(|l| l.resnets != layers) {
        return Err(infer_error(
            part,
            format!(
                "levels have different resnet counts ({} and {layers}); pass a diffusers config folder",
                l.resnets
            ),
        ));
    }
    let attn_key = part
        .names()
        .find(|n| n.ends_with("transformer_blocks.0.attn2.to_k.weight"))
        .map(str::to_string);
    let cross = match &attn_key {
        Some(k) => part.shape_of(k, 2)?[1],
        None => {
            return Err(infer_error(
                part,
                "no cross-attention (`attn2.to_k`)".into(),
            ));
        }
    };
    let linear = part
        .names()
        .find(|n| n.ends_with(".proj_in.weight"))
        .and_then(|n| part.shape(n))
        .is_some_and(|s| s.len() == 2);
    let channels: Vec<usize> = levels.iter().map(|l| l.channels).collect();
    let head_counts: Vec<usize> = channels.iter().map(|c| heads(*c, linear)).collect();
    let depths: Vec<usize> = levels.iter().map(|l| l.depth.max(1)).collect();
    let down: Vec<&str> = levels
        .iter()
        .map(|l| {
            if l.attention {
                "CrossAttnDownBlock2D"
            } else {
                "DownBlock2D"
            }
        })
        .collect();
    let up: Vec<&str> = levels
        .iter()
        .rev()
        .map(|l| {
            if l.attention {
                "CrossAttnUpBlock2D"
            } else {
                "UpBlock2D"
            }
        })
        .collect();
    let same = |v: &[usize]| v.windows(2).all(|w| w[0] == w[1]);
    let per_level = |v: Vec<usize>| {
        if same(&v) { json!(v[0]) } else { json!(v) }
    };
    Ok(json!({
        "_class_name": "UNet2DConditionModel",
        "in_channels": conv_in[1],
        "out_channels": conv_out[0],
        "sample_size": kind.image_size / vae_scale.max(1),
        "block_out_channels": channels,
        "layers_per_block": layers,
        "down_block_types": down,
        "up_block_types": up,
        "cross_attention_dim": cross,
        "attention_head_dim": per_level(head_counts),
        "transformer_layers_per_block": per_level(depths),
        "use_linear_projection": linear,
        "upcast_attention": kind.v_prediction(),
        "norm_num_groups": 32,
    }))
}

#[cfg(test)]
mod tests {
    use super::diffusers_name;

    #[test]
    fn sd15_names() {
        let n = |k| diffusers_name(k, 2).unwrap();
        assert_eq!(n("time_embed.0.weight"), "time_embedding.linear_1.weight");
        assert_eq!(n("input_blocks.0.0.bias"), "conv_in.bias");
        assert_eq!(
            n("input_blocks.1.1.proj_in.weight"),
            "down_blocks.0.attentions.0.proj_in.weight"
        );
        assert_eq!(
            n("input_blocks.5.0.skip_connection.weight"),
            "down_blocks.1.resnets.1.conv_shortcut.weight"
        );
        assert_eq!(
            n("input_blocks.4.0.in_layers.2.weight"),
            "down_blocks.1.resnets.0.conv1.weight"
        );
        assert_eq!(
            n("input_blocks.3.0.op.weight"),
            "down_blocks.0.downsamplers.0.conv.weight"
        );
        assert_eq!(
            n("middle_block.2.emb_layers.1.bias"),
            "mid_block.resnets.1.time_emb_proj.bias"
        );
        assert_eq!(
            n("middle_block.1.transformer_blocks.0.ff.net.2.weight"),
            "mid_block.attentions.0.transformer_blocks.0.ff.net.2.weight"
        );
        assert_eq!(
            n("output_blocks.2.1.conv.weight"),
            "up_blocks.0.upsamplers.0.conv.weight"
        );
        assert_eq!(
            n("output_blocks.5.2.conv.bias"),
            "up_blocks.1.upsamplers.0.conv.bias"
        );
        assert_eq!(
            n("output_blocks.5.1.norm.weight"),
            "up_blocks.1.attentions.2.norm.weight"
        );
        assert_eq!(
            n("output_blocks.11.0.out_layers.3.weight"),
            "up_blocks.3.resnets.2.conv2.weight"
        );
        assert_eq!(n("out.2.weight"), "conv_out.weight");
        assert_eq!(diffusers_name("input_blocks.1.0.unknown.weight", 2), None);
        assert_eq!(diffusers_name("label_emb.0.0.weight", 2), None);
    }
}
