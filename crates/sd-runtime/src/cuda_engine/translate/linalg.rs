//! Matrix products, convolutions and attention: `linear`, `matmul`, 1×1 convolutions on
//! cuBLAS; other convolutions on cuDNN; attention on the flash kernel (fp16, no mask) or as
//! GEMM → softmax → GEMM in query chunks.

use super::elementwise::{act_code, broadcast_strides};
use super::{Builder, Dt, KArg, Op, TRef};
use crate::cuda_engine::flash_attention;
use crate::cuda_engine::program::{Addr, ConvGeometry, Float, Gemm, Launch};
use crate::kernels::Activation;
use crate::kernels::conv::conv_padding;

pub(super) fn translate(
    b: &mut Builder<'_>,
    o: &Op<'_>,
    op_type: &str,
) -> Option<Result<Vec<TRef>, String>> {
    Some(match op_type {
        "linear" | crate::passes::LINEAR_ACT_OP => linear(b, o),
        "matmul" => matmul(b, o),
        "conv" | crate::passes::CONV_ACT_OP => conv(b, o),
        crate::passes::ATTENTION_OP => fused_attention(b, o),
        crate::passes::MATMUL_ATTENTION_OP => matmul_attention(b, o),
        "scaled_dot_product_attention" => sdpa(b, o),
        _ => return None,
    })
}

/// A matrix operand: element (r, c) of batch entry i at `addr + i·bs + r·rs + c·cs`
/// (elements); one of rs, cs must be 1.
#[derive(Debug, Clone, Copy)]
pub struct View {
    pub addr: Addr,
    pub rs: usize,
    pub cs: usize,
    pub bs: usize,
}

impl View {
    fn t(self) -> View {
        View {
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
}

fn gemm_type(dt: Dt) -> Result<Float, String> {
    match dt {
        Dt::F16 => Ok(Float::F16),
        Dt::F32 => Ok(Float::F32),
        d => Err(format!("matrix product of {d:?} values")),
    }
}

/// C[m, n] = alpha · A[m, k] · B[k, n] + beta · C over `batch` entries.
#[allow(clippy::too_many_arguments)]
pub fn emit_gemm(
    b: &mut Builder<'_>,
    dt: Dt,
    (m, n, k): (usize, usize, usize),
    batch: usize,
    a: View,
    bm: View,
    c: View,
    alpha: f32,
    beta: f32,
) -> Result<(), String> {
    let ty = gemm_type(dt)?;
    // Along an axis of length 1 the stride is free: make it the unit one where that helps.
    let norm = |mut v: View, p: usize, q: usize| {
        if q == 1 && v.rs != 1 {
            v.cs = 1;
        }
        if p == 1 && v.cs != 1 {
            v.rs = 1;
        }
        v
    };
    let (a, bm, c) = (norm(a, m, k), norm(bm, k, n), norm(c, m, n));
    // cuBLAS is column-major: C col-major (rs = 1) directly, else compute Cᵀ = Bᵀ·Aᵀ.
    let (m, n, a, bm, c) = if c.rs == 1 {
        (m, n, a, bm, c)
    } else if c.cs == 1 {
        (
            n,
            m,
            norm(bm.t(), n, k),
            norm(a.t(), k, m),
            norm(c.t(), n, m),
        )
    } else {
        return Err("a product into a result with no unit stride".into());
    };
    // A p × q operand: column-major (rs = 1, ld = cs) as is, row-major (cs = 1) transposed.
    let op = |v: View, p: usize, q: usize| -> Result<(bool, usize), String> {
        if v.rs == 1 && (q == 1 || v.cs >= p) {
            Ok((false, if q == 1 { p.max(1) } else { v.cs }))
        } else if v.cs == 1 && (p == 1 || v.rs >= q) {
            Ok((true, if p == 1 { q.max(1) } else { v.rs }))
        } else {
            Err(format!(
                "a matrix operand with strides ({}, {})",
                v.rs, v.cs
            ))
        }
    };
    let (ta, lda) = op(a, m, k)?;
    let (tb, ldb) = op(bm, k, n)?;
    let ldc = if n == 1 { m.max(1) } else { c.cs };
    b.push(Launch::Gemm(Gemm {
        ty,
        trans_a: ta,
        trans_b: tb,
        m,
        n,
        k,
        a: a.addr,
        lda,
        stride_a: a.bs,
        b: bm.addr,
        ldb,
        stride_b: bm.bs,
        c: c.addr,
        ldc,
        stride_c: c.bs,
        batch,
        alpha,
        beta,
    }));
    Ok(())
}

/// y = act(y + bias) in place; channel of element i = (i / inner) % channels.
pub fn emit_bias_act(
    b: &mut Builder<'_>,
    y: &TRef,
    bias: Option<&TRef>,
    channels: usize,
    inner: usize,
    act: Activation,
) {
    if bias.is_none() && act == Activation::None {
        return;
    }
    let n = y.len();
    b.kernel(
        "sd_bias_act",
        n,
        vec![
            y.dt.code(),
            bias.map_or(Dt::F32, |t| t.dt).code(),
            KArg::i64(n as i64),
            KArg::Ptr(y.addr),
            KArg::Ptr(bias.map_or(Addr::NULL, |t| t.addr)),
            KArg::i64(channels as i64),
            KArg::i64(inner as i64),
            KArg::i32(act_code(act)),
        ],
    );
}

fn activation(b: &Builder<'_>, o: &Op<'_>) -> Result<Activation, String> {
    match b.opt_string(o, "activation")? {
        None => Ok(Activation::None),
        Some(name) => {
            Activation::parse(&name).ok_or_else(|| format!("unknown activation `{name}`"))
        }
    }
}

fn linear(b: &mut Builder<'_>, o: &Op<'_>) -> Result<Vec<TRef>, String> {
    let x = b.tensor(o, "x")?;
    let w = b.tensor(o, "weight")?;
    let bias = b.opt_tensor(o, "bias")?;
    let act = activation(b, o)?;
    let out = b.output(o, 0)?;
    let (dout, din) = match w.shape[..] {
        [o, i] => (o, i),
        _ => return Err(format!("weight {:?} is not 2-D", w.shape)),
    };
    if x.shape.last() != Some(&din) || out.len() != x.len() / din.max(1) * dout {
        return Err(format!("linear of {:?} by {:?}", x.shape, w.shape));
    }
    let rows = x.len() / din.max(1);
    // C[rows, dout] = X[rows, din] · Wᵀ.
    emit_gemm(
        b,
        x.dt,
        (rows, dout, din),
        1,
        View {
            addr: x.addr,
            rs: din,
            cs: 1,
            bs: 0,
        },
        View {
            addr: w.addr,
            rs: 1,
            cs: din,
            bs: 0,
        },
        View {
            addr: out.addr,
            rs: dout,
            cs: 1,
            bs: 0,
        },
        1.0,
        0.0,
    )?;
    emit_bias_act(b, &out, bias.as_ref(), dout, 1, act);
    Ok(vec![out])
}

/// Batch strides of an operand of shape `shape` (batch dims then 2 matrix dims) over the
/// output batch dims: `Some(stride)` when one stride walks the whole batch (all dims equal →
/// packed; all ones → 0).
fn batch_stride(shape: &[usize], batch: &[usize]) -> Option<usize> {
    let r = shape.len();
    let mat = shape[r - 2] * shape[r - 1];
    let own = &shape[..r - 2];
    let lead = batch.len() - own.len();
    let full: Vec<usize> = std::iter::repeat_n(1, lead)
        .chain(own.iter().copied())
        .collect();
    if full.iter().all(|d| *d == 1) {
        Some(0)
    } else if full == batch {
        Some(mat)
    } else {
        None
    }
}

/// The operand materialized at the full batch shape (a broadcast copy into scratch).
fn expand_batch(b: &mut Builder<'_>, t: &TRef, batch: &[usize]) -> Result<TRef, String> {
    let r = t.shape.len();
    let mut full: Vec<usize> = batch.to_vec();
    full.extend(&t.shape[r - 2..]);
    let dst = b.fresh(&full, t.dt);
    let src = broadcast_strides(&t.shape, &full)?;
    let ds: Vec<i64> = super::packed_strides(&full)
        .iter()
        .map(|v| *v as i64)
        .collect();
    super::layout::emit_copy(b, &dst, 0, &ds, t, 0, &src, &full, None)?;
    Ok(dst)
}

fn matmul(b: &mut Builder<'_>, o: &Op<'_>) -> Result<Vec<TRef>, String> {
    let mut x = b.tensor(o, "x")?;
    let mut y = b.tensor(o, "y")?;
    let tx = b.flag(o, "transpose_x")?;
    let ty = b.flag(o, "transpose_y")?;
    let out = b.output(o, 0)?;
    if x.shape.len() < 2 || y.shape.len() < 2 || out.shape.len() < 2 {
        return Err("matmul of vectors".into());
    }
    let (xr, xc) = (x.shape[x.shape.len() - 2], x.shape[x.shape.len() - 1]);
    let (yr, yc) = (y.shape[y.shape.len() - 2], y.shape[y.shape.len() - 1]);
    let (m, k) = if tx { (xc, xr) } else { (xr, xc) };
    let (k2, n) = if ty { (yc, yr) } else { (yr, yc) };
    let r = out.shape.len();
    if k != k2 || out.shape[r - 2] != m || out.shape[r - 1] != n {
        return Err(format!(
            "matmul of {:?} and {:?} into {:?}",
            x.shape, y.shape, out.shape
        ));
    }
    let batch = out.shape[..r - 2].to_vec();
    let count: usize = batch.iter().product();
    let sx = match batch_stride(&x.shape, &batch) {
        Some(s) => s,
        None => {
            x = expand_batch(b, &x, &batch)?;
            m * k
        }
    };
    let sy = match batch_stride(&y.shape, &batch) {
        Some(s) => s,
        None => {
            y = expand_batch(b, &y, &batch)?;
            k * n
        }
    };
    // Stored x is [xr, xc] row-major: element (r, c) at r·xc + c.
    let vx = View {
        addr: x.addr,
        rs: xc,
        cs: 1,
        bs: sx,
    };
    let vy = View {
        addr: y.addr,
        rs: yc,
        cs: 1,
        bs: sy,
    };
    emit_gemm(
        b,
        x.dt,
        (m, n, k),
        count,
        if tx { vx.t() } else { vx },
        if ty { vy.t() } else { vy },
        View {
            addr: out.addr,
            rs: n,
            cs: 1,
            bs: m * n,
        },
        1.0,
        0.0,
    )?;
    Ok(vec![out])
}

fn conv(b: &mut Builder<'_>, o: &Op<'_>) -> Result<Vec<TRef>, String> {
    let x = b.tensor(o, "x")?;
    let w = b.tensor(o, "weight")?;
    let bias = b.opt_tensor(o, "bias")?;
    let act = activation(b, o)?;
    let out = b.output(o, 0)?;
    let sp = x.shape.len().checked_sub(2).filter(|s| (1..=2).contains(s));
    let Some(sp) = sp else {
        return Err(format!("conv of a {:?} input", x.shape));
    };
    let list = |v: Option<Vec<i64>>| -> Vec<usize> {
        v.map(|v| v.into_iter().map(|x| x as usize).collect())
            .unwrap_or(vec![1; sp])
    };
    let strides = list(b.opt_ints(o, "strides")?);
    let dil = list(b.opt_ints(o, "dilations")?);
    let groups = b.opt_ints(o, "groups")?.map_or(1, |v| v[0]) as usize;
    let pad_type = b.opt_string(o, "pad_type")?.unwrap_or("valid".into());
    let pad = b.opt_ints(o, "pad")?.unwrap_or(vec![0; 2 * sp]);
    let pads = conv_padding(
        &pad_type,
        &pad,
        &x.shape[2..],
        &w.shape[2..],
        &strides,
        &dil,
    )
    .map_err(|e| e.reason)?;
    // As 2-D: a 1-D conv is one of height 1.
    let four = |s: &[usize]| -> [usize; 4] {
        if sp == 1 {
            [s[0], s[1], 1, s[2]]
        } else {
            [s[0], s[1], s[2], s[3]]
        }
    };
    let (xd, wd, yd) = (four(&x.shape), four(&w.shape), four(&out.shape));
    let (strides, dil, pads) = if sp == 1 {
        ([1, strides[0]], [1, dil[0]], [(0, 0), pads[0]])
    } else {
        (
            [strides[0], strides[1]],
            [dil[0], dil[1]],
            [pads[0], pads[1]],
        )
    };
    if pads.iter().any(|(l, h)| l != h) {
        return Err(format!("asymmetric padding {pads:?}"));
    }
    let (cout, plane) = (yd[1], yd[2] * yd[3]);
    let pointwise =
        wd[2] == 1 && wd[3] == 1 && groups == 1 && strides == [1, 1] && pads == [(0, 0), (0, 0)];
    if pointwise {
        // y[n] (Cout × HW) = W (Cout × Cin) · x[n] (Cin × HW).
        let cin = xd[1];
        emit_gemm(
            b,
            x.dt,
            (cout, plane, cin),
            xd[0],
            View {
                addr: w.addr,
                rs: cin,
                cs: 1,
                bs: 0,
            },
            View {
                addr: x.addr,
                rs: plane,
                cs: 1,
                bs: cin * plane,
            },
            View {
                addr: out.addr,
                rs: plane,
                cs: 1,
                bs: cout * plane,
            },
            1.0,
            0.0,
        )?;
    } else {
        let geometry = ConvGeometry {
            ty: gemm_type(x.dt)?,
            x: xd,
            w: wd,
            y: yd,
            strides,
            dilations: dil,
            pads: [pads[0].0, pads[1].0],
            groups,
        };
        b.push(Launch::Conv {
            geometry,
            x: x.addr,
            w: w.addr,
            y: out.addr,
        });
    }
    emit_bias_act(b, &out, bias.as_ref(), cout, plane, act);
    Ok(vec![out])
}

/// An attention operand's element strides (batch, head, row, column).
#[derive(Debug, Clone, Copy)]
struct Layout4 {
    b: usize,
    h: usize,
    i: usize,
    j: usize,
}

/// softmax(scale·q·kᵀ)·v over (batch, heads) with arbitrary strides.
#[allow(clippy::too_many_arguments)]
fn emit_attention(
    b: &mut Builder<'_>,
    (q, lq): (&TRef, Layout4),
    (k, lk): (&TRef, Layout4),
    (v, lv): (&TRef, Layout4),
    (out, lo): (&TRef, Layout4),
    (batch, heads, sq, sk, d, dv): (usize, usize, usize, usize, usize, usize),
    scale: f32,
    mask: Option<&TRef>,
) -> Result<(), String> {
    // `SD_CUDA_FLASH=0` runs every attention as GEMM → softmax → GEMM (to cross-check).
    let flash = q.dt == Dt::F16
        && mask.is_none()
        && std::env::var("SD_CUDA_FLASH").map_or(true, |v| v != "0");
    if let (true, Some(shared)) = (flash, flash_attention::shared_bytes(d, dv)) {
        let mut args = vec![
            KArg::Ptr(q.addr),
            KArg::Ptr(k.addr),
            KArg::Ptr(v.addr),
            KArg::Ptr(out.addr),
            KArg::i32(heads as i32),
            KArg::i32(sq as i32),
            KArg::i32(sk as i32),
            KArg::i32(d as i32),
            KArg::i32(dv as i32),
            KArg::f32(scale),
        ];
        for l in [lq, lk, lv, lo] {
            args.extend([l.b, l.h, l.i, l.j].map(|s| KArg::i64(s as i64)));
        }
        let grid = (
            sq.div_ceil(flash_attention::BLOCK_Q as usize) as u32,
            heads as u32,
            batch as u32,
        );
        b.kernel_grid(
            "sd_flash_attention_f16",
            grid,
            flash_attention::THREADS,
            shared,
            args,
        );
        return Ok(());
    }
    // GEMM → softmax → GEMM, in query chunks whose scores stay under 64 MB.
    let per_row = heads * sk * q.dt.size();
    let mut chunk = ((64usize << 20) / per_row.max(1)).clamp(1, sq);
    while sq % chunk != 0 {
        chunk -= 1;
    }
    let scores = b.fresh(&[heads, chunk, sk], q.dt);
    for bi in 0..batch {
        let mut start = 0;
        while start < sq {
            // chunk divides sq, so every chunk is whole and the scores are packed rows.
            let rows = chunk;
            let el = q.dt.size();
            let qa = q.addr.at((bi * lq.b + start * lq.i) * el);
            let oa = out.addr.at((bi * lo.b + start * lo.i) * el);
            // S[h] (rows × sk) = Q[h] (rows × d) · K[h]ᵀ (d × sk).
            emit_gemm(
                b,
                q.dt,
                (rows, sk, d),
                heads,
                View {
                    addr: qa,
                    rs: lq.i,
                    cs: lq.j,
                    bs: lq.h,
                },
                View {
                    addr: k.addr.at(bi * lk.b * el),
                    rs: lk.j,
                    cs: lk.i,
                    bs: lk.h,
                },
                View {
                    addr: scores.addr,
                    rs: sk,
                    cs: 1,
                    bs: chunk * sk,
                },
                scale,
                0.0,
            )?;
            if let Some(m) = mask {
                add_mask(b, &scores, m, bi, start, rows, (batch, heads, sq, sk))?;
            }
            super::norm::emit_softmax(b, &scores, &scores, (heads * rows, sk, 1));
            // O[h] (rows × dv) = P[h] (rows × sk) · V[h] (sk × dv).
            emit_gemm(
                b,
                q.dt,
                (rows, dv, sk),
                heads,
                View {
                    addr: scores.addr,
                    rs: sk,
                    cs: 1,
                    bs: chunk * sk,
                },
                View {
                    addr: v.addr.at(bi * lv.b * el),
                    rs: lv.i,
                    cs: lv.j,
                    bs: lv.h,
                },
                View {
                    addr: oa,
                    rs: lo.i,
                    cs: lo.j,
                    bs: lo.h,
                },
                1.0,
                0.0,
            )?;
            start += rows;
        }
    }
    Ok(())
}

/// scores[h, r, t] += mask[bi, h, start + r, t] (mask broadcast to [batch, heads, sq, sk]).
fn add_mask(
    b: &mut Builder<'_>,
    scores: &TRef,
    m: &TRef,
    bi: usize,
    start: usize,
    rows: usize,
    (batch, heads, sq, sk): (usize, usize, usize, usize),
) -> Result<(), String> {
    let full = [batch, heads, sq, sk];
    let ms = broadcast_strides(&m.shape, &full)?;
    let chunk = scores.shape[1];
    let dims = [heads, rows, sk];
    let s_out = [(chunk * sk) as i64, sk as i64, 1];
    let s_m = [ms[1], ms[2], ms[3]];
    let base = bi as i64 * ms[0] + start as i64 * ms[2];
    if m.dt != scores.dt {
        return Err(format!(
            "attention mask of {:?} beside {:?} scores",
            m.dt, scores.dt
        ));
    }
    // The mask operand's base is folded into its address.
    let mask_view = TRef {
        addr: m.addr.at(base as usize * m.dt.size()),
        ..m.clone()
    };
    let st = super::Strided3::new(&dims, &s_out, &s_out, &s_m)?;
    let n = heads * rows * sk;
    super::elementwise::launch_binary(
        b,
        (0, 0),
        scores.dt,
        [scores, scores, &mask_view],
        n,
        Some(st),
    );
    Ok(())
}

/// The fused split-einsum attention: q (B, C, 1, Sq), kt (B, Sk, 1, C), v (B, Cv, 1, Sk).
fn fused_attention(b: &mut Builder<'_>, o: &Op<'_>) -> Result<Vec<TRef>, String> {
    let heads = b.int(o, "heads")? as usize;
    let scale = b.float(o, "scale")?;
    let q = b.tensor(o, "q")?;
    let k = b.tensor(o, "kt")?;
    let v = b.tensor(o, "v")?;
    let out = b.output(o, 0)?;
    let (dq, dk, dv) = (&q.shape, &k.shape, &v.shape);
    if dq.len() != 4
        || dk.len() != 4
        || dv.len() != 4
        || heads == 0
        || dq[1] % heads != 0
        || dv[1] % heads != 0
    {
        return Err(format!("fused attention of {dq:?}, {dk:?}, {dv:?}"));
    }
    let (bn, c, sq, sk) = (dq[0], dq[1], dq[3], dk[1]);
    let (d, dvh) = (c / heads, dv[1] / heads);
    if dk[3] != c || dv[3] != sk || out.shape != [bn, dv[1], 1, sq] {
        return Err(format!(
            "fused attention of {dq:?}, {dk:?}, {dv:?} into {:?}",
            out.shape
        ));
    }
    emit_attention(
        b,
        (
            &q,
            Layout4 {
                b: c * sq,
                h: d * sq,
                i: 1,
                j: sq,
            },
        ),
        (
            &k,
            Layout4 {
                b: sk * c,
                h: d,
                i: c,
                j: 1,
            },
        ),
        (
            &v,
            Layout4 {
                b: dv[1] * sk,
                h: dvh * sk,
                i: 1,
                j: sk,
            },
        ),
        (
            &out,
            Layout4 {
                b: dv[1] * sq,
                h: dvh * sq,
                i: 1,
                j: sq,
            },
        ),
        (bn, heads, sq, sk, d, dvh),
        scale,
        None,
    )?;
    Ok(vec![out])
}

/// The fused matmul attention (`passes::matmul_attention`): q, k, v [.., positions,
/// features] of one rank and leading dims, each possibly stored transposed; the leading dims
/// become the heads.
fn matmul_attention(b: &mut Builder<'_>, o: &Op<'_>) -> Result<Vec<TRef>, String> {
    let scale = b.float(o, "scale")?;
    let mut flags = [false; 4];
    for (f, p) in flags.iter_mut().zip(["q_t", "k_t", "v_t", "o_t"]) {
        *f = b.int(o, p)? != 0;
    }
    let [q_t, k_t, v_t, o_t] = flags;
    let q = b.tensor(o, "q")?;
    let k = b.tensor(o, "k")?;
    let v = b.tensor(o, "v")?;
    let out = b.output(o, 0)?;
    let r = q.shape.len();
    let same_lead = [&k, &v, &out].iter().all(|t| {
        t.shape.len() == r && t.shape[..r.saturating_sub(2)] == q.shape[..r.saturating_sub(2)]
    });
    if r < 2 || !same_lead {
        return Err(format!(
            "matmul attention of {:?}, {:?}, {:?} into {:?}",
            q.shape, k.shape, v.shape, out.shape
        ));
    }
    // (positions, features) of an operand, and its element strides.
    let view = |t: &TRef, transposed: bool| {
        let (rows, cols) = (t.shape[r - 2], t.shape[r - 1]);
        let h = rows * cols;
        if transposed {
            (
                (cols, rows),
                Layout4 {
                    b: 0,
                    h,
                    i: 1,
                    j: cols,
                },
            )
        } else {
            (
                (rows, cols),
                Layout4 {
                    b: 0,
                    h,
                    i: cols,
                    j: 1,
                },
            )
        }
    };
    let (((sq, d), lq), ((sk, d2), lk), ((sk2, dv), lv)) =
        (view(&q, q_t), view(&k, k_t), view(&v, v_t));
    let ((osq, odv), lo) = view(&out, o_t);
    if d != d2 || sk != sk2 || (osq, odv) != (sq, dv) {
        return Err(format!(
            "matmul attention of {:?}, {:?}, {:?} into {:?}: sizes differ",
            q.shape, k.shape, v.shape, out.shape
        ));
    }
    let heads: usize = q.shape[..r - 2].iter().product();
    emit_attention(
        b,
        (&q, lq),
        (&k, lk),
        (&v, lv),
        (&out, lo),
        (1, heads.max(1), sq, sk, d, dv),
        scale,
        None,
    )?;
    Ok(vec![out])
}

/// `scaled_dot_product_attention`: [..., S, d] operands (batch dims collapsed to (B, H)).
fn sdpa(b: &mut Builder<'_>, o: &Op<'_>) -> Result<Vec<TRef>, String> {
    let q = b.tensor(o, "query")?;
    let k = b.tensor(o, "key")?;
    let v = b.tensor(o, "value")?;
    let mask = b.opt_tensor(o, "attn_mask")?;
    let out = b.output(o, 0)?;
    let r = q.shape.len();
    if r < 2
        || k.shape.len() != r
        || v.shape.len() != r
        || k.shape[..r - 2] != q.shape[..r - 2]
        || v.shape[..r - 2] != q.shape[..r - 2]
    {
        return Err(format!(
            "attention of {:?}, {:?}, {:?}",
            q.shape, k.shape, v.shape
        ));
    }
    if mask.as_ref().is_some_and(|m| m.dt == Dt::U8) {
        return Err("boolean attention masks".into());
    }
    let (sq, d, sk, dvh) = (
        q.shape[r - 2],
        q.shape[r - 1],
        k.shape[r - 2],
        v.shape[r - 1],
    );
    let heads = if r >= 3 { q.shape[r - 3] } else { 1 };
    let batch: usize = q.shape[..r.saturating_sub(3)].iter().product();
    let lay = |s: usize, e: usize| Layout4 {
        b: heads * s * e,
        h: s * e,
        i: e,
        j: 1,
    };
    let mask4 = mask.as_ref().map(|m| {
        let mut s = m.shape.clone();
        while s.len() < 4 {
            s.insert(0, 1);
        }
        // Collapse extra batch dims into the first.
        while s.len() > 4 {
            let f = s.remove(0);
            s[0] *= f;
        }
        TRef {
            shape: s,
            ..m.clone()
        }
    });
    emit_attention(
        b,
        (&q, lay(sq, d)),
        (&k, lay(sk, d)),
        (&v, lay(sk, dvh)),
        (&out, lay(sq, dvh)),
        (batch.max(1), heads, sq, sk, d, dvh),
        1.0 / (d as f32).sqrt(),
        mask4.as_ref(),
    )?;
    Ok(vec![out])
}
