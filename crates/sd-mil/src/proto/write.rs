//! IR → protobuf, streaming large constants into a `weight.bin` writer.

use super::pb;
use super::pb::mil_spec as mil;
use super::value::{blob_ref, immediate, string_dict, value_type};
use crate::blob::BlobWriter;
use crate::model::{FeatureDescription, ModelDescription};
use crate::program::{Binding, Function, Operation};
use crate::value::ConstData;
use crate::{ConstValue, DType, MilError, Model};
use std::collections::HashMap;
use std::io::{Seek, Write};
use tracing::debug;

/// Whether coremltools' rule puts this value in `weight.bin` rather than inline: at least 10
/// elements of fp16/fp32/u8/i8 (from spec 9 also u16/i16/i32/u32), and every sub-byte type.
pub fn goes_to_blob(v: &ConstValue, spec_version: u32) -> bool {
    let d = v.ty.dtype;
    if d.is_sub_byte() {
        return true;
    }
    let wide = matches!(d, DType::F16 | DType::F32 | DType::U8 | DType::I8)
        || (spec_version >= 9 && matches!(d, DType::U16 | DType::I16 | DType::I32 | DType::U32));
    wide && v.ty.element_count() >= 10
}

/// Writes constants into `weight.bin`, sharing one blob between values with the same source.
pub(crate) struct BlobSink<'a, W: Write + Seek> {
    writer: &'a mut BlobWriter<W>,
    spec_version: u32,
    shared: HashMap<(usize, u64), u64>,
}

impl<'a, W: Write + Seek> BlobSink<'a, W> {
    /// A sink writing into `writer` by the rules of `spec_version`.
    pub(crate) fn new(writer: &'a mut BlobWriter<W>, spec_version: u32) -> Self {
        BlobSink {
            writer,
            spec_version,
            shared: HashMap::new(),
        }
    }

    /// The blobs written so far.
    pub(crate) fn count(&self) -> u32 {
        self.writer.count()
    }

    /// Where `v` goes: written into `weight.bin` (or found there already) when it belongs
    /// there ([`goes_to_blob`]), giving its offset; `None` for an inline value.
    pub(crate) fn place(&mut self, v: &ConstValue) -> Result<Option<u64>, MilError> {
        if !goes_to_blob(v, self.spec_version) {
            return Ok(None);
        }
        let dtype =
            v.ty.dtype
                .blob_dtype()
                .ok_or_else(|| MilError::Unsupported {
                    what: format!("{} values in weight.bin", v.ty.dtype),
                })?;
        let count = v.ty.element_count() as u64;
        let key = match &v.data {
            ConstData::Blob { file, offset } => {
                Some((std::sync::Arc::as_ptr(file) as usize, *offset))
            }
            ConstData::Source(s) => {
                Some((std::sync::Arc::as_ptr(s) as *const u8 as usize, u64::MAX))
            }
            _ => None,
        };
        if let Some(off) = key.and_then(|k| self.shared.get(&k)) {
            return Ok(Some(*off));
        }
        let offset = match &v.data {
            ConstData::Source(s) => {
                let mut stream = self.writer.begin_blob(dtype, count)?;
                s.write_to(&mut stream)
                    .map_err(|e| MilError::InvalidConst {
                        reason: format!("streaming {s:?} into weight.bin: {e}"),
                    })?;
                stream.finish()?
            }
            ConstData::Blob { file, offset } => {
                let blob = file.blob(*offset)?;
                let off = self.writer.write_blob(dtype, count, blob.data)?;
                file.release(&blob);
                off
            }
            _ => self.writer.write_blob(dtype, count, &v.bytes()?)?,
        };
        if let Some(k) = key {
            self.shared.insert(k, offset);
        }
        Ok(Some(offset))
    }

    fn value(&mut self, v: &ConstValue) -> Result<mil::Value, MilError> {
        match self.place(v)? {
            Some(offset) => Ok(blob_ref(&v.ty, offset)),
            None => immediate(v),
        }
    }
}

fn string_value(s: &str) -> Result<mil::Value, MilError> {
    immediate(&ConstValue::string(s))
}

fn operation<W: Write + Seek>(
    op: &Operation,
    sink: &mut BlobSink<'_, W>,
) -> Result<mil::Operation, MilError> {
    let mut attributes = HashMap::from([("name".to_string(), string_value(&op.name)?)]);
    for (k, v) in &op.attributes {
        attributes.insert(k.clone(), sink.value(v)?);
    }
    let mut inputs = HashMap::new();
    for (param, bindings) in &op.inputs {
        let arguments = bindings
            .iter()
            .map(|b| {
                Ok(mil::argument::Binding {
                    binding: Some(match b {
                        Binding::Name(n) => mil::argument::binding::Binding::Name(n.clone()),
                        Binding::Value(v) => mil::argument::binding::Binding::Value(sink.value(v)?),
                    }),
                })
            })
            .collect::<Result<Vec<_>, MilError>>()?;
        inputs.insert(param.clone(), mil::Argument { arguments });
    }
    Ok(mil::Operation {
        r#type: op.op_type.clone(),
        inputs,
        outputs: op
            .outputs
            .iter()
            .map(|v| mil::NamedValueType {
                name: v.name.clone(),
                r#type: Some(value_type(&v.ty)),
            })
            .collect(),
        blocks: Vec::new(),
        attributes,
    })
}

fn function<W: Write + Seek>(
    f: &Function,
    sink: &mut BlobSink<'_, W>,
) -> Result<mil::Function, MilError> {
    let operations = f
        .operations
        .iter()
        .map(|op| operation(op, sink))
        .collect::<Result<Vec<_>, _>>()?;
    let block = mil::Block {
        inputs: Vec::new(),
        outputs: f.outputs.clone(),
        operations,
        attributes: HashMap::new(),
    };
    Ok(mil::Function {
        inputs: f
            .inputs
            .iter()
            .map(|v| mil::NamedValueType {
                name: v.name.clone(),
                r#type: Some(value_type(&v.ty)),
            })
            .collect(),
        opset: f.opset.name().to_string(),
        block_specializations: HashMap::from([(f.opset.name().to_string(), block)]),
        attributes: HashMap::new(),
    })
}

fn feature(f: &FeatureDescription) -> pb::FeatureDescription {
    pb::FeatureDescription {
        name: f.name.clone(),
        short_description: f.short_description.clone(),
        r#type: Some(pb::FeatureType {
            is_optional: false,
            r#type: Some(pb::feature_type::Type::MultiArrayType(
                pb::ArrayFeatureType {
                    shape: f.shape.iter().map(|&d| d as i64).collect(),
                    data_type: f.dtype.proto_code(),
                    shape_flexibility: None,
                    default_optional_value: None,
                },
            )),
        }),
    }
}

/// Converts `model` to protobuf; constants that belong in `weight.bin` are written to `blobs`.
pub fn model_to_proto<W: Write + Seek>(
    model: &Model,
    blobs: &mut BlobWriter<W>,
) -> Result<pb::Model, MilError> {
    let mut sink = BlobSink::new(blobs, model.spec_version);
    let mut functions = HashMap::new();
    for (name, f) in &model.program.functions {
        functions.insert(name.clone(), function(f, &mut sink)?);
    }
    let mut attributes = HashMap::new();
    if !model.program.build_info.is_empty() {
        attributes.insert(
            "buildInfo".to_string(),
            string_dict(&model.program.build_info),
        );
    }
    debug!(blobs = sink.count(), "program converted to protobuf");
    Ok(pb::Model {
        specification_version: model.spec_version as i32,
        description: Some(description_to_proto(&model.description)),
        is_updatable: false,
        r#type: Some(pb::model::Type::MlProgram(mil::Program {
            version: 1,
            functions,
            doc_string: String::new(),
            attributes,
        })),
    })
}

/// The protobuf form of a model description (also what a compiled model's `coremldata.bin`
/// holds).
pub fn description_to_proto(d: &ModelDescription) -> pb::ModelDescription {
    let m = &d.metadata;
    pb::ModelDescription {
        input: d.inputs.iter().map(feature).collect(),
        output: d.outputs.iter().map(feature).collect(),
        metadata: Some(pb::Metadata {
            short_description: m.short_description.clone(),
            version_string: m.version_string.clone(),
            author: m.author.clone(),
            license: m.license.clone(),
            user_defined: m
                .user_defined
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }),
        ..Default::default()
    }
}
