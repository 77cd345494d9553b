//! `Transformer2DModel` and `BasicTransformerBlock` in Apple's Neural Engine layout: tokens as
//! (B, C, 1, S), every linear layer a 1×1 convolution, layer norms over the channel axis.

use crate::attention::{AttentionImpl, attention};
use crate::error::Result;
use crate::nn::{Net, join};
use sd_mil::Var;

/// Epsilon of the transformer's input group norm (diffusers fixes it at 1e-6).
const GN_EPS: f64 = 1e-6;
/// Epsilon of the block layer norms.
const LN_EPS: f64 = 1e-5;

/// Settings shared by every transformer of a UNet.
#[derive(Debug, Clone, Copy)]
pub struct TransformerSettings {
    /// Attention form.
    pub attention: AttentionImpl,
    /// SD2.x: proj_in/proj_out are linear layers applied after flattening.
    pub linear_projection: bool,
    /// Group norm groups.
    pub groups: usize,
}

/// `Transformer2DModel` on x (B, C, H, W) with text states `ctx` (B, D, 1, S_text).
pub fn transformer_2d(
    net: &mut Net<'_>,
    p: &str,
    x: &Var,
    ctx: &Var,
    heads: usize,
    layers: usize,
    s: TransformerSettings,
) -> Result<Var> {
    let sh = x.ty.shape.clone();
    let (b, c, hh, ww) = (sh[0], sh[1], sh[2], sh[3]);
    let h = net.group_norm(x, &join(p, "norm"), s.groups, GN_EPS)?;
    let mut h = if s.linear_projection {
        let h = net.reshape(&h, &[b, c, 1, hh * ww])?;
        net.linear_conv(&h, &join(p, "proj_in"), c, true)?
    } else {
        let h = net.linear_conv(&h, &join(p, "proj_in"), c, true)?;
        net.reshape(&h, &[b, c, 1, hh * ww])?
    };
    for i in 0..layers {
        h = basic_block(
            net,
            &format!("{p}.transformer_blocks.{i}"),
            &h,
            ctx,
            heads,
            s.attention,
        )?;
    }
    let h = if s.linear_projection {
        let h = net.linear_conv(&h, &join(p, "proj_out"), c, true)?;
        net.reshape(&h, &[b, c, hh, ww])?
    } else {
        let h = net.reshape(&h, &[b, c, hh, ww])?;
        net.linear_conv(&h, &join(p, "proj_out"), c, true)?
    };
    net.add(&h, x)
}

/// `BasicTransformerBlock`: self-attention, cross-attention, GEGLU feed-forward, each pre-norm
/// with a residual.
fn basic_block(
    net: &mut Net<'_>,
    p: &str,
    x: &Var,
    ctx: &Var,
    heads: usize,
    imp: AttentionImpl,
) -> Result<Var> {
    let n = net.layer_norm(x, &join(p, "norm1"), 1, LN_EPS)?;
    let a = attn(net, &join(p, "attn1"), &n, &n, heads, imp)?;
    let x = net.add(&a, x)?;
    let n = net.layer_norm(&x, &join(p, "norm2"), 1, LN_EPS)?;
    let a = attn(net, &join(p, "attn2"), &n, ctx, heads, imp)?;
    let x = net.add(&a, &x)?;
    let n = net.layer_norm(&x, &join(p, "norm3"), 1, LN_EPS)?;
    let f = feed_forward(net, &join(p, "ff"), &n)?;
    net.add(&f, &x)
}

/// diffusers `Attention` with q/k/v without bias and `to_out.0` with bias.
pub fn attn(
    net: &mut Net<'_>,
    p: &str,
    x: &Var,
    ctx: &Var,
    heads: usize,
    imp: AttentionImpl,
) -> Result<Var> {
    let c = x.ty.shape[1];
    let q = net.linear_conv(x, &join(p, "to_q"), c, false)?;
    let k = net.linear_conv(ctx, &join(p, "to_k"), c, false)?;
    let v = net.linear_conv(ctx, &join(p, "to_v"), c, false)?;
    let o = attention(net, imp, &q, &k, &v, heads)?;
    net.linear_conv(&o, &join(p, "to_out.0"), c, true)
}

/// `FeedForward` with GEGLU: proj to 2·inner, value · GELU(gate), proj back.
fn feed_forward(net: &mut Net<'_>, p: &str, x: &Var) -> Result<Var> {
    let c = x.ty.shape[1];
    let proj = join(p, "net.0.proj.weight");
    let inner2 = net.w.shape(&proj)?.first().copied().unwrap_or(8 * c);
    let inner = inner2 / 2;
    let h = net.linear_conv(x, &join(p, "net.0.proj"), 2 * inner, true)?;
    let parts = net.split(&h, &[inner, inner], 1)?;
    let g = net
        .fb
        .op("gelu")
        .input("x", &parts[1])
        .param("mode", "EXACT")
        .build_one()?;
    let h = net.binary("mul", &parts[0], &g)?;
    net.linear_conv(&h, &join(p, "net.2"), c, true)
}
