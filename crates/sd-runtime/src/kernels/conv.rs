//! Convolution (1-D/2-D, groups, dilations, every pad type), nearest upsampling, pad.

use super::activation::activation_param;
use super::linalg::matmul_generic;
use super::util::{self, cat, dims, expand, narrow, reshape};
use super::{Activation, Ctx, KResult, KernelError, Registry, Val};
use crate::backend::RtBackend;
use burn_tensor::ops::{ConvOptions, FloatTensor};

pub(super) fn register<B: RtBackend>(r: &mut Registry<B>) {
    r.insert("conv", conv);
    r.insert(crate::passes::CONV_ACT_OP, conv);
    r.insert("upsample_nearest_neighbor", upsample);
    r.insert("pad", pad);
}

/// Explicit (low, high) padding per spatial axis for Core ML's pad types.
pub fn conv_padding(
    pad_type: &str,
    pad: &[i64],
    input: &[usize],
    kernel: &[usize],
    strides: &[usize],
    dilations: &[usize],
) -> KResult<Vec<(usize, usize)>> {
    let n = input.len();
    (0..n)
        .map(|i| {
            let eff = dilations[i] * (kernel[i] - 1) + 1;
            Ok(match pad_type {
                "valid" => (0, 0),
                "custom" => {
                    if pad.len() != 2 * n {
                        return Err(KernelError::param(
                            "pad",
                            format!("expected {} values, got {pad:?}", 2 * n),
                        ));
                    }
                    (pad[2 * i] as usize, pad[2 * i + 1] as usize)
                }
                "same" | "same_lower" => {
                    let out = input[i].div_ceil(strides[i]);
                    let total = ((out - 1) * strides[i] + eff).saturating_sub(input[i]);
                    let small = total / 2;
                    if pad_type == "same" {
                        (small, total - small)
                    } else {
                        (total - small, small)
                    }
                }
                t => {
                    return Err(KernelError::param(
                        "pad_type",
                        format!("unknown pad type `{t}`"),
                    ));
                }
            })
        })
        .collect()
}

/// Constant-pads the trailing axes of `x`: `pads[j]` = (low, high) for axis `first + j`.
pub fn pad_constant<B: RtBackend>(
    x: FloatTensor<B>,
    first: usize,
    pads: &[(usize, usize)],
    value: f32,
    device: &B::Device,
) -> FloatTensor<B> {
    let mut x = x;
    for (j, &(lo, hi)) in pads.iter().enumerate() {
        if lo == 0 && hi == 0 {
            continue;
        }
        let ax = first + j;
        let d = dims::<B>(&x);
        let mut parts = Vec::new();
        let mut s = d.clone();
        if lo > 0 {
            s[ax] = lo;
            parts.push(util::full::<B>(&s, value, device));
        }
        parts.push(x);
        if hi > 0 {
            s[ax] = hi;
            parts.push(util::full::<B>(&s, value, device));
        }
        x = cat::<B>(parts, ax);
    }
    x
}

/// The geometry of a 2-D convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dGeometry {
    /// Strides (height, width).
    pub strides: [usize; 2],
    /// Padding (begin, end) for height and width.
    pub pads: [(usize, usize); 2],
    /// Dilations (height, width).
    pub dilations: [usize; 2],
    /// Channel groups.
    pub groups: usize,
}

/// 2-D convolution of x [N, Cin, H, W] with w [Cout, Cin/g, kH, kW] with burn's own ops,
/// then `act` (the default of [`RtBackend::conv2d_fused`]).
pub fn conv2d_generic<B: RtBackend>(
    x: FloatTensor<B>,
    w: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
    geometry: Conv2dGeometry,
    act: Activation,
) -> KResult<FloatTensor<B>> {
    let Conv2dGeometry {
        strides,
        pads,
        dilations,
        groups,
    } = geometry;
    let (dx, dw) = (dims::<B>(&x), dims::<B>(&w));
    // 1×1, stride 1, unpadded, one group: a matmul over channels.
    let y =
        if groups == 1 && dw[2] == 1 && dw[3] == 1 && strides == [1, 1] && pads == [(0, 0), (0, 0)]
        {
            let (n, cin, h, wd) = (dx[0], dx[1], dx[2], dx[3]);
            let x3 = reshape::<B>(x, &[n, cin, h * wd]);
            let w3 = reshape::<B>(w, &[1, dw[0], cin]);
            let mut y = matmul_generic::<B>(w3, x3)?;
            if let Some(b) = bias {
                y = B::float_add(
                    y,
                    expand::<B>(reshape::<B>(b, &[1, dw[0], 1]), &[n, dw[0], h * wd]),
                );
            }
            reshape::<B>(y, &[n, dw[0], h, wd])
        } else {
            let (x, padding) = if pads[0].0 == pads[0].1 && pads[1].0 == pads[1].1 {
                (x, [pads[0].0, pads[1].0])
            } else {
                let device = B::float_device(&x);
                (pad_constant::<B>(x, 2, &pads, 0.0, &device), [0, 0])
            };
            B::conv2d(
                x,
                w,
                bias,
                ConvOptions::new(strides, padding, dilations, groups),
            )
        };
    Ok(act.apply::<B>(y))
}

/// 2-D convolution through the backend's [`RtBackend::conv2d_fused`], after checking the
/// operands' shapes.
pub fn conv2d<B: RtBackend>(
    x: FloatTensor<B>,
    w: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
    geometry: Conv2dGeometry,
    act: Activation,
) -> KResult<FloatTensor<B>> {
    let (dx, dw) = (dims::<B>(&x), dims::<B>(&w));
    let g = geometry.groups;
    if dx.len() != 4
        || dw.len() != 4
        || g == 0
        || dx[1] != dw[1] * g
        || !dw[0].is_multiple_of(g)
        || geometry.strides.contains(&0)
        || geometry.dilations.contains(&0)
    {
        return Err(KernelError::param(
            "weight",
            format!("weight {dw:?} does not convolve x {dx:?} in {g} groups"),
        ));
    }
    for a in 0..2 {
        let eff = geometry.dilations[a] * (dw[2 + a] - 1) + 1;
        if dx[2 + a] + geometry.pads[a].0 + geometry.pads[a].1 < eff {
            return Err(KernelError::param(
                "x",
                format!("kernel {dw:?} is larger than the padded input {dx:?}"),
            ));
        }
    }
    if let Some(b) = &bias
        && dims::<B>(b).iter().product::<usize>() != dw[0]
    {
        return Err(KernelError::param(
            "bias",
            "one value per output channel expected",
        ));
    }
    B::conv2d_fused(x, w, bias, geometry, act)
}

fn conv<B: RtBackend>(c: &mut Ctx<'_, B>) -> KResult<Vec<Val<B>>> {
    let x = c.tensor("x")?;
    let w = c.tensor("weight")?;
    let b = c.opt_tensor("bias")?;
    let (dx, dw) = (x.shape(), w.shape());
    let sp = dx
        .len()
        .checked_sub(2)
        .filter(|s| (1..=2).contains(s))
        .ok_or_else(|| {
            KernelError::param("x", format!("conv supports 1-D and 2-D inputs, got {dx:?}"))
        })?;
    let list = |v: Option<Vec<i64>>, d: usize| -> Vec<usize> {
        v.map(|v| v.into_iter().map(|x| x as usize).collect())
            .unwrap_or(vec![d; sp])
    };
    let strides = list(c.opt_ints("strides")?, 1);
    let dil = list(c.opt_ints("dilations")?, 1);
    let groups = c.int("groups")? as usize;
    let pad_type = c.string("pad_type")?;
    let pad = c.opt_ints("pad")?.unwrap_or(vec![0; 2 * sp]);
    let pads = conv_padding(&pad_type, &pad, &dx[2..], &dw[2..], &strides, &dil)?;
    let act = activation_param(c)?;
    let y = if sp == 2 {
        conv2d::<B>(
            x.t,
            w.t,
            b.map(|b| b.t),
            Conv2dGeometry {
                strides: [strides[0], strides[1]],
                pads: [pads[0], pads[1]],
                dilations: [dil[0], dil[1]],
                groups,
            },
            act,
        )?
    } else {
        let x4 = reshape::<B>(x.t, &[dx[0], dx[1], 1, dx[2]]);
        let w4 = reshape::<B>(w.t, &[dw[0], dw[1], 1, dw[2]]);
        let y = conv2d::<B>(
            x4,
            w4,
            b.map(|b| b.t),
            Conv2dGeometry {
                strides: [1, strides[0]],
                pads: [(0, 0), pads[0]],
                dilations: [1, dil[0]],
                groups,
            },
            act,
        )?;
        let d = dims::<B>(&y);
        reshape::<B>(y, &[d[0], d[1], d[3]])
    };
    Ok(vec![c.val(y, 0)?])
}

fn upsample<B: RtBackend>(c: &mut Ctx<'_, B>) -> KResult<Vec<Val<B>>> {
    let x = c.tensor("x")?;
    let out = c.out(0)?.shape.clone();
    let d = x.shape();
    let r = d.len();
    let lead: usize = d[..r - 2].iter().product();
    let x4 = reshape::<B>(x.t, &[lead, 1, d[r - 2], d[r - 1]]);
    let (oh, ow) = (out[r - 2], out[r - 1]);
    let y = B::upsample_nearest(x4, oh, ow);
    Ok(vec![c.val(reshape::<B>(y, &out), 0)?])
}

/// Index of a padded position for reflect / replicate padding.
fn source_index(i: i64, n: i64, reflect: bool) -> i64 {
    if reflect {
        if n == 1 {
            return 0;
        }
        let period = 2 * (n - 1);
        let m = i.rem_euclid(period);
        if m < n { m } else { period - m }
    } else {
        i.clamp(0, n - 1)
    }
}

fn pad<B: RtBackend>(c: &mut Ctx<'_, B>) -> KResult<Vec<Val<B>>> {
    let x = c.tensor("x")?;
    let p = c.ints("pad")?;
    let mode = c.string("mode")?;
    let value = c.float("constant_val")?;
    let d = x.shape();
    if p.len() % 2 != 0 || p.len() / 2 > d.len() || p.iter().any(|v| *v < 0) {
        return Err(KernelError::param(
            "pad",
            format!("{p:?} does not pad {d:?}"),
        ));
    }
    let first = d.len() - p.len() / 2;
    let pads: Vec<(usize, usize)> = p
        .chunks(2)
        .map(|c| (c[0] as usize, c[1] as usize))
        .collect();
    let y = match mode.as_str() {
        "constant" => pad_constant::<B>(x.t, first, &pads, value, c.device),
        "reflect" | "replicate" => {
            let mut t = x.t;
            for (j, &(lo, hi)) in pads.iter().enumerate() {
                let ax = first + j;
                let n = d[ax] as i64;
                if mode == "reflect" && (lo as i64 >= n || hi as i64 >= n) {
                    return Err(KernelError::param(
                        "pad",
                        format!("reflect padding {lo}/{hi} needs more than {n} elements"),
                    ));
                }
                let idx: Vec<i64> = (-(lo as i64)..n + hi as i64)
                    .map(|i| source_index(i, n, mode == "reflect"))
                    .collect();
                let len = idx.len();
                t = B::float_select(t, ax, util::int_from_vec::<B>(idx, &[len], c.device));
            }
            t
        }
        m => {
            return Err(KernelError::param(
                "mode",
                format!("unknown pad mode `{m}`"),
            ));
        }
    };
    let _ = narrow::<B>;
    Ok(vec![c.val(y, 0)?])
}
