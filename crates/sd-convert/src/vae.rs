//! `AutoencoderKL`: decoder (post_quant_conv + decoder) and encoder (encoder + quant_conv),
//! mirroring diffusers' `models/autoencoders/vae.py`.

use crate::config::VaeConfig;
use crate::error::{ConvertError, Result};
use crate::nn::{Net, join};
use crate::unet::{downsample, resnet, upsample};
use sd_mil::Var;
use sd_mil::signature::{vae_decoder, vae_encoder};

/// Epsilon of every VAE norm.
const EPS: f64 = 1e-6;

/// Spatial factor between image and latent.
pub fn scale_factor(cfg: &VaeConfig) -> usize {
    1 << (cfg.block_out_channels.len() - 1)
}

/// The VAE attention block (diffusers `Attention` with a group norm and a residual), written
/// as Apple's packages have it: tokens (B, HW, C), linear q/k/v, one head per C channels.
fn attention_block(net: &mut Net<'_>, p: &str, x: &Var, groups: usize) -> Result<Var> {
    let s = x.ty.shape.clone();
    let (b, c, h, w) = (s[0], s[1], s[2], s[3]);
    // Checkpoints from diffusers < 0.14 name the projections query/key/value/proj_attn.
    let old = !net.w.contains(&join(p, "to_q.weight")) && net.w.contains(&join(p, "query.weight"));
    let names = if old {
        ["query", "key", "value", "proj_attn"]
    } else {
        ["to_q", "to_k", "to_v", "to_out.0"]
    };
    let n = net.group_norm(x, &join(p, "group_norm"), groups, EPS)?;
    let t = net.reshape(&n, &[b, c, h * w])?;
    let t = net.transpose(&t, &[0, 2, 1])?;
    let q = net.linear(&t, &join(p, names[0]), c, true)?;
    let k = net.linear(&t, &join(p, names[1]), c, true)?;
    let v = net.linear(&t, &join(p, names[2]), c, true)?;
    let q = net.mul_scalar(&q, (c as f32).powf(-0.5))?;
    let wgt = net.matmul(&q, &k, false, true)?; // (B, HW, HW)
    let wgt = net.softmax(&wgt, -1)?;
    let o = net.matmul(&wgt, &v, false, false)?; // (B, HW, C)
    let o = net.linear(&o, &join(p, names[3]), c, true)?;
    let o = net.transpose(&o, &[0, 2, 1])?;
    let o = net.reshape(&o, &[b, c, h, w])?;
    net.add(&o, x)
}

/// `UNetMidBlock2D`: resnet, (attention, resnet).
fn mid_block(net: &mut Net<'_>, p: &str, x: &Var, cfg: &VaeConfig) -> Result<Var> {
    let c = x.ty.shape[1];
    let g = cfg.norm_num_groups;
    let mut h = resnet(net, &join(p, "resnets.0"), x, c, None, g, EPS)?;
    if cfg.mid_block_add_attention {
        h = attention_block(net, &join(p, "attentions.0"), &h, g)?;
    }
    resnet(net, &join(p, "resnets.1"), &h, c, None, g, EPS)
}

fn check_latent(cfg: &VaeConfig, h: usize, w: usize) -> Result<()> {
    if h == 0 || w == 0 {
        return Err(ConvertError::Invalid(format!(
            "latent size {h}×{w} must be positive"
        )));
    }
    let _ = cfg;
    Ok(())
}

/// Builds the decoder: input `z` (1, latent, h, w) → `image` (1, out, h·f, w·f) in [−1, 1].
pub fn build_decoder(
    net: &mut Net<'_>,
    cfg: &VaeConfig,
    latent_h: usize,
    latent_w: usize,
) -> Result<Vec<Var>> {
    check_latent(cfg, latent_h, latent_w)?;
    let z = net.input(
        vae_decoder::Z,
        net.dtype(),
        &[1, cfg.latent_channels, latent_h, latent_w],
    )?;
    let mut h = if cfg.use_post_quant_conv {
        net.linear_conv(&z, "post_quant_conv", cfg.latent_channels, true)?
    } else {
        z
    };
    let boc = &cfg.block_out_channels;
    let n = boc.len();
    let g = cfg.norm_num_groups;
    h = net.conv2d(&h, "decoder.conv_in", boc[n - 1], 3, 1, 1)?;
    h = mid_block(net, "decoder.mid_block", &h, cfg)?;
    for i in 0..n {
        let cout = boc[n - 1 - i];
        let p = format!("decoder.up_blocks.{i}");
        for j in 0..=cfg.layers_per_block {
            h = resnet(net, &format!("{p}.resnets.{j}"), &h, cout, None, g, EPS)?;
        }
        if i + 1 < n {
            h = upsample(net, &format!("{p}.upsamplers.0"), &h)?;
        }
    }
    h = net.group_norm(&h, "decoder.conv_norm_out", g, EPS)?;
    h = net.unary("silu", &h)?;
    h = net.conv2d(&h, "decoder.conv_out", cfg.out_channels, 3, 1, 1)?;
    Ok(vec![net.output(&h, vae_decoder::IMAGE)?])
}

/// Builds the encoder: input `x` (1, in, H, W) in [−1, 1] → `latent` (1, 2·latent, H/f, W/f):
/// the distribution's mean then log-variance.
pub fn build_encoder(
    net: &mut Net<'_>,
    cfg: &VaeConfig,
    image_h: usize,
    image_w: usize,
) -> Result<Vec<Var>> {
    let f = scale_factor(cfg);
    if image_h == 0 || image_w == 0 || !image_h.is_multiple_of(f) || !image_w.is_multiple_of(f) {
        return Err(ConvertError::Invalid(format!(
            "image size {image_h}×{image_w} must be a positive multiple of {f}"
        )));
    }
    let x = net.input(
        vae_encoder::X,
        net.dtype(),
        &[1, cfg.in_channels, image_h, image_w],
    )?;
    let boc = &cfg.block_out_channels;
    let n = boc.len();
    let g = cfg.norm_num_groups;
    let mut h = net.conv2d(&x, "encoder.conv_in", boc[0], 3, 1, 1)?;
    for (i, &cout) in boc.iter().enumerate() {
        let p = format!("encoder.down_blocks.{i}");
        for j in 0..cfg.layers_per_block {
            h = resnet(net, &format!("{p}.resnets.{j}"), &h, cout, None, g, EPS)?;
        }
        if i + 1 < n {
            h = downsample(net, &format!("{p}.downsamplers.0"), &h, 0)?;
        }
    }
    h = mid_block(net, "encoder.mid_block", &h, cfg)?;
    h = net.group_norm(&h, "encoder.conv_norm_out", g, EPS)?;
    h = net.unary("silu", &h)?;
    h = net.conv2d(&h, "encoder.conv_out", 2 * cfg.latent_channels, 3, 1, 1)?;
    if cfg.use_quant_conv {
        h = net.linear_conv(&h, "quant_conv", 2 * cfg.latent_channels, true)?;
    }
    Ok(vec![net.output(&h, vae_encoder::LATENT)?])
}
