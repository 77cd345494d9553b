//! MIL text: the program printed the way coremltools prints it, for reading and debugging.

use crate::program::{Binding, Function, Operation, Program};
use crate::value::ConstData;
use crate::{ConstValue, DType};
use std::fmt::Write;

/// Prints a whole program (every function) as MIL text.
pub fn program_text(p: &Program) -> String {
    let mut s = String::from("program(1.0)\n");
    if !p.build_info.is_empty() {
        let info: Vec<String> = p
            .build_info
            .iter()
            .map(|(k, v)| format!("{{{k:?}, {v:?}}}"))
            .collect();
        let _ = writeln!(
            s,
            "[buildInfo = dict<string, string>({{{}}})]",
            info.join(", ")
        );
    }
    s.push_str("{\n");
    for (name, f) in &p.functions {
        function_text(&mut s, name, f);
    }
    s.push_str("}\n");
    s
}

fn function_text(s: &mut String, name: &str, f: &Function) {
    let inputs: Vec<String> = f
        .inputs
        .iter()
        .map(|v| format!("%{}: {}(Tensor)", v.name, v.ty))
        .collect();
    let _ = writeln!(
        s,
        "    func {name}<{}>({}) {{",
        f.opset.ios_name(),
        inputs.join(", ")
    );
    for op in &f.operations {
        let _ = writeln!(s, "        {}", op_text(op));
    }
    let outs: Vec<String> = f.outputs.iter().map(|o| format!("%{o}")).collect();
    let _ = writeln!(s, "    }} -> ({});", outs.join(", "));
}

/// One op as a line of MIL text.
pub fn op_text(op: &Operation) -> String {
    let outs: Vec<String> = op
        .outputs
        .iter()
        .map(|v| format!("%{}: {}", v.name, v.ty))
        .collect();
    let args: Vec<String> = op
        .inputs
        .iter()
        .map(|(p, bs)| {
            let vals: Vec<String> = bs
                .iter()
                .map(|b| match b {
                    Binding::Name(n) => format!("%{n}"),
                    Binding::Value(v) => value_text(v),
                })
                .collect();
            if bs.len() == 1 {
                format!("{p}={}", vals[0])
            } else {
                format!("{p}=({})", vals.join(", "))
            }
        })
        .collect();
    let mut attrs = vec![format!("name={}", quoted(&op.name))];
    attrs.extend(
        op.attributes
            .iter()
            .map(|(k, v)| format!("{k}={}", value_text(v))),
    );
    format!(
        "{} = {}({})[{}];",
        outs.join(", "),
        op.op_type,
        args.join(", "),
        attrs.join(", ")
    )
}

fn quoted(s: &str) -> String {
    format!("string({s:?})")
}

/// A constant as MIL text: small values inline, blobs by offset.
pub fn value_text(v: &ConstValue) -> String {
    let shape: Vec<String> = v.ty.shape.iter().map(|d| d.to_string()).collect();
    let ty = format!("tensor<{}, [{}]>", v.ty.dtype, shape.join(", "));
    if let ConstData::Blob { offset, .. } = &v.data {
        return format!(
            "{ty}(BLOBFILE(path=string(\"@model_path/weights/weight.bin\"), offset=uint64({offset})))"
        );
    }
    if let Some(strings) = v.strings() {
        return match strings {
            [s] if v.ty.shape.is_empty() => quoted(s),
            _ => format!("{ty}({strings:?})"),
        };
    }
    if v.ty.element_count() > 16 {
        return format!("{ty}(<{} elements>)", v.ty.element_count());
    }
    let body = match v.ty.dtype {
        DType::Bool => v
            .to_i64_vec()
            .map(|x| x.iter().map(|b| (*b != 0).to_string()).collect::<Vec<_>>()),
        d if d.is_float() => v
            .to_f32_vec()
            .map(|x| x.iter().map(|f| format!("{f:?}")).collect()),
        _ => v
            .to_i64_vec()
            .map(|x| x.iter().map(|i| i.to_string()).collect()),
    };
    let body = body.unwrap_or_else(|| vec!["?".into()]);
    if v.ty.shape.is_empty() {
        format!("{}({})", v.ty.dtype, body[0])
    } else {
        format!("{ty}([{}])", body.join(", "))
    }
}
