//! `ResnetBlock2D`, `Downsample2D` and `Upsample2D` (diffusers' `models/resnet.py`).

use crate::error::Result;
use crate::nn::{Net, join};
use sd_mil::Var;

/// `ResnetBlock2D` with default time-scale-shift: GN → SiLU → conv3×3 (+ time projection) →
/// GN → SiLU → conv3×3, plus the input (through a 1×1 `conv_shortcut` when channels change).
/// `temb_act` is SiLU(time embedding) as (B, T, 1, 1), or None (VAE).
pub fn resnet(
    net: &mut Net<'_>,
    p: &str,
    x: &Var,
    cout: usize,
    temb_act: Option<&Var>,
    groups: usize,
    eps: f64,
) -> Result<Var> {
    let cin = x.ty.shape[1];
    let h = net.group_norm(x, &join(p, "norm1"), groups, eps)?;
    let h = net.unary("silu", &h)?;
    let mut h = net.conv2d(&h, &join(p, "conv1"), cout, 3, 1, 1)?;
    if let Some(t) = temb_act {
        let t = net.linear_conv(t, &join(p, "time_emb_proj"), cout, true)?;
        h = net.add(&h, &t)?;
    }
    let h = net.group_norm(&h, &join(p, "norm2"), groups, eps)?;
    let h = net.unary("silu", &h)?;
    let h = net.conv2d(&h, &join(p, "conv2"), cout, 3, 1, 1)?;
    let shortcut = if cin != cout || net.w.contains(&join(p, "conv_shortcut.weight")) {
        net.linear_conv(x, &join(p, "conv_shortcut"), cout, true)?
    } else {
        x.clone()
    };
    net.add(&shortcut, &h)
}

/// `Downsample2D` with a convolution: stride 2, padding `padding`; with padding 0 the input is
/// first padded by one on the right and bottom (the VAE encoder's form).
pub fn downsample(net: &mut Net<'_>, p: &str, x: &Var, padding: usize) -> Result<Var> {
    let c = x.ty.shape[1];
    let zero = net.scalar(0.0);
    let x = if padding == 0 {
        net.fb
            .op("pad")
            .input("x", x)
            .param("pad", [0, 0, 0, 0, 0, 1, 0, 1])
            .param("mode", "constant")
            .param("constant_val", zero)
            .build_one()?
    } else {
        x.clone()
    };
    net.conv2d(&x, &join(p, "conv"), c, 3, 2, padding)
}

/// `Upsample2D`: nearest ×2 then a 3×3 convolution.
pub fn upsample(net: &mut Net<'_>, p: &str, x: &Var) -> Result<Var> {
    let c = x.ty.shape[1];
    let x = net.upsample2x(x)?;
    net.conv2d(&x, &join(p, "conv"), c, 3, 1, 1)
}
