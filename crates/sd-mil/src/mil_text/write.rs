//! Program → MIL text, in the syntax Apple's compiler writes into `model.mil`.

use super::literal::{format_float, quote};
use crate::builder::is_identifier;
use crate::catalogue::{self, ParamKind};
use crate::program::{Binding, Function, Operation, Opset, Program, Var};
use crate::proto::WEIGHT_FILE_NAME;
use crate::{ConstValue, DType, MilError, ProgramError, TensorType};
use half::{bf16, f16};
use std::fmt::Write;

/// Where a constant goes: `Some(offset)` for a blob at that metadata offset of
/// `@model_path/weights/weight.bin`, `None` to write it inline.
pub type BlobPlacement<'a> = dyn FnMut(&ConstValue) -> Result<Option<u64>, MilError> + 'a;

/// The placement that keeps every constant where it is: a blob of a `weight.bin` at its
/// offset there, anything else inline (for printing a model read from a package or an
/// `.mlmodelc`, whose one weight file the offsets refer to).
pub fn stored_offsets(v: &ConstValue) -> Result<Option<u64>, MilError> {
    Ok(match &v.data {
        crate::ConstData::Blob { offset, .. } => Some(*offset),
        _ => None,
    })
}

/// The MIL text version a program is written as: `1.3` when a function uses the iOS18
/// opset (scalars written `fp16(…)`), else `1.0` (scalars written `tensor<fp16, []>(…)`).
pub fn text_version(p: &Program) -> &'static str {
    if p.functions.values().any(|f| f.opset >= Opset::CoreML8) {
        "1.3"
    } else {
        "1.0"
    }
}

/// The opset name MIL text uses for a function (`ios16`, …).
pub fn opset_text(o: Opset) -> &'static str {
    match o {
        Opset::CoreML5 => "ios15",
        Opset::CoreML6 => "ios16",
        Opset::CoreML7 => "ios17",
        Opset::CoreML8 => "ios18",
    }
}

/// Writes `p` as MIL text; `place` decides which constants are blob references. Fails for a
/// value name that is not a MIL identifier, or a constant that has no text form.
pub fn program_text(p: &Program, place: &mut BlobPlacement<'_>) -> Result<String, MilError> {
    let w = TextWriter {
        bare_scalars: text_version(p) == "1.3",
    };
    let mut s = format!("program({})\n", text_version(p));
    if !p.build_info.is_empty() {
        let st = w.type_text(&TensorType::scalar(DType::String));
        let pairs: Vec<String> = p
            .build_info
            .iter()
            .map(|(k, v)| format!("{{{}, {}}}", quote(k), quote(v)))
            .collect();
        let _ = writeln!(
            s,
            "[buildInfo = dict<{st}, {st}>({{{}}})]",
            pairs.join(", ")
        );
    }
    s.push_str("{\n");
    for (name, f) in &p.functions {
        w.function(&mut s, name, f, place)?;
    }
    s.push_str("}\n");
    Ok(s)
}

struct TextWriter {
    bare_scalars: bool,
}

fn identifier(name: &str) -> Result<&str, MilError> {
    if is_identifier(name) {
        Ok(name)
    } else {
        Err(ProgramError::BadIdentifier { name: name.into() }.into())
    }
}

impl TextWriter {
    fn type_text(&self, ty: &TensorType) -> String {
        if ty.shape.is_empty() && self.bare_scalars {
            return ty.dtype.name().to_string();
        }
        let dims: Vec<String> = ty.shape.iter().map(|d| d.to_string()).collect();
        format!("tensor<{}, [{}]>", ty.dtype.name(), dims.join(", "))
    }

    /// `type name` for each value (function inputs, op outputs).
    fn declarations(&self, vars: &[Var]) -> Result<Vec<String>, MilError> {
        vars.iter()
            .map(|v| {
                Ok(format!(
                    "{} {}",
                    self.type_text(&v.ty),
                    identifier(&v.name)?
                ))
            })
            .collect()
    }

    fn function(
        &self,
        s: &mut String,
        name: &str,
        f: &Function,
        place: &mut BlobPlacement<'_>,
    ) -> Result<(), MilError> {
        let inputs = self.declarations(&f.inputs)?;
        let _ = writeln!(
            s,
            "    func {}<{}>({}) {{",
            identifier(name)?,
            opset_text(f.opset),
            inputs.join(", ")
        );
        for op in &f.operations {
            s.push_str("            ");
            self.operation(s, op, f.opset, place)?;
            s.push_str(";\n");
        }
        let outs = f
            .outputs
            .iter()
            .map(|o| identifier(o))
            .collect::<Result<Vec<_>, _>>()?;
        let _ = writeln!(s, "    }} -> ({});", outs.join(", "));
        Ok(())
    }

    fn operation(
        &self,
        s: &mut String,
        op: &Operation,
        opset: Opset,
        place: &mut BlobPlacement<'_>,
    ) -> Result<(), MilError> {
        let outs = self.declarations(&op.outputs)?;
        let spec = catalogue::lookup(&op.op_type, opset);
        let mut params: Vec<&(String, Vec<Binding>)> = op.inputs.iter().collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let mut args = Vec::with_capacity(params.len());
        for (param, bindings) in params {
            let variadic = spec
                .and_then(|s| s.params.iter().find(|p| p.name == param))
                .is_some_and(|p| p.kind == ParamKind::Variadic);
            let parts = bindings
                .iter()
                .map(|b| match b {
                    Binding::Name(n) => identifier(n).map(str::to_string),
                    Binding::Value(v) => self.value(v, place),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let arg = if variadic || parts.len() != 1 {
                format!("({})", parts.join(", "))
            } else {
                parts.into_iter().next().unwrap_or_default()
            };
            args.push(format!("{} = {arg}", identifier(param)?));
        }
        let mut attrs = vec![(
            "name",
            self.value(&ConstValue::string(op.name.clone()), place)?,
        )];
        for (k, v) in &op.attributes {
            attrs.push((identifier(k)?, self.value(v, place)?));
        }
        attrs.sort_by(|a, b| a.0.cmp(b.0));
        let attrs: Vec<String> = attrs.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        let _ = write!(
            s,
            "{} = {}({})[{}]",
            outs.join(", "),
            identifier(&op.op_type)?,
            args.join(", "),
            attrs.join(", ")
        );
        Ok(())
    }

    fn value(&self, v: &ConstValue, place: &mut BlobPlacement<'_>) -> Result<String, MilError> {
        let ty = self.type_text(&v.ty);
        if let Some(offset) = place(v)? {
            let path_ty = self.type_text(&TensorType::scalar(DType::String));
            let offset_ty = self.type_text(&TensorType::scalar(DType::U64));
            return Ok(format!(
                "{ty}(BLOBFILE(path = {path_ty}({}), offset = {offset_ty}({offset})))",
                quote(WEIGHT_FILE_NAME)
            ));
        }
        let elems = elements(v)?;
        Ok(if v.ty.shape.is_empty() {
            format!("{ty}({})", elems.join(", "))
        } else {
            format!("{ty}([{}])", elems.join(", "))
        })
    }
}

/// The elements of a constant as MIL text literals, flattened in row-major order.
pub fn elements(v: &ConstValue) -> Result<Vec<String>, MilError> {
    if let Some(strings) = v.strings() {
        return Ok(strings.iter().map(|s| quote(s)).collect());
    }
    let b = v.bytes()?;
    let n = v.ty.element_count();
    let floats = |width: usize, f: &dyn Fn(&[u8]) -> f64| -> Vec<String> {
        b.chunks_exact(width).map(|c| format_float(f(c))).collect()
    };
    let ints = |xs: Vec<i64>| xs.into_iter().map(|x| x.to_string()).collect();
    Ok(match v.ty.dtype {
        DType::F16 => floats(2, &|c| f16::from_le_bytes([c[0], c[1]]).to_f64()),
        DType::BF16 => floats(2, &|c| bf16::from_le_bytes([c[0], c[1]]).to_f64()),
        DType::F32 => floats(4, &|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64),
        DType::F64 => floats(8, &|c| f64::from_le_bytes(c.try_into().unwrap_or_default())),
        DType::Bool => b
            .iter()
            .map(|&x| if x != 0 { "true" } else { "false" }.to_string())
            .collect(),
        DType::U64 => b
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()).to_string())
            .collect(),
        DType::I4 => ints(
            crate::blob::unpack_i4(&b, n)
                .into_iter()
                .map(i64::from)
                .collect(),
        ),
        DType::F8E4M3FN | DType::F8E5M2 | DType::String => {
            return Err(MilError::Unsupported {
                what: format!("an inline {} constant in MIL text", v.ty.dtype),
            });
        }
        _ => ints(v.to_i64_vec().ok_or_else(|| MilError::Unsupported {
            what: format!("an inline {} constant in MIL text", v.ty.dtype),
        })?),
    })
}
