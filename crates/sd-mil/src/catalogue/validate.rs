//! Checking one op against the catalogue and inferring its output types.

use super::{InferCtx, ParamForm, ParamKind, lookup};
use crate::error::ProgramError;
use crate::program::{Binding, Operation};
use crate::{ConstValue, Opset, TensorType};

/// What a type rule knows of a value: its type and, if known at build time, its constant value.
#[derive(Debug, Clone, Copy)]
pub struct ValueInfo<'a> {
    /// Type of the value.
    pub ty: &'a TensorType,
    /// Its value, when it is a constant.
    pub konst: Option<&'a ConstValue>,
}

/// Checks `op` against the catalogue entry for `opset` — known op, known and required
/// parameters, accepted types — and returns the output types its type rule gives.
///
/// `values` resolves a bound value name to its type and constant value.
pub fn infer_op<'a>(
    op: &'a Operation,
    opset: Opset,
    values: &dyn Fn(&str) -> Option<ValueInfo<'a>>,
) -> Result<Vec<TensorType>, ProgramError> {
    let spec = lookup(&op.op_type, opset).ok_or_else(|| {
        if super::is_known(&op.op_type) {
            ProgramError::NotInOpset {
                op: op.name.clone(),
                op_type: op.op_type.clone(),
                opset: opset.name().to_string(),
            }
        } else {
            ProgramError::UnknownOp {
                op: op.name.clone(),
                op_type: op.op_type.clone(),
            }
        }
    })?;
    let unknown = |param: &str| ProgramError::UnknownParam {
        op: op.name.clone(),
        op_type: op.op_type.clone(),
        param: param.to_string(),
    };

    let mut args: Vec<(&'a str, Vec<ValueInfo<'a>>)> = Vec::new();
    match spec.form {
        ParamForm::Inputs => {
            for (param, bindings) in &op.inputs {
                let infos = bindings
                    .iter()
                    .map(|b| match b {
                        Binding::Name(n) => values(n).ok_or_else(|| ProgramError::UndefinedValue {
                            op: op.name.clone(),
                            name: n.clone(),
                        }),
                        Binding::Value(v) => Ok(ValueInfo {
                            ty: &v.ty,
                            konst: Some(v),
                        }),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                args.push((param.as_str(), infos));
            }
            if let Some(attr) = op.attributes.keys().next() {
                return Err(unknown(attr));
            }
        }
        ParamForm::Attributes => {
            if let Some((param, _)) = op.inputs.first() {
                return Err(unknown(param));
            }
            for (param, v) in &op.attributes {
                args.push((
                    param.as_str(),
                    vec![ValueInfo {
                        ty: &v.ty,
                        konst: Some(v),
                    }],
                ));
            }
        }
    }

    for (param, infos) in &args {
        let ps = spec
            .param(param)
            .filter(|ps| opset >= ps.since)
            .ok_or_else(|| unknown(param))?;
        if infos.is_empty() || (infos.len() > 1 && ps.kind != ParamKind::Variadic) {
            return Err(ProgramError::InvalidValue {
                op: op.name.clone(),
                op_type: op.op_type.clone(),
                param: param.to_string(),
                reason: format!(
                    "expected {} binding(s), got {}",
                    if ps.kind == ParamKind::Variadic {
                        "1 or more"
                    } else {
                        "1"
                    },
                    infos.len()
                ),
            });
        }
        for info in infos {
            if !ps.types.contains(info.ty.dtype) {
                return Err(ProgramError::WrongType {
                    op: op.name.clone(),
                    op_type: op.op_type.clone(),
                    param: param.to_string(),
                    expected: ps.types.names(),
                    found: info.ty.to_string(),
                });
            }
            if ps.kind == ParamKind::Const && info.konst.is_none() {
                return Err(ProgramError::NotConst {
                    op: op.name.clone(),
                    op_type: op.op_type.clone(),
                    param: param.to_string(),
                });
            }
        }
    }
    for (param, infos) in &args {
        let Some((other, until)) = spec.param(param).and_then(|ps| ps.same_dtype_as) else {
            continue;
        };
        if until.is_some_and(|u| opset > u) {
            continue;
        }
        let want = args
            .iter()
            .find(|(p, _)| *p == other)
            .and_then(|(_, v)| v.first())
            .map(|v| v.ty.dtype);
        if let (Some(want), Some(found)) = (want, infos.first().map(|v| v.ty.dtype))
            && want != found
        {
            return Err(ProgramError::WrongType {
                op: op.name.clone(),
                op_type: op.op_type.clone(),
                param: param.to_string(),
                expected: format!("{want} (the type of `{other}`)"),
                found: found.name().to_string(),
            });
        }
    }
    for ps in spec
        .params
        .iter()
        .filter(|p| p.required() && opset >= p.since)
    {
        if !args.iter().any(|(p, _)| *p == ps.name) {
            return Err(ProgramError::MissingInput {
                op: op.name.clone(),
                op_type: op.op_type.clone(),
                param: ps.name.to_string(),
            });
        }
    }
    let ctx = InferCtx {
        op: &op.name,
        op_type: &op.op_type,
        opset,
        args,
    };
    (spec.infer)(&ctx)
}
