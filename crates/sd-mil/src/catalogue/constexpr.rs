//! Constants: `const`, and the compressed-weight ops decompressed when a model loads
//! (`constexpr_lut_to_dense`, `constexpr_affine_dequantize`, `constexpr_blockwise_shift_scale`).

use super::p::{konst, opt, req};
use super::{Default, InferCtx, OpSpec, ParamForm, TypeSet};
use crate::error::ProgramError;
use crate::{DType, Opset, TensorType};

fn constant(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    Ok(vec![ctx.ty("val")?.clone()])
}

const LUT_BITS: [usize; 5] = [1, 2, 4, 6, 8];

/// iOS16/17 form: `lut` T[2^n], `indices` u8 bytes packing n-bit indices, `shape` u32[K].
fn lut_to_dense_attr(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let (lut, idx) = (ctx.ty("lut")?, ctx.ty("indices")?);
    let shape = ctx.req_ints("shape")?;
    let count: i64 = shape.iter().product();
    let bits = LUT_BITS
        .iter()
        .copied()
        .find(|b| lut.shape == [1usize << b])
        .ok_or_else(|| {
            ctx.invalid(
                "lut",
                format!("{lut} is not a table of 2, 4, 16, 64 or 256 entries"),
            )
        })?;
    if idx.dtype != DType::U8 || idx.shape != [(count as usize * bits).div_ceil(8)] {
        return Err(ctx.invalid(
            "indices",
            format!("{idx} does not pack {count} {bits}-bit indices"),
        ));
    }
    Ok(vec![TensorType::new(
        lut.dtype,
        shape.into_iter().map(|d| d as usize).collect::<Vec<_>>(),
    )])
}

/// iOS18 form: `indices` uN with the output's shape, `lut` [..groups.., 2^n, vector_size].
fn lut_to_dense_input(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let (idx, lut) = (ctx.ty("indices")?, ctx.ty("lut")?);
    let r = idx.rank();
    if lut.rank() != r + 2 {
        return Err(ctx.invalid(
            "lut",
            format!("{lut} must have rank {} for indices {idx}", r + 2),
        ));
    }
    if lut.shape[r] != 1usize << idx.dtype.bits() {
        return Err(ctx.invalid(
            "lut",
            format!(
                "{lut} needs {} entries for {} indices",
                1usize << idx.dtype.bits(),
                idx.dtype
            ),
        ));
    }
    for i in 0..r {
        if lut.shape[i] == 0 || idx.shape[i] % lut.shape[i] != 0 {
            return Err(ctx.invalid(
                "lut",
                format!("group dimension {i} of {lut} does not divide {idx}"),
            ));
        }
    }
    let vector = lut.shape[r + 1];
    let mut shape = idx.shape.clone();
    if vector > 1 {
        let axis = ctx.axis("vector_axis", ctx.int_or("vector_axis", 0)?, r)?;
        shape[axis] *= vector;
    }
    Ok(vec![TensorType::new(lut.dtype, shape)])
}

fn affine_dequantize(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let (q, scale, zp) = (
        ctx.ty("quantized_data")?,
        ctx.ty("scale")?,
        ctx.ty("zero_point")?,
    );
    let axis = ctx.axis("axis", ctx.int_or("axis", 0)?, q.rank())?;
    for (name, t) in [("scale", scale), ("zero_point", zp)] {
        if t.rank() > 1 || (t.rank() == 1 && t.shape[0] != 1 && t.shape[0] != q.shape[axis]) {
            return Err(ctx.invalid(name, format!("{t} does not match axis {axis} of {q}")));
        }
    }
    ctx.same_dtype("zero_point", q.dtype, zp.dtype)?;
    Ok(vec![q.with_dtype(scale.dtype)])
}

fn blockwise_shift_scale(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError> {
    let (data, scale) = (ctx.ty("data")?, ctx.ty("scale")?);
    if scale.rank() != data.rank()
        || data
            .shape
            .iter()
            .zip(&scale.shape)
            .any(|(d, s)| *s == 0 || d % s != 0)
    {
        return Err(ctx.invalid("scale", format!("{scale} does not block {data}")));
    }
    if let Some(off) = ctx.opt_ty("offset")
        && off.shape != scale.shape
    {
        return Err(ctx.invalid(
            "offset",
            format!("{off} must have the shape of scale {scale}"),
        ));
    }
    Ok(vec![data.with_dtype(scale.dtype)])
}

const SUB_BYTE_INDEX: TypeSet = TypeSet(
    (1 << DType::U1 as u32)
        | (1 << DType::U2 as u32)
        | (1 << DType::U3 as u32)
        | (1 << DType::U4 as u32)
        | (1 << DType::U6 as u32)
        | (1 << DType::U8 as u32),
);

/// Constant ops.
pub(super) const OPS: &[OpSpec] = &[
    OpSpec {
        name: "const",
        params: &[konst(
            "val",
            TypeSet::ANY.or(TypeSet::STRING),
            Default::Required,
        )],
        since: Opset::CoreML5,
        until: None,
        form: ParamForm::Attributes,
        infer: constant,
    },
    OpSpec {
        name: "constexpr_lut_to_dense",
        params: &[
            konst("lut", TypeSet::STORAGE, Default::Required),
            konst("indices", TypeSet::STORAGE, Default::Required),
            konst("shape", TypeSet::STORAGE, Default::Required),
        ],
        since: Opset::CoreML6,
        until: Some(Opset::CoreML7),
        form: ParamForm::Attributes,
        infer: lut_to_dense_attr,
    },
    OpSpec {
        name: "constexpr_lut_to_dense",
        params: &[
            konst("indices", SUB_BYTE_INDEX, Default::Required),
            konst("lut", TypeSet::STORAGE, Default::Required),
            konst("vector_axis", TypeSet::INT32, Default::Absent),
        ],
        since: Opset::CoreML8,
        until: None,
        form: ParamForm::Inputs,
        infer: lut_to_dense_input,
    },
    OpSpec {
        name: "constexpr_affine_dequantize",
        params: &[
            konst("quantized_data", TypeSet::STORAGE, Default::Required),
            konst("zero_point", TypeSet::STORAGE, Default::Required),
            konst("scale", TypeSet::FLOAT, Default::Required),
            konst("axis", TypeSet::INT32, Default::Required),
        ],
        since: Opset::CoreML6,
        until: None,
        form: ParamForm::Attributes,
        infer: affine_dequantize,
    },
    OpSpec {
        name: "constexpr_blockwise_shift_scale",
        params: &[
            req("data", TypeSet::STORAGE),
            req("scale", TypeSet::FLOAT),
            opt("offset", TypeSet::STORAGE),
        ],
        since: Opset::CoreML8,
        until: None,
        form: ParamForm::Inputs,
        infer: blockwise_shift_scale,
    },
];
