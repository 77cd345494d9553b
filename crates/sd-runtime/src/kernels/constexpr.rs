//! Load-time decompression of the constexpr ops: `constexpr_lut_to_dense` (iOS16/17
//! attribute form and iOS18 input form with per-group palettes and vectors),
//! `constexpr_affine_dequantize`, `constexpr_blockwise_shift_scale`.

use sd_mil::{Binding, ConstValue, DType, Operation, TensorType};

/// Whether an op type is decompressed at load.
pub fn is_constexpr(op_type: &str) -> bool {
    matches!(
        op_type,
        "constexpr_lut_to_dense"
            | "constexpr_affine_dequantize"
            | "constexpr_blockwise_shift_scale"
    )
}

fn ints(v: &ConstValue) -> Result<Vec<i64>, String> {
    if v.ty.dtype == DType::I4 {
        let b = v.bytes().map_err(|e| e.to_string())?;
        return Ok(sd_mil::blob::unpack_i4(&b, v.ty.element_count())
            .into_iter()
            .map(|x| x as i64)
            .collect());
    }
    v.to_i64_vec()
        .ok_or_else(|| format!("cannot read {} as integers", v.ty))
}

fn floats(v: &ConstValue) -> Result<Vec<f32>, String> {
    if v.ty.dtype == DType::I4 {
        return Ok(ints(v)?.into_iter().map(|x| x as f32).collect());
    }
    v.to_f32_vec()
        .ok_or_else(|| format!("cannot read {} as numbers", v.ty))
}

/// Row-major strides.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Decompresses a constexpr op. `get` returns the constant bound to a parameter (attribute,
/// inline value or const op). Returns the dense values (as f32) and the output type.
pub fn decompress(
    op: &Operation,
    get: &dyn Fn(&str) -> Option<ConstValue>,
) -> Result<(Vec<f32>, TensorType), String> {
    let req = |p: &str| get(p).ok_or_else(|| format!("parameter `{p}` is missing or not constant"));
    let out_ty = op.outputs.first().ok_or("op has no output")?.ty.clone();
    let values = match op.op_type.as_str() {
        "constexpr_lut_to_dense"
            if op.attributes.contains_key("lut") || op.attributes.contains_key("shape") =>
        {
            // iOS16/17: lut [2^n], indices u8 bit-packed, shape u32.
            let lut = floats(&req("lut")?)?;
            let idx = req("indices")?;
            let bits = lut.len().trailing_zeros();
            let count = out_ty.element_count();
            let b = idx.bytes().map_err(|e| e.to_string())?;
            if b.len() * 8 < count * bits as usize {
                return Err(format!(
                    "{} index bytes cannot hold {count} {bits}-bit indices",
                    b.len()
                ));
            }
            sd_mil::blob::unpack_bits(&b, bits, count)
                .into_iter()
                .map(|i| lut[i as usize])
                .collect()
        }
        "constexpr_lut_to_dense" => {
            // iOS18: indices typed with the output's (pre-vector) shape; lut [groups…, P, V].
            let idx_v = req("indices")?;
            let lut_v = req("lut")?;
            let idx = ints(&idx_v)?;
            let lut = floats(&lut_v)?;
            let ishape = idx_v.ty.shape.clone();
            let lshape = lut_v.ty.shape.clone();
            let r = ishape.len();
            if lshape.len() != r + 2 {
                return Err(format!(
                    "lut {} does not match indices {}",
                    lut_v.ty, idx_v.ty
                ));
            }
            let (np, vs) = (lshape[r], lshape[r + 1]);
            let vaxis = match get("vector_axis") {
                Some(v) => {
                    let a = ints(&v)?.first().copied().unwrap_or(0);
                    (if a < 0 { a + r as i64 } else { a }) as usize
                }
                None => 0,
            };
            let block: Vec<usize> = (0..r).map(|i| ishape[i] / lshape[i].max(1)).collect();
            let lstr = strides(&lshape);
            let istr = strides(&ishape);
            let oshape = out_ty.shape.clone();
            let ostr = strides(&oshape);
            let mut out = vec![0f32; out_ty.element_count()];
            for (lin, &k) in idx.iter().enumerate() {
                if k as usize >= np {
                    return Err(format!("index {k} is outside a palette of {np}"));
                }
                let mut base = 0;
                let mut opos = 0;
                for d in 0..r {
                    let c = (lin / istr[d]) % ishape[d];
                    base += (c / block[d]) * lstr[d];
                    opos += if d == vaxis {
                        c * vs * ostr[d]
                    } else {
                        c * ostr[d]
                    };
                }
                base += k as usize * lstr[r];
                for v in 0..vs {
                    out[opos + v * ostr[vaxis]] = lut[base + v];
                }
            }
            out
        }
        "constexpr_affine_dequantize" => {
            let q = req("quantized_data")?;
            let qv = ints(&q)?;
            let zp = floats(&req("zero_point")?)?;
            let scale = floats(&req("scale")?)?;
            let axis = get("axis")
                .map(|a| ints(&a))
                .transpose()?
                .and_then(|v| v.first().copied())
                .unwrap_or(0);
            let shape = q.ty.shape.clone();
            let a = (if axis < 0 {
                axis + shape.len() as i64
            } else {
                axis
            }) as usize;
            let st = strides(&shape);
            qv.iter()
                .enumerate()
                .map(|(i, &v)| {
                    let c = if shape.is_empty() {
                        0
                    } else {
                        (i / st[a]) % shape[a]
                    };
                    let s = if scale.len() == 1 { scale[0] } else { scale[c] };
                    let z = if zp.len() == 1 { zp[0] } else { zp[c] };
                    s * (v as f32 - z)
                })
                .collect()
        }
        "constexpr_blockwise_shift_scale" => {
            let data = req("data")?;
            let dv = floats(&data)?;
            let sv = req("scale")?;
            let scale = floats(&sv)?;
            let offset = get("offset").map(|o| floats(&o)).transpose()?;
            let dshape = data.ty.shape.clone();
            let sshape = sv.ty.shape.clone();
            if sshape.len() != dshape.len() {
                return Err(format!("scale {} does not block data {}", sv.ty, data.ty));
            }
            let block: Vec<usize> = (0..dshape.len())
                .map(|i| dshape[i] / sshape[i].max(1))
                .collect();
            let dst = strides(&dshape);
            let sst = strides(&sshape);
            dv.iter()
                .enumerate()
                .map(|(i, &v)| {
                    let mut si = 0;
                    for d in 0..dshape.len() {
                        si += ((i / dst[d]) % dshape[d]) / block[d] * sst[d];
                    }
                    let o = offset.as_ref().map_or(0.0, |o| o[si]);
                    scale[si] * (v - o)
                })
                .collect()
        }
        other => return Err(format!("`{other}` is not a constexpr op")),
    };
    if values.len() != out_ty.element_count() {
        return Err(format!(
            "decompressed {} values for output {}",
            values.len(),
            out_ty
        ));
    }
    Ok((values, out_ty))
}

/// The constant bound to an op parameter: an attribute, an inline value, or (through
/// `by_name`) a const op's value.
pub fn bound_const(
    op: &Operation,
    param: &str,
    by_name: &dyn Fn(&str) -> Option<ConstValue>,
) -> Option<ConstValue> {
    if let Some(v) = op.attributes.get(param) {
        return Some(v.clone());
    }
    match op.input(param)? {
        [Binding::Value(v)] => Some(v.clone()),
        [Binding::Name(n)] => by_name(n),
        _ => None,
    }
}
