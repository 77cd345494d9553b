//! Which consts are compressible weights, and reading them as f32.

use crate::CompressError;
use sd_mil::{Binding, ConstValue, DType, Function, Operation};
use std::collections::HashSet;

/// Names of consts that feed a `gather` as its table (embedding tables stay uncompressed, as
/// in Apple's converter).
pub fn gather_tables(f: &Function) -> HashSet<String> {
    f.operations
        .iter()
        .filter(|op| op.op_type == "gather" || op.op_type == "gather_nd")
        .filter_map(|op| op.input_name("x").map(str::to_string))
        .collect()
}

/// The const's value if the op is a float const of rank ≥ 2 with more than `threshold` elements.
pub fn candidate(op: &Operation, threshold: usize) -> Option<&ConstValue> {
    let v = op.const_value()?;
    (matches!(v.ty.dtype, DType::F16 | DType::F32)
        && v.ty.rank() >= 2
        && v.ty.element_count() > threshold)
        .then_some(v)
}

/// The weight's elements as f32; fails on non-finite values.
pub fn read_f32(name: &str, v: &ConstValue) -> Result<Vec<f32>, CompressError> {
    let data = v.to_f32_vec().ok_or_else(|| CompressError::BadWeight {
        name: name.into(),
        reason: "unreadable".into(),
    })?;
    if let Some(bad) = data.iter().find(|x| !x.is_finite()) {
        return Err(CompressError::BadWeight {
            name: name.into(),
            reason: format!("non-finite value {bad}"),
        });
    }
    Ok(data)
}

/// Fails when the weight holds a non-finite value (read straight from its fp16/fp32 bits; its
/// pages released after, so checking a memory-mapped model does not make it resident).
pub fn check_finite(name: &str, v: &ConstValue) -> Result<(), CompressError> {
    let bytes = v.bytes()?;
    let bad = match v.ty.dtype {
        DType::F16 => bytes
            .chunks_exact(2)
            .position(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7C00 == 0x7C00),
        _ => bytes
            .chunks_exact(4)
            .position(|c| !f32::from_le_bytes([c[0], c[1], c[2], c[3]]).is_finite()),
    };
    drop(bytes);
    v.release_pages();
    match bad {
        Some(i) => Err(CompressError::BadWeight {
            name: name.into(),
            reason: format!("non-finite value at element {i}"),
        }),
        None => Ok(()),
    }
}

/// Values rounded to the weight's own element type, then back to f32 (LUTs and scales are
/// stored in the weight's type).
pub fn to_dtype_bytes(values: &[f32], dtype: DType) -> Vec<u8> {
    match dtype {
        DType::F16 => values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
        _ => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// Weight bytes an op stores: a tensor `const`, or a constexpr op's stored values.
pub fn stored_bytes(op: &Operation) -> u64 {
    let size = |v: &ConstValue| {
        if v.ty.rank() > 0 && v.ty.dtype != DType::String {
            v.ty.storage_len() as u64
        } else {
            0
        }
    };
    if op.op_type == "const" {
        return op.const_value().map_or(0, size);
    }
    if op.op_type.starts_with("constexpr_") {
        let inline = op
            .inputs
            .iter()
            .flat_map(|(_, b)| b.iter())
            .filter_map(|b| match b {
                Binding::Value(v) => Some(v),
                Binding::Name(_) => None,
            });
        return op.attributes.values().chain(inline).map(size).sum();
    }
    0
}
