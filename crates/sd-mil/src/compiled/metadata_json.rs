//! `metadata.json`: the compiled model's human-readable summary (what Xcode and
//! `coremltools` show), written the way Apple's compiler lays it out and checked on reading.

use crate::model::FeatureDescription;
use crate::{ArrayDType, ConstData, MilError, Model, Opset};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn array_type_name(d: ArrayDType) -> &'static str {
    match d {
        ArrayDType::F16 => "Float16",
        ArrayDType::F32 => "Float32",
        ArrayDType::F64 => "Double",
        ArrayDType::I32 => "Int32",
        ArrayDType::I8 => "Int8",
    }
}

fn schema(f: &FeatureDescription) -> Value {
    let dims: Vec<String> = f.shape.iter().map(|d| d.to_string()).collect();
    let ty = array_type_name(f.dtype);
    json!({
        "hasShapeFlexibility": "0",
        "isOptional": "0",
        "dataType": ty,
        "formattedType": format!("MultiArray ({ty} {})", dims.join(" × ")),
        "shortDescription": f.short_description,
        "shape": format!("[{}]", dims.join(", ")),
        "name": f.name,
        "type": "MultiArray",
    })
}

/// The OS releases a model of this opset needs, as `availability` lists them.
fn availability(o: Opset) -> Value {
    let (ios, macos, watchos, visionos) = match o {
        Opset::CoreML5 => ("15.0", "12.0", "8.0", "1.0"),
        Opset::CoreML6 => ("16.0", "13.0", "9.0", "1.0"),
        Opset::CoreML7 => ("17.0", "14.0", "10.0", "1.0"),
        Opset::CoreML8 => ("18.0", "15.0", "11.0", "2.0"),
    };
    json!({"iOS": ios, "macCatalyst": ios, "macOS": macos, "tvOS": ios, "visionOS": visionos, "watchOS": watchos})
}

/// `metadata.json` for `model`, whose generated class is called `class_name`.
pub fn encode(model: &Model, class_name: &str) -> String {
    let main = model.program.main();
    let mut histogram: BTreeMap<String, usize> = BTreeMap::new();
    let mut weight_types: BTreeSet<&'static str> = BTreeSet::new();
    for f in model.program.functions.values() {
        let os = f.opset.ios_name().replace("iOS", "Ios");
        for op in &f.operations {
            *histogram.entry(format!("{os}.{}", op.op_type)).or_default() += 1;
            for v in op
                .constants()
                .filter(|v| matches!(v.data, ConstData::Blob { .. }))
            {
                weight_types.insert(v.ty.dtype.name());
            }
        }
    }
    let storage = match weight_types.into_iter().collect::<Vec<_>>().as_slice() {
        [] | ["fp16"] => "Float16".to_string(),
        ["fp32"] => "Float32".to_string(),
        several => format!("Mixed ({})", several.join(", ")),
    };
    let m = &model.description.metadata;
    let v = json!([{
        "metadataOutputVersion": "3.0",
        "shortDescription": m.short_description,
        "author": m.author,
        "license": m.license,
        "version": m.version_string,
        "specificationVersion": model.spec_version,
        "storagePrecision": storage,
        "isUpdatable": "0",
        "availability": main.map(|f| availability(f.opset)).unwrap_or(Value::Null),
        "modelType": {"name": "MLModelType_mlProgram"},
        "inputSchema": model.description.inputs.iter().map(schema).collect::<Vec<_>>(),
        "outputSchema": model.description.outputs.iter().map(schema).collect::<Vec<_>>(),
        "userDefinedMetadata": m.user_defined,
        "mlProgramOperationTypeHistogram": histogram,
        "generatedClassName": class_name,
        "method": "predict",
        "modelParameters": [],
    }]);
    let mut s = serde_json::to_string_pretty(&v).expect("serializing a JSON value cannot fail");
    s.push('\n');
    s
}

/// Checks `metadata.json` text against the model read from the rest of the folder: a JSON
/// array of one object whose `specificationVersion` (when present) and input/output names
/// (when listed) agree with it.
pub fn check(text: &str, model: &Model, path: &Path) -> Result<(), MilError> {
    let fail = |field: &str, reason: String| MilError::format(path, field, reason);
    let v: Value =
        serde_json::from_str(text).map_err(|e| fail("<json>", format!("not JSON: {e}")))?;
    let obj = match &v {
        Value::Array(items) if items.len() == 1 => items[0]
            .as_object()
            .ok_or_else(|| fail("[0]", "not an object".into()))?,
        _ => return Err(fail("<top level>", "not an array of one object".into())),
    };
    if let Some(s) = obj.get("specificationVersion") {
        let got = s
            .as_u64()
            .ok_or_else(|| fail("specificationVersion", format!("{s} is not a number")))?;
        if got != model.spec_version as u64 {
            return Err(fail(
                "specificationVersion",
                format!("{got}, but coremldata.bin says {}", model.spec_version),
            ));
        }
    }
    for (field, features) in [
        ("inputSchema", &model.description.inputs),
        ("outputSchema", &model.description.outputs),
    ] {
        let Some(list) = obj.get(field) else {
            continue;
        };
        let names = list
            .as_array()
            .and_then(|l| {
                l.iter()
                    .map(|e| e.get("name").and_then(Value::as_str))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| fail(field, "not a list of named features".into()))?;
        let want: Vec<&str> = features.iter().map(|f| f.name.as_str()).collect();
        if names != want {
            return Err(fail(
                field,
                format!("lists {names:?}, the model has {want:?}"),
            ));
        }
    }
    Ok(())
}
