//! Helpers over burn's primitive float ops, shared by the kernels.

use super::{KResult, KernelError};
use crate::backend::RtBackend;
use burn_tensor::ops::{BoolTensor, FloatTensor, IntTensor};
use burn_tensor::{BoolDType, FloatDType, Shape, Slice, TensorData, TensorMetadata};

/// A float tensor from host values.
/// Rank-0 values are held with shape [1] (burn's CPU backend cannot reshape to rank 0).
pub fn from_vec<B: RtBackend>(v: Vec<f32>, shape: &[usize], device: &B::Device) -> FloatTensor<B> {
    let shape: &[usize] = if shape.is_empty() { &[1] } else { shape };
    B::float_from_data(TensorData::new(v, shape.to_vec()), device)
}

/// Host values of a float tensor.
pub fn to_vec<B: RtBackend>(t: FloatTensor<B>) -> Vec<f32> {
    let data = burn_tensor::try_read_sync(B::float_into_data(t))
        .expect("blocking read")
        .expect("tensor read");
    data.convert::<f32>().into_vec::<f32>().expect("f32 data")
}

/// Dimensions.
pub fn dims<B: RtBackend>(t: &FloatTensor<B>) -> Vec<usize> {
    t.shape().to_vec()
}

/// Reshape.
pub fn reshape<B: RtBackend>(t: FloatTensor<B>, shape: &[usize]) -> FloatTensor<B> {
    let shape: &[usize] = if shape.is_empty() { &[1] } else { shape };
    if dims::<B>(&t) == shape {
        return t;
    }
    B::float_reshape(t, Shape::from(shape.to_vec()))
}

/// Permute axes.
pub fn permute<B: RtBackend>(t: FloatTensor<B>, perm: &[usize]) -> FloatTensor<B> {
    if perm.iter().enumerate().all(|(i, p)| i == *p) {
        return t;
    }
    B::float_permute(t, perm)
}

/// Adds leading unit dimensions up to `rank`.
pub fn to_rank<B: RtBackend>(t: FloatTensor<B>, rank: usize) -> FloatTensor<B> {
    let d = dims::<B>(&t);
    if d.len() >= rank {
        return t;
    }
    let mut s = vec![1; rank - d.len()];
    s.extend(d);
    reshape::<B>(t, &s)
}

/// Numpy broadcast of two shapes.
pub fn broadcast(a: &[usize], b: &[usize]) -> KResult<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let x = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let y = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        out[i] = match (x, y) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(KernelError::new(format!(
                    "shapes {a:?} and {b:?} do not broadcast"
                )));
            }
        };
    }
    Ok(out)
}

/// Expands a tensor to a broadcast shape (rank first, then unit dimensions).
pub fn expand<B: RtBackend>(t: FloatTensor<B>, shape: &[usize]) -> FloatTensor<B> {
    let t = to_rank::<B>(t, shape.len());
    if dims::<B>(&t) == shape {
        return t;
    }
    B::float_expand(t, Shape::from(shape.to_vec()))
}

/// Broadcasts a tensor to `shape` with real copies along each broadcast dim (a packed
/// tensor, where [`expand`] gives a stride-0 view).
pub fn repeat_to<B: RtBackend>(t: FloatTensor<B>, shape: &[usize]) -> FloatTensor<B> {
    let mut t = to_rank::<B>(t, shape.len());
    let d = dims::<B>(&t);
    for (axis, (&have, &want)) in d.iter().zip(shape).enumerate() {
        if have == 1 && want > 1 {
            t = B::float_cat(vec![t; want], axis);
        }
    }
    t
}

/// Brings two operands to one broadcast shape.
pub fn broadcast_pair<B: RtBackend>(
    a: FloatTensor<B>,
    b: FloatTensor<B>,
) -> KResult<(FloatTensor<B>, FloatTensor<B>)> {
    let s = broadcast(&dims::<B>(&a), &dims::<B>(&b))?;
    Ok((expand::<B>(a, &s), expand::<B>(b, &s)))
}

/// Normalizes a possibly negative axis.
pub fn axis(a: i64, rank: usize) -> KResult<usize> {
    let r = rank as i64;
    let v = if a < 0 { a + r } else { a };
    if (0..r.max(1)).contains(&v) {
        Ok(v as usize)
    } else {
        Err(KernelError::new(format!(
            "axis {a} is out of range for rank {rank}"
        )))
    }
}

/// `t[.., start..end, ..]` on one axis ([`RtBackend::narrow`]: a view where the backend can).
pub fn narrow<B: RtBackend>(
    t: FloatTensor<B>,
    axis: usize,
    start: usize,
    end: usize,
) -> FloatTensor<B> {
    B::narrow(t, axis, start, end)
}

/// `t[.., start..end, ..]` on one axis with burn's `float_slice` (the default of
/// [`RtBackend::narrow`]).
pub fn narrow_generic<B: RtBackend>(
    t: FloatTensor<B>,
    axis: usize,
    start: usize,
    end: usize,
) -> FloatTensor<B> {
    let d = dims::<B>(&t);
    let slices: Vec<Slice> = d
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            if i == axis {
                Slice::new(start as isize, Some(end as isize), 1)
            } else {
                Slice::new(0, Some(n as isize), 1)
            }
        })
        .collect();
    B::float_slice(t, &slices)
}

/// Concatenation.
pub fn cat<B: RtBackend>(ts: Vec<FloatTensor<B>>, axis: usize) -> FloatTensor<B> {
    if ts.len() == 1 {
        return ts.into_iter().next().unwrap();
    }
    B::float_cat(ts, axis)
}

/// Int tensor (backend default int type) from host indices.
pub fn int_from_vec<B: RtBackend>(
    v: Vec<i64>,
    shape: &[usize],
    device: &B::Device,
) -> IntTensor<B> {
    B::int_from_data(TensorData::new(v, shape.to_vec()), device)
}

/// Float 0/1 → bool mask.
pub fn to_mask<B: RtBackend>(t: FloatTensor<B>) -> BoolTensor<B> {
    let dt: BoolDType =
        burn_tensor::backend::get_device_settings::<B>(&B::float_device(&t)).bool_dtype;
    B::float_not_equal_elem(t, 0.0f32.into(), dt)
}

/// Bool mask → float 0/1.
pub fn from_mask<B: RtBackend>(m: BoolTensor<B>) -> FloatTensor<B> {
    B::bool_into_float(m, FloatDType::F32)
}

/// A float tensor filled with one value.
pub fn full<B: RtBackend>(shape: &[usize], v: f32, device: &B::Device) -> FloatTensor<B> {
    let shape: &[usize] = if shape.is_empty() { &[1] } else { shape };
    B::float_full(
        Shape::from(shape.to_vec()),
        v.into(),
        device,
        FloatDType::F32,
    )
}
