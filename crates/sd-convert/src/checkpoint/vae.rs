//! The LDM `AutoencoderKL` layout (`first_stage_model.*`): its names in diffusers' terms, and a
//! configuration read off the tensors.
//!
//! `encoder.down.i.block.j` / `encoder.down.i.downsample.conv` are `encoder.down_blocks.i.*`;
//! the decoder counts its levels the other way round (`decoder.up.i` is
//! `decoder.up_blocks.{levels − 1 − i}`); `mid.block_1/2` and `mid.attn_1` are
//! `mid_block.resnets.0/1` and `mid_block.attentions.0`, whose `norm`, `q`, `k`, `v`,
//! `proj_out` are `group_norm`, `to_q`, `to_k`, `to_v`, `to_out.0` — stored as 1×1
//! convolutions, which diffusers (and the builders here) see as linear layers;
//! `nin_shortcut` is `conv_shortcut` and `norm_out` is `conv_norm_out`.

use super::{Kind, Part, infer_error};
use crate::error::Result;
use serde_json::{Value, json};

/// The diffusers name of LDM VAE tensor `key` (without `first_stage_model.`) for a VAE of
/// `levels` levels, and whether the tensor is a 1×1 convolution weight diffusers sees as a
/// linear one; None for a name outside the layout.
pub fn diffusers_name(key: &str, levels: usize) -> Option<(String, bool)> {
    let p: Vec<&str> = key.split('.').collect();
    let num = |s: &str| s.parse::<usize>().ok();
    let name = match p.as_slice() {
        ["quant_conv" | "post_quant_conv", _] => key.to_string(),
        ["encoder" | "decoder", "conv_in" | "conv_out", _] => key.to_string(),
        [side @ ("encoder" | "decoder"), "norm_out", rest] => {
            format!("{side}.conv_norm_out.{rest}")
        }
        ["encoder", "down", i, "block", j, name, rest @ ..] => format!(
            "encoder.down_blocks.{}.resnets.{j}.{}.{}",
            num(i)?,
            resnet(name),
            rest.join(".")
        ),
        ["encoder", "down", i, "downsample", "conv", rest] => {
            format!("encoder.down_blocks.{}.downsamplers.0.conv.{rest}", num(i)?)
        }
        ["decoder", "up", i, "block", j, name, rest @ ..] => format!(
            "decoder.up_blocks.{}.resnets.{j}.{}.{}",
            levels.checked_sub(1 + num(i)?)?,
            resnet(name),
            rest.join(".")
        ),
        ["decoder", "up", i, "upsample", "conv", rest] => format!(
            "decoder.up_blocks.{}.upsamplers.0.conv.{rest}",
            levels.checked_sub(1 + num(i)?)?
        ),
        [
            side @ ("encoder" | "decoder"),
            "mid",
            block @ ("block_1" | "block_2"),
            name,
            rest @ ..,
        ] => {
            let k = if *block == "block_1" { 0 } else { 1 };
            format!(
                "{side}.mid_block.resnets.{k}.{}.{}",
                resnet(name),
                rest.join(".")
            )
        }
        [side @ ("encoder" | "decoder"), "mid", "attn_1", layer, rest] => {
            let layer = match *layer {
                "norm" => "group_norm",
                "q" => "to_q",
                "k" => "to_k",
                "v" => "to_v",
                "proj_out" => "to_out.0",
                _ => return None,
            };
            let name = format!("{side}.mid_block.attentions.0.{layer}.{rest}");
            return Some((name, layer != "group_norm" && *rest == "weight"));
        }
        _ => return None,
    };
    Some((name, false))
}

/// A resnet's inner name: LDM's `nin_shortcut` is diffusers' `conv_shortcut`.
fn resnet(name: &str) -> &str {
    if name == "nin_shortcut" {
        "conv_shortcut"
    } else {
        name
    }
}

/// The number of `<prefix>.<i>.` levels in `part`.
pub fn levels(part: &Part<'_>) -> usize {
    part.count_indices("encoder.down.")
        .max(part.count_indices("decoder.up."))
}

/// The `AutoencoderKL` configuration of the tensors in `part` (32 norm groups, as every
/// Stable Diffusion VAE; other models fail [`crate::config::VaeConfig::check`] and need a
/// config folder).
pub fn infer_config(part: &Part<'_>, kind: &Kind) -> Result<Value> {
    let conv_in = part.shape_of("encoder.conv_in.weight", 4)?;
    let n = part.count_indices("encoder.down.");
    if n == 0 {
        return Err(infer_error(part, "no `encoder.down.0.*` block".into()));
    }
    let mut channels = Vec::new();
    for i in 0..n {
        channels.push(part.shape_of(&format!("encoder.down.{i}.block.0.conv2.weight"), 4)?[0]);
    }
    let layers = part.count_indices("encoder.down.0.block.");
    let latent = part.shape_of("decoder.conv_in.weight", 4)?[1];
    let out = part.shape_of("decoder.conv_out.weight", 4)?[0];
    Ok(json!({
        "_class_name": "AutoencoderKL",
        "in_channels": conv_in[1],
        "out_channels": out,
        "latent_channels": latent,
        "block_out_channels": channels,
        "layers_per_block": layers,
        "down_block_types": vec!["DownEncoderBlock2D"; n],
        "up_block_types": vec!["UpDecoderBlock2D"; n],
        "norm_num_groups": 32,
        "sample_size": kind.image_size,
        "scaling_factor": 0.18215,
        "use_quant_conv": part.has("quant_conv.weight"),
        "use_post_quant_conv": part.has("post_quant_conv.weight"),
    }))
}

#[cfg(test)]
mod tests {
    use super::diffusers_name;

    #[test]
    fn sd_vae_names() {
        let n = |k| diffusers_name(k, 4).unwrap();
        assert_eq!(
            n("encoder.down.1.block.0.nin_shortcut.weight"),
            (
                "encoder.down_blocks.1.resnets.0.conv_shortcut.weight".into(),
                false
            )
        );
        assert_eq!(
            n("encoder.down.2.downsample.conv.bias"),
            (
                "encoder.down_blocks.2.downsamplers.0.conv.bias".into(),
                false
            )
        );
        assert_eq!(
            n("decoder.up.3.block.2.conv1.weight"),
            ("decoder.up_blocks.0.resnets.2.conv1.weight".into(), false)
        );
        assert_eq!(
            n("decoder.up.1.upsample.conv.weight"),
            ("decoder.up_blocks.2.upsamplers.0.conv.weight".into(), false)
        );
        assert_eq!(
            n("decoder.mid.attn_1.proj_out.weight"),
            (
                "decoder.mid_block.attentions.0.to_out.0.weight".into(),
                true
            )
        );
        assert_eq!(
            n("encoder.mid.attn_1.q.bias"),
            ("encoder.mid_block.attentions.0.to_q.bias".into(), false)
        );
        assert_eq!(
            n("encoder.mid.attn_1.norm.weight"),
            (
                "encoder.mid_block.attentions.0.group_norm.weight".into(),
                false
            )
        );
        assert_eq!(
            n("decoder.mid.block_2.norm1.weight"),
            ("decoder.mid_block.resnets.1.norm1.weight".into(), false)
        );
        assert_eq!(
            n("encoder.norm_out.bias"),
            ("encoder.conv_norm_out.bias".into(), false)
        );
        assert_eq!(
            n("post_quant_conv.weight"),
            ("post_quant_conv.weight".into(), false)
        );
        assert_eq!(diffusers_name("decoder.up.4.block.0.conv1.weight", 4), None);
        assert_eq!(diffusers_name("loss.logvar", 4), None);
    }
}
