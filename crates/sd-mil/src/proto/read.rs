//! Protobuf → IR, with every op checked against the catalogue.

use super::pb;
use super::pb::mil_spec as mil;
use super::value::{const_value, read_string_dict, tensor_type};
use crate::blob::BlobFile;
use crate::model::{ArrayDType, FeatureDescription, Metadata, ModelDescription};
use crate::program::{Binding, Function, Operation, Opset, Program, Var};
use crate::{MilError, Model, catalogue};
use prost::Message;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Decodes `model.mlmodel` bytes; `path` names the file in errors.
pub fn decode(bytes: &[u8], path: &Path) -> Result<pb::Model, MilError> {
    pb::Model::decode(bytes).map_err(|source| MilError::Decode {
        path: path.to_path_buf(),
        source,
    })
}

/// Converts a decoded model into the IR and checks it: every op known to the catalogue with
/// valid parameters, declared output types equal to the inferred ones, and a description that
/// matches the main function's signature. `weights` resolves blob references.
pub fn model_from_proto(
    m: &pb::Model,
    weights: Option<Arc<BlobFile>>,
    path: &Path,
) -> Result<Model, MilError> {
    let fmt = |field: &str, reason: String| MilError::format(path, field, reason);
    let spec_version = u32::try_from(m.specification_version).map_err(|_| {
        fmt(
            "specificationVersion",
            format!("{} is negative", m.specification_version),
        )
    })?;
    let program = match &m.r#type {
        Some(pb::model::Type::MlProgram(p)) => p,
        _ => return Err(fmt("type", "not an ML program".into())),
    };
    let program = program_from_proto(program, weights.as_ref(), path)?;
    let desc = m
        .description
        .as_ref()
        .ok_or_else(|| fmt("description", "missing".into()))?;
    let description = description_from_proto(desc, path)?;
    let model = Model {
        spec_version,
        description,
        program,
    };
    check_model(&model, path, path)?;
    Ok(model)
}

/// A model description from its protobuf form; `path` names the file in errors.
pub fn description_from_proto(
    desc: &pb::ModelDescription,
    path: &Path,
) -> Result<ModelDescription, MilError> {
    Ok(ModelDescription {
        inputs: features(&desc.input, "description.input", path)?,
        outputs: features(&desc.output, "description.output", path)?,
        metadata: desc.metadata.as_ref().map(metadata).unwrap_or_default(),
    })
}

fn metadata(m: &pb::Metadata) -> Metadata {
    Metadata {
        short_description: m.short_description.clone(),
        version_string: m.version_string.clone(),
        author: m.author.clone(),
        license: m.license.clone(),
        user_defined: m
            .user_defined
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

fn features(
    list: &[pb::FeatureDescription],
    field: &str,
    path: &Path,
) -> Result<Vec<FeatureDescription>, MilError> {
    list.iter()
        .enumerate()
        .map(|(i, f)| {
            let field = format!("{field}[{i}] ({})", f.name);
            let arr = match f.r#type.as_ref().and_then(|t| t.r#type.as_ref()) {
                Some(pb::feature_type::Type::MultiArrayType(a)) => a,
                _ => {
                    return Err(MilError::format(
                        path,
                        field,
                        "only multi-array features are supported",
                    ));
                }
            };
            let dtype = ArrayDType::from_proto_code(arr.data_type).ok_or_else(|| {
                MilError::format(
                    path,
                    &field,
                    format!("unknown array data type {}", arr.data_type),
                )
            })?;
            let shape = arr
                .shape
                .iter()
                .map(|&d| {
                    usize::try_from(d).map_err(|_| {
                        MilError::format(path, &field, format!("negative dimension {d}"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(FeatureDescription {
                name: f.name.clone(),
                short_description: f.short_description.clone(),
                dtype,
                shape,
            })
        })
        .collect()
}

/// Checks a model read from files: its description (from `description_path`) against the main
/// function's signature, and its program (from `program_path`) against the op catalogue.
pub(crate) fn check_model(
    model: &Model,
    description_path: &Path,
    program_path: &Path,
) -> Result<(), MilError> {
    check_signature(model, description_path)?;
    crate::graph::check_program(&model.program).map_err(|source| MilError::InFile {
        path: program_path.to_path_buf(),
        source: Box::new(source),
    })
}

/// Checks that the description matches the main function's signature and that the
/// specification version is new enough for its opset.
fn check_signature(model: &Model, path: &Path) -> Result<(), MilError> {
    let main = model
        .program
        .main()
        .ok_or_else(|| MilError::format(path, "mlProgram.functions", "no `main` function"))?;
    let want = Opset::from_spec_version(model.spec_version);
    if want.is_some_and(|o| main.opset > o) {
        return Err(MilError::format(
            path,
            "specificationVersion",
            format!(
                "{} is too old for opset {}",
                model.spec_version,
                main.opset.name()
            ),
        ));
    }
    let d = &model.description;
    let pairs: Vec<(&str, &str, Option<crate::TensorType>, &FeatureDescription)> = main
        .inputs
        .iter()
        .zip(&d.inputs)
        .map(|(v, f)| ("description.input", v.name.as_str(), Some(v.ty.clone()), f))
        .chain(main.outputs.iter().zip(&d.outputs).map(|(n, f)| {
            (
                "description.output",
                n.as_str(),
                main.value_type(n).cloned(),
                f,
            )
        }))
        .collect();
    if main.inputs.len() != d.inputs.len() || main.outputs.len() != d.outputs.len() {
        return Err(MilError::format(
            path,
            "description",
            format!(
                "{} inputs and {} outputs described, the program has {} and {}",
                d.inputs.len(),
                d.outputs.len(),
                main.inputs.len(),
                main.outputs.len()
            ),
        ));
    }
    for (field, name, ty, f) in pairs {
        if f.name != name || ty.as_ref() != Some(&f.tensor_type()) {
            return Err(MilError::format(
                path,
                format!("{field} ({})", f.name),
                format!(
                    "described as {} {}, the program has `{name}` {:?}",
                    f.name,
                    f.tensor_type(),
                    ty.map(|t| t.to_string())
                ),
            ));
        }
    }
    Ok(())
}

/// Converts a protobuf program (without checking op semantics; see [`crate::graph::check_program`]).
pub fn program_from_proto(
    p: &mil::Program,
    weights: Option<&Arc<BlobFile>>,
    path: &Path,
) -> Result<Program, MilError> {
    let fmt = |field: String, reason: String| MilError::format(path, field, reason);
    if p.version != 1 {
        return Err(fmt(
            "mlProgram.version".into(),
            format!("{} (expected 1)", p.version),
        ));
    }
    let mut build_info = BTreeMap::new();
    for (k, v) in &p.attributes {
        match k.as_str() {
            "buildInfo" => {
                build_info = read_string_dict(v).ok_or_else(|| {
                    fmt(
                        "mlProgram.attributes.buildInfo".into(),
                        "not a dict<string, string>".into(),
                    )
                })?
            }
            other => {
                return Err(fmt(
                    format!("mlProgram.attributes.{other}"),
                    "unknown program attribute".into(),
                ));
            }
        }
    }
    let mut functions = BTreeMap::new();
    for (name, f) in &p.functions {
        let field = format!("mlProgram.functions.{name}");
        let opset = Opset::from_name(&f.opset).ok_or_else(|| {
            fmt(
                format!("{field}.opset"),
                format!("unknown opset `{}`", f.opset),
            )
        })?;
        if f.block_specializations.len() != 1 {
            return Err(fmt(
                format!("{field}.block_specializations"),
                format!("{} blocks (expected 1)", f.block_specializations.len()),
            ));
        }
        let block = f.block_specializations.get(&f.opset).ok_or_else(|| {
            fmt(
                format!("{field}.block_specializations"),
                format!("no block for opset {}", f.opset),
            )
        })?;
        let inputs = f
            .inputs
            .iter()
            .map(|nv| {
                let ty = tensor_type(nv.r#type.as_ref(), &format!("{field}.inputs.{}", nv.name))
                    .map_err(|r| fmt(field.clone(), r))?;
                Ok(Var::new(&nv.name, ty))
            })
            .collect::<Result<Vec<_>, MilError>>()?;
        let operations = block
            .operations
            .iter()
            .enumerate()
            .map(|(i, op)| {
                operation(op, opset, weights, &format!("{field}.operations[{i}]"))
                    .map_err(|r| fmt(format!("{field}.operations[{i}]"), r))
            })
            .collect::<Result<Vec<_>, _>>()?;
        functions.insert(
            name.clone(),
            Function {
                inputs,
                opset,
                operations,
                outputs: block.outputs.clone(),
            },
        );
    }
    Ok(Program {
        functions,
        build_info,
    })
}

fn operation(
    op: &mil::Operation,
    opset: Opset,
    weights: Option<&Arc<BlobFile>>,
    field: &str,
) -> Result<Operation, String> {
    let name = op
        .attributes
        .get("name")
        .and_then(|v| const_value(v, None, field).ok())
        .and_then(|c| c.as_str().map(str::to_string))
        .ok_or_else(|| format!("{} op has no `name` attribute", op.r#type))?;
    let field = format!("{field} `{name}`");
    if !op.blocks.is_empty() {
        return Err(format!("{}: nested blocks are not supported", op.r#type));
    }
    let mut attributes = BTreeMap::new();
    for (k, v) in op.attributes.iter().filter(|(k, _)| *k != "name") {
        attributes.insert(
            k.clone(),
            const_value(v, weights, &format!("{field}.attributes.{k}"))?,
        );
    }
    let mut inputs = Vec::new();
    for (param, arg) in &op.inputs {
        let bindings =
            arg.arguments
                .iter()
                .map(|b| match &b.binding {
                    Some(mil::argument::binding::Binding::Name(n)) => Ok(Binding::Name(n.clone())),
                    Some(mil::argument::binding::Binding::Value(v)) => Ok(Binding::Value(
                        const_value(v, weights, &format!("{field}.inputs.{param}"))?,
                    )),
                    None => Err(format!("{field}.inputs.{param}: empty binding")),
                })
                .collect::<Result<Vec<_>, _>>()?;
        inputs.push((param.clone(), bindings));
    }
    // Protobuf maps are unordered: keep parameters in catalogue order for stable output.
    let order = |p: &str| catalogue::param_position(&op.r#type, opset, p);
    inputs.sort_by(|(a, _), (b, _)| order(a).cmp(&order(b)).then(a.cmp(b)));
    let outputs = op
        .outputs
        .iter()
        .map(|nv| {
            Ok(Var::new(
                &nv.name,
                tensor_type(nv.r#type.as_ref(), &format!("{field}.outputs.{}", nv.name))?,
            ))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Operation {
        op_type: op.r#type.clone(),
        name,
        inputs,
        outputs,
        attributes,
    })
}
