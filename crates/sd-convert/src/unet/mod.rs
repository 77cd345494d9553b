//! `UNet2DConditionModel` (SD 1.x/2.x, inpainting, control-unet) and `ControlNetModel`,
//! mirroring diffusers' `models/unets/unet_2d_condition.py` and `models/controlnet.py`.

mod resnet;
mod transformer;

pub use resnet::{downsample, resnet, upsample};
pub use transformer::{TransformerSettings, attn, transformer_2d};

use crate::attention::AttentionImpl;
use crate::config::{UNetConfig, UNetLayout};
use crate::error::{ConvertError, Result};
use crate::nn::{Net, join};
use sd_mil::signature::unet;
use sd_mil::{ConstValue, DType, Var};

/// Shapes and forms of a UNet or ControlNet program.
#[derive(Debug, Clone)]
pub struct UNetOptions {
    /// Batch (2 for classifier-free guidance; 1 with `--unet-batch-one`).
    pub batch: usize,
    /// Latent height.
    pub latent_h: usize,
    /// Latent width.
    pub latent_w: usize,
    /// Text tokens.
    pub seq_len: usize,
    /// Attention form.
    pub attention: AttentionImpl,
    /// Add `additional_residual_*` inputs (control-unet).
    pub controlnet_inputs: bool,
}

struct Ctx<'c> {
    cfg: &'c UNetConfig,
    layout: &'c UNetLayout,
    ts: TransformerSettings,
    temb_act: Var,
    ctx: Var,
}

impl<'c> Ctx<'c> {
    /// The time embedding and transformer settings every block shares.
    fn new(
        net: &mut Net<'_>,
        cfg: &'c UNetConfig,
        layout: &'c UNetLayout,
        o: &UNetOptions,
        timestep: &Var,
        ctx: Var,
    ) -> Result<Self> {
        Ok(Ctx {
            cfg,
            layout,
            ts: TransformerSettings {
                attention: o.attention,
                linear_projection: cfg.use_linear_projection,
                groups: cfg.norm_num_groups,
            },
            temb_act: time_embedding(net, cfg, timestep)?,
            ctx,
        })
    }
}

fn check_size(cfg: &UNetConfig, o: &UNetOptions) -> Result<()> {
    let f = 1usize << (cfg.block_out_channels.len() - 1);
    if o.latent_h == 0
        || o.latent_w == 0
        || !o.latent_h.is_multiple_of(f)
        || !o.latent_w.is_multiple_of(f)
    {
        return Err(ConvertError::Invalid(format!(
            "latent size {}×{} must be a positive multiple of {f} for {} UNet levels",
            o.latent_h,
            o.latent_w,
            cfg.block_out_channels.len()
        )));
    }
    Ok(())
}

/// `Timesteps` + `TimestepEmbedding`: sinusoidal features (computed in fp32), linear, SiLU,
/// linear. Returns SiLU(embedding) as (B, T, 1, 1), what every resnet consumes.
fn time_embedding(net: &mut Net<'_>, cfg: &UNetConfig, timestep: &Var) -> Result<Var> {
    let dim = cfg.block_out_channels[0];
    let half = dim / 2;
    let b = timestep.ty.shape[0];
    let t = if timestep.ty.dtype == DType::F32 {
        timestep.clone()
    } else {
        net.cast(timestep, "fp32", None)?
    };
    let t = net
        .fb
        .op("expand_dims")
        .input("x", &t)
        .param("axes", [1])
        .build_one()?;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(10000f64.ln()) * i as f64 / (half as f64 - cfg.freq_shift)).exp() as f32)
        .collect();
    let fname = net.fb.unique_name("time_proj_freqs");
    let freqs = net
        .fb
        .constant(&fname, ConstValue::f32(vec![1, half], &freqs)?)?;
    let arg = net.binary("mul", &t, &freqs)?;
    let sin = net.unary("sin", &arg)?;
    let cos = net.unary("cos", &arg)?;
    let emb = if cfg.flip_sin_to_cos {
        net.concat(&[&cos, &sin], -1)?
    } else {
        net.concat(&[&sin, &cos], -1)?
    };
    let emb = if net.dtype() == DType::F32 {
        emb
    } else {
        net.cast(&emb, "fp16", None)?
    };
    let emb = net.reshape(&emb, &[b, 2 * half, 1, 1])?;
    let tdim = dim * 4;
    let e = net.linear_conv(&emb, "time_embedding.linear_1", tdim, true)?;
    let e = net.unary("silu", &e)?;
    let e = net.linear_conv(&e, "time_embedding.linear_2", tdim, true)?;
    net.unary("silu", &e)
}

/// Layer `j` of a down or up block at UNet level `level`: `{prefix}.resnets.{j}`, then, in
/// cross-attention blocks, `{prefix}.attentions.{j}`.
fn resnet_attention(
    net: &mut Net<'_>,
    c: &Ctx<'_>,
    prefix: &str,
    j: usize,
    h: &Var,
    level: usize,
    cross_attention: bool,
) -> Result<Var> {
    let cfg = c.cfg;
    let h = resnet(
        net,
        &format!("{prefix}.resnets.{j}"),
        h,
        cfg.block_out_channels[level],
        Some(&c.temb_act),
        cfg.norm_num_groups,
        cfg.norm_eps,
    )?;
    if !cross_attention {
        return Ok(h);
    }
    transformer_2d(
        net,
        &format!("{prefix}.attentions.{j}"),
        &h,
        &c.ctx,
        c.layout.heads[level],
        c.layout.transformer_layers[level],
        c.ts,
    )
}

/// Down blocks from the output of `conv_in`; returns the last state and every residual state.
fn down_path(net: &mut Net<'_>, c: &Ctx<'_>, h0: Var) -> Result<(Var, Vec<Var>)> {
    let cfg = c.cfg;
    let n = cfg.block_out_channels.len();
    let mut h = h0;
    let mut states = vec![h.clone()];
    for (i, ty) in cfg.down_block_types.iter().enumerate() {
        let p = format!("down_blocks.{i}");
        for j in 0..cfg.layers_per_block {
            h = resnet_attention(net, c, &p, j, &h, i, ty == "CrossAttnDownBlock2D")?;
            states.push(h.clone());
        }
        if i + 1 < n {
            h = downsample(
                net,
                &format!("{p}.downsamplers.0"),
                &h,
                cfg.downsample_padding,
            )?;
            states.push(h.clone());
        }
    }
    Ok((h, states))
}

/// `UNetMidBlock2DCrossAttn`: resnet, transformer, resnet.
fn mid_block(net: &mut Net<'_>, c: &Ctx<'_>, h: &Var) -> Result<Var> {
    let cfg = c.cfg;
    let cout = *cfg.block_out_channels.last().expect("checked non-empty");
    let (g, e) = (cfg.norm_num_groups, cfg.norm_eps);
    let h = resnet(net, "mid_block.resnets.0", h, cout, Some(&c.temb_act), g, e)?;
    let heads = *c.layout.heads.last().expect("non-empty");
    let layers = *c.layout.transformer_layers.last().expect("non-empty");
    let h = transformer_2d(
        net,
        "mid_block.attentions.0",
        &h,
        &c.ctx,
        heads,
        layers,
        c.ts,
    )?;
    resnet(
        net,
        "mid_block.resnets.1",
        &h,
        cout,
        Some(&c.temb_act),
        g,
        e,
    )
}

/// Up blocks, each resnet taking the next residual state concatenated on channels.
fn up_path(net: &mut Net<'_>, c: &Ctx<'_>, mut h: Var, mut states: Vec<Var>) -> Result<Var> {
    let cfg = c.cfg;
    let n = cfg.block_out_channels.len();
    for (i, ty) in cfg.up_block_types.iter().enumerate() {
        let p = format!("up_blocks.{i}");
        let lvl = n - 1 - i;
        for j in 0..=cfg.layers_per_block {
            let skip = states
                .pop()
                .ok_or_else(|| ConvertError::Invalid("UNet ran out of residual states".into()))?;
            h = net.concat(&[&h, &skip], 1)?;
            h = resnet_attention(net, c, &p, j, &h, lvl, ty == "CrossAttnUpBlock2D")?;
        }
        if i + 1 < n {
            h = upsample(net, &format!("{p}.upsamplers.0"), &h)?;
        }
    }
    Ok(h)
}

fn common_inputs(
    net: &mut Net<'_>,
    cfg: &UNetConfig,
    layout: &UNetLayout,
    o: &UNetOptions,
) -> Result<(Var, Var, Var)> {
    let dt = net.dtype();
    let sample = net.input(
        unet::SAMPLE,
        dt,
        &[o.batch, cfg.in_channels, o.latent_h, o.latent_w],
    )?;
    let timestep = net.input(unet::TIMESTEP, dt, &[o.batch])?;
    let ehs = net.input(
        unet::ENCODER_HIDDEN_STATES,
        dt,
        &[o.batch, layout.cross_attention_dim, 1, o.seq_len],
    )?;
    Ok((sample, timestep, ehs))
}

/// Shapes of the residual states a UNet's down path produces (conv_in, each resnet/attention,
/// each downsampler) followed by the mid block's output: the ControlNet outputs and the
/// control-unet's `additional_residual_*` inputs.
pub fn residual_shapes(cfg: &UNetConfig, o: &UNetOptions) -> Vec<Vec<usize>> {
    let n = cfg.block_out_channels.len();
    let (mut h, mut w) = (o.latent_h, o.latent_w);
    let mut v = vec![vec![o.batch, cfg.block_out_channels[0], h, w]];
    for i in 0..n {
        for _ in 0..cfg.layers_per_block {
            v.push(vec![o.batch, cfg.block_out_channels[i], h, w]);
        }
        if i + 1 < n {
            h /= 2;
            w /= 2;
            v.push(vec![o.batch, cfg.block_out_channels[i], h, w]);
        }
    }
    v.push(vec![o.batch, cfg.block_out_channels[n - 1], h, w]);
    v
}

/// Builds the UNet: inputs `sample`, `timestep`, `encoder_hidden_states` (B, D, 1, S) and,
/// for a control-unet, `additional_residual_0..N`; output `noise_pred` (fp32).
pub fn build_unet(
    net: &mut Net<'_>,
    cfg: &UNetConfig,
    layout: &UNetLayout,
    o: &UNetOptions,
) -> Result<Vec<Var>> {
    check_size(cfg, o)?;
    let (sample, timestep, ehs) = common_inputs(net, cfg, layout, o)?;
    let mut extra = Vec::new();
    if o.controlnet_inputs {
        for (i, s) in residual_shapes(cfg, o).iter().enumerate() {
            extra.push(net.input(&unet::additional_residual(i), net.dtype(), s)?);
        }
    }
    let c = Ctx::new(net, cfg, layout, o, &timestep, ehs)?;
    let h = net.conv2d(&sample, "conv_in", cfg.block_out_channels[0], 3, 1, 1)?;
    let (h, mut states) = down_path(net, &c, h)?;
    let mut h = mid_block(net, &c, &h)?;
    if o.controlnet_inputs {
        let n = states.len();
        for (s, r) in states.iter_mut().zip(&extra[..n]) {
            *s = net.add(s, r)?;
        }
        h = net.add(&h, &extra[n])?;
    }
    let h = up_path(net, &c, h, states)?;
    let h = net.group_norm(&h, "conv_norm_out", cfg.norm_num_groups, cfg.norm_eps)?;
    let h = net.unary("silu", &h)?;
    let out_ch = cfg.out_channels.unwrap_or(cfg.in_channels);
    let h = net.conv2d(&h, "conv_out", out_ch, 3, 1, 1)?;
    Ok(vec![net.output(&h, unet::NOISE_PRED)?])
}

/// Builds a ControlNet: UNet inputs plus `controlnet_cond` (B, 3, 8h, 8w) in [0, 1]; outputs
/// `additional_residual_0..N` (fp32), the last one the mid block's.
pub fn build_controlnet(
    net: &mut Net<'_>,
    cfg: &UNetConfig,
    layout: &UNetLayout,
    o: &UNetOptions,
) -> Result<Vec<Var>> {
    check_size(cfg, o)?;
    let (sample, timestep, ehs) = common_inputs(net, cfg, layout, o)?;
    let levels = cfg
        .conditioning_embedding_out_channels
        .as_ref()
        .map_or(4, Vec::len);
    let f = 1usize << (levels - 1);
    let cond_ch = cfg.conditioning_channels.unwrap_or(3);
    let cond = net.input(
        unet::CONTROLNET_COND,
        net.dtype(),
        &[o.batch, cond_ch, o.latent_h * f, o.latent_w * f],
    )?;
    let c = Ctx::new(net, cfg, layout, o, &timestep, ehs)?;
    let h = net.conv2d(&sample, "conv_in", cfg.block_out_channels[0], 3, 1, 1)?;
    let e = cond_embedding(net, cfg, &cond)?;
    if e.ty.shape != h.ty.shape {
        return Err(ConvertError::Invalid(format!(
            "ControlNet conditioning embedding gives {:?}, the latent path {:?}",
            e.ty.shape, h.ty.shape
        )));
    }
    let h = net.add(&h, &e)?;
    let (h, states) = down_path(net, &c, h)?;
    let mid = mid_block(net, &c, &h)?;
    let mut outs = Vec::new();
    for (i, s) in states.iter().enumerate() {
        let ch = s.ty.shape[1];
        let r = net.linear_conv(s, &format!("controlnet_down_blocks.{i}"), ch, true)?;
        outs.push(net.output(&r, &unet::additional_residual(i))?);
    }
    let ch = mid.ty.shape[1];
    let r = net.linear_conv(&mid, "controlnet_mid_block", ch, true)?;
    outs.push(net.output(&r, &unet::additional_residual(states.len()))?);
    Ok(outs)
}

/// `ControlNetConditioningEmbedding`: conv_in, SiLU, pairs of (conv, SiLU, strided conv, SiLU),
/// conv_out.
fn cond_embedding(net: &mut Net<'_>, cfg: &UNetConfig, x: &Var) -> Result<Var> {
    let p = "controlnet_cond_embedding";
    let ch = cfg
        .conditioning_embedding_out_channels
        .clone()
        .unwrap_or_else(|| vec![16, 32, 96, 256]);
    let mut h = net.conv2d(x, &join(p, "conv_in"), ch[0], 3, 1, 1)?;
    h = net.unary("silu", &h)?;
    for i in 0..ch.len() - 1 {
        h = net.conv2d(&h, &format!("{p}.blocks.{}", 2 * i), ch[i], 3, 1, 1)?;
        h = net.unary("silu", &h)?;
        h = net.conv2d(&h, &format!("{p}.blocks.{}", 2 * i + 1), ch[i + 1], 3, 2, 1)?;
        h = net.unary("silu", &h)?;
    }
    net.conv2d(&h, &join(p, "conv_out"), cfg.block_out_channels[0], 3, 1, 1)
}
