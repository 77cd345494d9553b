//! Element-wise ops: binary arithmetic and comparisons with broadcasting, unary math,
//! activations, casts and `select`, all on ops.cu's `sd_binary`, `sd_unary`, `sd_select`.

use super::{Builder, Dt, KArg, Op, Strided3, TRef, packed_strides};
use crate::kernels::Activation;

/// `BIN_*` of ops.cu for a MIL binary op.
fn binary_code(op_type: &str) -> Option<i32> {
    Some(match op_type {
        "add" => 0,
        "sub" => 1,
        "mul" => 2,
        "real_div" => 3,
        "maximum" => 4,
        "minimum" => 5,
        "pow" => 6,
        "equal" => 7,
        "not_equal" => 8,
        "less" => 9,
        "less_equal" => 10,
        "greater" => 11,
        "greater_equal" => 12,
        "floor_div" => 13,
        "mod" => 14,
        "logical_and" => 15,
        "logical_or" => 16,
        _ => return None,
    })
}

/// `UN_*` of ops.cu for a MIL unary op (activations separately).
fn unary_code(op_type: &str) -> Option<i32> {
    Some(match op_type {
        "identity" => 0,
        "exp" => 2,
        "log" => 3,
        "sqrt" => 4,
        "rsqrt" => 5,
        "sin" => 6,
        "cos" => 7,
        "tanh" => 8,
        "abs" => 9,
        "floor" => 10,
        "ceil" => 11,
        "round" => 12,
        "erf" => 13,
        "square" => 14,
        "inverse" => 15,
        "clip" => 16,
        "linear_activation" => 17,
        "sign" => 18,
        "logical_not" => 19,
        "exp2" => 20,
        "softplus" => 21,
        _ => return None,
    })
}

/// The `ACT_*` code of ops.cu (the order of [`Activation`]'s variants there).
pub fn act_code(a: Activation) -> i32 {
    match a {
        Activation::None => 0,
        Activation::Silu => 1,
        Activation::Relu => 2,
        Activation::GeluExact => 3,
        Activation::GeluTanh => 4,
        Activation::GeluSigmoid => 5,
        Activation::Sigmoid => 6,
    }
}

pub(super) fn translate(
    b: &mut Builder<'_>,
    o: &Op<'_>,
    op_type: &str,
) -> Option<Result<Vec<TRef>, String>> {
    if let Some(code) = binary_code(op_type) {
        return Some(binary(b, o, code));
    }
    if let Some(code) = unary_code(op_type) {
        return Some(unary(b, o, code, Activation::None));
    }
    match op_type {
        "relu" | "silu" | "sigmoid" | "gelu" => Some((|| {
            let mode = b.opt_string(o, "mode")?;
            let act = Activation::of_op(op_type, mode.as_deref())
                .ok_or_else(|| format!("unknown activation mode {mode:?}"))?;
            unary(b, o, 1, act)
        })()),
        "cast" => Some(unary(b, o, 0, Activation::None)),
        "select" => Some(select(b, o)),
        _ => None,
    }
}

/// Broadcast strides of `shape` (right-aligned) over `out`: 0 on broadcast axes.
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Result<Vec<i64>, String> {
    if shape.len() > out.len() {
        return Err(format!("{shape:?} does not broadcast to {out:?}"));
    }
    let lead = out.len() - shape.len();
    let packed = packed_strides(shape);
    (0..out.len())
        .map(|i| {
            if i < lead {
                return Ok(0);
            }
            let d = shape[i - lead];
            if d == out[i] {
                Ok(packed[i - lead] as i64)
            } else if d == 1 {
                Ok(0)
            } else {
                Err(format!("{shape:?} does not broadcast to {out:?}"))
            }
        })
        .collect()
}

/// Merges adjacent axes along which every stride list is packed, and drops unit axes; the
/// result has the same element order with the fewest axes.
pub fn collapse(dims: &[usize], strides: &[Vec<i64>]) -> (Vec<usize>, Vec<Vec<i64>>) {
    let mut d: Vec<usize> = Vec::new();
    let mut s: Vec<Vec<i64>> = vec![Vec::new(); strides.len()];
    for i in 0..dims.len() {
        if dims[i] == 1 {
            continue;
        }
        let merge = !d.is_empty()
            && strides
                .iter()
                .enumerate()
                .all(|(k, st)| s[k].last().copied() == Some(st[i] * dims[i] as i64));
        if merge {
            let last = d.len() - 1;
            d[last] *= dims[i];
            for (k, st) in strides.iter().enumerate() {
                s[k][last] = st[i];
            }
        } else {
            d.push(dims[i]);
            for (k, st) in strides.iter().enumerate() {
                s[k].push(st[i]);
            }
        }
    }
    (d, s)
}

fn binary(b: &mut Builder<'_>, o: &Op<'_>, code: i32) -> Result<Vec<TRef>, String> {
    let x = b.tensor(o, "x")?;
    let y = b.tensor(o, "y")?;
    let out = b.output(o, 0)?;
    let dt_in = if x.dt == y.dt {
        x.dt
    } else if x.dt == Dt::F32 || y.dt == Dt::F32 {
        // fp16 beside fp32 only in fp32 precision, where both are stored as fp32 anyway.
        return Err(format!("operands of types {:?} and {:?}", x.dt, y.dt));
    } else {
        x.dt
    };
    emit_binary(b, code, 0, dt_in, &out, &x, &y)?;
    Ok(vec![out])
}

/// out = act(x op y) with broadcasting.
pub fn emit_binary(
    b: &mut Builder<'_>,
    code: i32,
    act: i32,
    dt_in: Dt,
    out: &TRef,
    x: &TRef,
    y: &TRef,
) -> Result<(), String> {
    let shape = &out.shape;
    let so: Vec<i64> = packed_strides(shape).iter().map(|v| *v as i64).collect();
    let sx = broadcast_strides(&x.shape, shape)?;
    let sy = broadcast_strides(&y.shape, shape)?;
    let (d, s) = collapse(shape, &[so, sx, sy]);
    let contiguous = d.len() <= 1 && s.iter().all(|st| st.first().is_none_or(|v| *v == 1));
    let st = if contiguous {
        None
    } else {
        Some(Strided3::new(&d, &s[0], &s[1], &s[2])?)
    };
    launch_binary(b, (code, act), dt_in, [out, x, y], out.len(), st);
    Ok(())
}

/// Launches `sd_binary` over `n` elements of [out, x, y]: packed operands when `strides` is
/// `None`, else through its strides (s0 out, s1 x, s2 y).
pub fn launch_binary(
    b: &mut Builder<'_>,
    (code, act): (i32, i32),
    dt_in: Dt,
    [out, x, y]: [&TRef; 3],
    n: usize,
    strides: Option<Strided3>,
) {
    b.kernel(
        "sd_binary",
        n,
        vec![
            KArg::i32(code),
            KArg::i32(act),
            dt_in.code(),
            out.dt.code(),
            KArg::i64(n as i64),
            KArg::Ptr(out.addr),
            KArg::Ptr(x.addr),
            KArg::Ptr(y.addr),
            KArg::i32(strides.is_none() as i32),
            KArg::pod(&strides.unwrap_or_default()),
        ],
    );
}

fn unary(b: &mut Builder<'_>, o: &Op<'_>, code: i32, act: Activation) -> Result<Vec<TRef>, String> {
    let x = b.tensor(o, "x")?;
    let out = b.output(o, 0)?;
    if x.len() != out.len() {
        return Err(format!("{:?} in, {:?} out", x.shape, out.shape));
    }
    let (p0, p1) = match o.op.op_type.as_str() {
        "rsqrt" | "inverse" => (b.opt_floats(o, "epsilon")?.map_or(0.0, |v| v[0]), 0.0),
        "clip" => (b.float(o, "alpha")?, b.float(o, "beta")?),
        "linear_activation" => (
            b.float(o, "alpha")?,
            b.opt_floats(o, "beta")?.map_or(0.0, |v| v[0]),
        ),
        _ => (0.0, 0.0),
    };
    let n = out.len();
    b.kernel(
        "sd_unary",
        n,
        vec![
            KArg::i32(code),
            KArg::i32(act_code(act)),
            x.dt.code(),
            out.dt.code(),
            KArg::i64(n as i64),
            KArg::Ptr(out.addr),
            KArg::Ptr(x.addr),
            KArg::f32(p0),
            KArg::f32(p1),
        ],
    );
    Ok(vec![out])
}

fn select(b: &mut Builder<'_>, o: &Op<'_>) -> Result<Vec<TRef>, String> {
    let c = b.tensor(o, "cond")?;
    let x = b.tensor(o, "a")?;
    let y = b.tensor(o, "b")?;
    let out = b.output(o, 0)?;
    let shape = out.shape.clone();
    let so: Vec<i64> = packed_strides(&shape).iter().map(|v| *v as i64).collect();
    let s = Strided3::new(
        &shape,
        &so,
        &broadcast_strides(&x.shape, &shape)?,
        &broadcast_strides(&y.shape, &shape)?,
    )?;
    let sc = Strided3::new(&shape, &broadcast_strides(&c.shape, &shape)?, &so, &so)?;
    let n = out.len();
    b.kernel(
        "sd_select",
        n,
        vec![
            c.dt.code(),
            out.dt.code(),
            KArg::i64(n as i64),
            KArg::Ptr(out.addr),
            KArg::Ptr(c.addr),
            KArg::Ptr(x.addr),
            KArg::Ptr(y.addr),
            KArg::pod(&s),
            KArg::pod(&sc),
        ],
    );
    Ok(vec![out])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapse_merges_packed_axes_and_keeps_broadcasts() {
        // [2, 3, 4] + [3, 1]: the last axis broadcasts y.
        let out = [2usize, 3, 4];
        let so: Vec<i64> = packed_strides(&out).iter().map(|v| *v as i64).collect();
        let sy = broadcast_strides(&[3, 1], &out).unwrap();
        assert_eq!(sy, vec![0, 1, 0]);
        let (d, s) = collapse(&out, &[so.clone(), so.clone()]);
        assert_eq!(d, vec![24]);
        assert_eq!(s[0], vec![1]);
        let (d, s) = collapse(&out, &[so, sy]);
        assert_eq!(d, vec![2, 3, 4]);
        assert_eq!(s[1], vec![0, 1, 0]);
    }

    #[test]
    fn broadcast_rejects_mismatched_axes() {
        assert!(broadcast_strides(&[3], &[2, 4]).is_err());
        assert!(broadcast_strides(&[1, 2, 3], &[2, 3]).is_err());
    }
}
