//! Checks of prediction inputs beyond shape and element type: every float finite, and every
//! index fed to a `gather` (token ids into an embedding table) inside the gathered axis.

use crate::error::{Result, RuntimeError};
use crate::tensor::{HostDType, Tensor, TensorData};
use sd_mil::{DType, Function};
use std::collections::HashMap;

/// For each function input that reaches a `gather`'s `indices` (directly or through `cast`,
/// `identity`, `reshape`, `squeeze` or `expand_dims`), the size of the smallest gathered axis:
/// valid values are `-size..size` (MIL's `gather` counts negative indices from the end).
pub(crate) fn index_bounds(f: &Function) -> HashMap<String, usize> {
    const PASS_THROUGH: &[&str] = &["cast", "identity", "reshape", "squeeze", "expand_dims"];
    // Which input each value carries unchanged (up to type and layout).
    let mut carries: HashMap<&str, &str> = f
        .inputs
        .iter()
        .map(|v| (v.name.as_str(), v.name.as_str()))
        .collect();
    let types: HashMap<&str, &sd_mil::TensorType> = f
        .inputs
        .iter()
        .map(|v| (v.name.as_str(), &v.ty))
        .chain(
            f.operations
                .iter()
                .flat_map(|op| op.outputs.iter().map(|v| (v.name.as_str(), &v.ty))),
        )
        .collect();
    let mut bounds: HashMap<String, usize> = HashMap::new();
    for op in &f.operations {
        if PASS_THROUGH.contains(&op.op_type.as_str())
            && let Some(src) = op.input_name("x").and_then(|x| carries.get(x).copied())
            && let Some(out) = op.outputs.first()
        {
            carries.insert(out.name.as_str(), src);
        }
        if op.op_type != "gather" {
            continue;
        }
        let (Some(input), Some(x)) = (
            op.input_name("indices")
                .and_then(|i| carries.get(i).copied()),
            op.input_name("x").and_then(|x| types.get(x)),
        ) else {
            continue;
        };
        let axis = op
            .input("axis")
            .and_then(|b| match b {
                [sd_mil::Binding::Value(v)] => first_i64(v),
                [sd_mil::Binding::Name(n)] => f
                    .operations
                    .iter()
                    .find(|o| o.outputs.first().is_some_and(|v| &v.name == n))
                    .and_then(|o| o.const_value())
                    .and_then(first_i64),
                _ => None,
            })
            .unwrap_or(0);
        let rank = x.shape.len() as i64;
        let axis = if axis < 0 { axis + rank } else { axis };
        if let Some(&size) = usize::try_from(axis).ok().and_then(|a| x.shape.get(a)) {
            let b = bounds.entry(input.to_string()).or_insert(size);
            *b = (*b).min(size);
        }
    }
    bounds
}

/// The single integer of a scalar constant.
fn first_i64(v: &sd_mil::ConstValue) -> Option<i64> {
    match v.to_i64_vec()?.as_slice() {
        [x] => Some(*x),
        _ => None,
    }
}

/// Checks the values of input `name`: no NaN or infinity in float data; with an index
/// `bound`, every value a whole number in `-bound..bound`.
pub(crate) fn check_values(name: &str, t: &Tensor, bound: Option<usize>) -> Result<()> {
    let bad = |index: usize, reason: String| RuntimeError::InputValue {
        name: name.to_string(),
        index,
        reason,
    };
    let floats: Box<dyn Iterator<Item = f64>> = match &t.data {
        TensorData::F32(v) => Box::new(v.iter().map(|x| f64::from(*x))),
        TensorData::F16(v) => Box::new(v.iter().map(|x| f64::from(x.to_f32()))),
        TensorData::I32(v) => Box::new(v.iter().map(|x| f64::from(*x))),
    };
    for (i, x) in floats.enumerate() {
        if !x.is_finite() {
            return Err(bad(i, format!("{x} is not a finite number")));
        }
        if let Some(b) = bound {
            let b = b as f64;
            if x.fract() != 0.0 || x < -b || x >= b {
                return Err(bad(
                    i,
                    format!(
                        "{x} is not an index into the model's table of {b} entries \
                         (for token ids: outside the vocabulary)"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// "NaN" when `t` holds a NaN, "infinity" when it holds an infinity and no NaN, else None.
pub(crate) fn non_finite(t: &Tensor) -> Option<&'static str> {
    let (nan, inf) = match &t.data {
        TensorData::F32(v) => (
            v.iter().any(|x| x.is_nan()),
            v.iter().any(|x| x.is_infinite()),
        ),
        TensorData::F16(v) => (
            v.iter().any(|x| x.is_nan()),
            v.iter().any(|x| x.is_infinite()),
        ),
        TensorData::I32(_) => (false, false),
    };
    if nan {
        Some("NaN")
    } else if inf {
        Some("infinity")
    } else {
        None
    }
}

/// Checks one input against its feature: shape, element type, element count, then values
/// ([`check_values`], with `bound` the table size when the input indexes a gather).
pub(crate) fn check_input(
    feat: &sd_mil::FeatureDescription,
    t: &Tensor,
    bound: Option<usize>,
) -> Result<()> {
    if t.shape != feat.shape {
        return Err(RuntimeError::InputShape {
            name: feat.name.clone(),
            got: t.shape.clone(),
            expected: feat.shape.clone(),
        });
    }
    let want = feat.dtype.dtype();
    let ok = match t.dtype() {
        HostDType::F32 | HostDType::F16 => want.is_float(),
        HostDType::I32 => want == DType::I32,
    };
    if !ok {
        return Err(RuntimeError::InputDType {
            name: feat.name.clone(),
            got: t.dtype().to_string(),
            expected: want.to_string(),
        });
    }
    if t.len() != t.shape.iter().product::<usize>() {
        return Err(RuntimeError::Tensor {
            name: feat.name.clone(),
            reason: format!("{} elements for shape {:?}", t.len(), t.shape),
        });
    }
    check_values(&feat.name, t, bound)
}

/// Refuses an input that is none of the model's features (`features`: their names).
pub(crate) fn known_inputs<'a>(
    inputs: &HashMap<String, Tensor>,
    features: impl Iterator<Item = &'a str> + Clone,
) -> Result<()> {
    for name in inputs.keys() {
        if !features.clone().any(|f| f == name) {
            return Err(RuntimeError::UnknownInput {
                name: name.clone(),
                expected: features.collect::<Vec<_>>().join(", "),
            });
        }
    }
    Ok(())
}
