//! Linear 8-bit quantization: per output channel, symmetric int8 with scale max|w|/127.
//!
//! Up to iOS17 the pass writes `constexpr_affine_dequantize` (attributes: int8 data, zero
//! point 0, one scale per channel along axis 0); from iOS18 `constexpr_blockwise_shift_scale`
//! (inputs: int8 data, scale of the data's rank with one block per output channel).

use crate::weights::{candidate, gather_tables, read_f32, stored_bytes, to_dtype_bytes};
use crate::{CompressError, CompressReport};
use rayon::prelude::*;
use sd_mil::{Binding, ConstValue, DType, Operation, Opset, Program, TensorType, Var};
use std::collections::BTreeMap;

/// Quantized weight: int8 values and one scale per output channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantized {
    /// `round(w / scale)` clamped to [−127, 127].
    pub data: Vec<i8>,
    /// Per output channel scale (1 for an all-zero channel).
    pub scales: Vec<f32>,
}

/// Quantizes `values` laid out as `channels` equal blocks.
pub fn quantize_values(values: &[f32], channels: usize) -> Quantized {
    let block = values.len() / channels;
    let scales: Vec<f32> = values
        .chunks(block)
        .map(|c| {
            let m = c.iter().fold(0f32, |m, v| m.max(v.abs()));
            if m > 0.0 { m / 127.0 } else { 1.0 }
        })
        .collect();
    let data = values
        .chunks(block)
        .zip(&scales)
        .flat_map(|(c, s)| {
            c.iter()
                .map(move |v| (v / s).round().clamp(-127.0, 127.0) as i8)
        })
        .collect();
    Quantized { data, scales }
}

fn quant_op(op: &Operation, v: &ConstValue, opset: Opset) -> Result<Operation, CompressError> {
    let values = read_f32(&op.name, v)?;
    let channels = v.ty.shape[0];
    let q = quantize_values(&values, channels);
    let data = ConstValue::from_bytes(
        TensorType::new(DType::I8, v.ty.shape.clone()),
        q.data.iter().map(|&x| x as u8).collect::<Vec<_>>(),
    )?;
    let scale_bytes = to_dtype_bytes(&q.scales, v.ty.dtype);
    let mut attributes = BTreeMap::new();
    let mut inputs = Vec::new();
    let op_type = if opset >= Opset::CoreML8 {
        let mut shape = vec![1; v.ty.rank()];
        shape[0] = channels;
        let scale = ConstValue::from_bytes(TensorType::new(v.ty.dtype, shape), scale_bytes)?;
        inputs.push(("data".to_string(), vec![Binding::Value(data)]));
        inputs.push(("scale".to_string(), vec![Binding::Value(scale)]));
        "constexpr_blockwise_shift_scale"
    } else {
        attributes.insert("quantized_data".to_string(), data);
        attributes.insert(
            "zero_point".to_string(),
            ConstValue::from_bytes(TensorType::new(DType::I8, [channels]), vec![0u8; channels])?,
        );
        attributes.insert(
            "scale".to_string(),
            ConstValue::from_bytes(TensorType::new(v.ty.dtype, [channels]), scale_bytes)?,
        );
        attributes.insert("axis".to_string(), ConstValue::scalar_i32(0));
        "constexpr_affine_dequantize"
    };
    Ok(Operation {
        op_type: op_type.into(),
        name: op.name.clone(),
        inputs,
        outputs: vec![Var::new(op.outputs[0].name.clone(), v.ty.clone())],
        attributes,
    })
}

/// Quantizes every eligible weight (float consts of rank ≥ 2 with more than `weight_threshold`
/// elements, embedding tables excepted) of `main` to 8 bits in place.
pub fn quantize_linear8(
    program: &mut Program,
    weight_threshold: usize,
) -> Result<CompressReport, CompressError> {
    let f = program.main_mut().ok_or(CompressError::NoMain)?;
    let opset = f.opset;
    let tables = gather_tables(f);
    let jobs: Vec<usize> = f
        .operations
        .iter()
        .enumerate()
        .filter(|(_, op)| {
            candidate(op, weight_threshold).is_some() && !tables.contains(&op.outputs[0].name)
        })
        .map(|(i, _)| i)
        .collect();
    let replaced: Vec<(usize, Operation, u64)> = jobs
        .par_iter()
        .map(|&i| {
            let op = &f.operations[i];
            let v = op.const_value().expect("candidate is a const");
            Ok((i, quant_op(op, v, opset)?, v.ty.storage_len() as u64))
        })
        .collect::<Result<_, CompressError>>()?;
    let mut report = CompressReport::default();
    for (i, op, before) in replaced {
        report.weights += 1;
        report.bytes_before += before;
        report.bytes_after += stored_bytes(&op);
        f.operations[i] = op;
    }
    sd_mil::graph::check_function(f).map_err(sd_mil::MilError::from)?;
    Ok(report)
}
