//! Constant values and types ↔ protobuf `Value` / `ValueType`.

use crate::blob::BlobFile;
use crate::proto::pb::mil_spec as mil;
use crate::value::ConstData;
use crate::{ConstValue, DType, MilError, TensorType};
use std::sync::Arc;

use mil::tensor_value::{
    RepeatedBools, RepeatedBytes, RepeatedDoubles, RepeatedFloats, RepeatedInts, RepeatedLongInts,
    RepeatedStrings, Value as TV,
};

/// Protobuf type of a tensor type.
pub fn value_type(ty: &TensorType) -> mil::ValueType {
    mil::ValueType {
        r#type: Some(mil::value_type::Type::TensorType(mil::TensorType {
            data_type: ty.dtype.proto_code(),
            rank: ty.rank() as i64,
            dimensions: ty
                .shape
                .iter()
                .map(|&d| mil::Dimension {
                    dimension: Some(mil::dimension::Dimension::Constant(
                        mil::dimension::ConstantDimension { size: d as u64 },
                    )),
                })
                .collect(),
            attributes: Default::default(),
        })),
    }
}

/// Tensor type of a protobuf type; `field` names the place for errors.
pub fn tensor_type(vt: Option<&mil::ValueType>, field: &str) -> Result<TensorType, String> {
    let tt = match vt.and_then(|v| v.r#type.as_ref()) {
        Some(mil::value_type::Type::TensorType(t)) => t,
        Some(_) => return Err(format!("{field}: only tensor types are supported")),
        None => return Err(format!("{field}: missing type")),
    };
    let dtype = DType::from_proto_code(tt.data_type)
        .ok_or_else(|| format!("{field}: unknown data type code {}", tt.data_type))?;
    if tt.rank != tt.dimensions.len() as i64 {
        return Err(format!(
            "{field}: rank {} but {} dimensions",
            tt.rank,
            tt.dimensions.len()
        ));
    }
    let shape = tt
        .dimensions
        .iter()
        .map(|d| match d.dimension {
            Some(mil::dimension::Dimension::Constant(c)) => Ok(c.size as usize),
            _ => Err(format!(
                "{field}: unknown (flexible) dimensions are not supported"
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TensorType::new(dtype, shape))
}

/// An immediate protobuf value holding the constant's elements.
pub fn immediate(v: &ConstValue) -> Result<mil::Value, MilError> {
    let tensor = if let Some(s) = v.strings() {
        TV::Strings(RepeatedStrings { values: s.to_vec() })
    } else {
        let b = v.bytes()?;
        let chunks = |n: usize| b.chunks_exact(n);
        match v.ty.dtype {
            DType::F32 => TV::Floats(RepeatedFloats {
                values: chunks(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            }),
            DType::F64 => TV::Doubles(RepeatedDoubles {
                values: chunks(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            }),
            DType::I32 => TV::Ints(RepeatedInts {
                values: chunks(4)
                    .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            }),
            DType::I16 => TV::Ints(RepeatedInts {
                values: chunks(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]) as i32)
                    .collect(),
            }),
            DType::U16 => TV::Ints(RepeatedInts {
                values: chunks(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]) as i32)
                    .collect(),
            }),
            DType::I64 | DType::U64 => TV::LongInts(RepeatedLongInts {
                values: chunks(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            }),
            DType::Bool => TV::Bools(RepeatedBools {
                values: b.iter().map(|&x| x != 0).collect(),
            }),
            _ => TV::Bytes(RepeatedBytes {
                values: b.into_owned(),
            }),
        }
    };
    Ok(mil::Value {
        doc_string: String::new(),
        r#type: Some(value_type(&v.ty)),
        value: Some(mil::value::Value::ImmediateValue(
            mil::value::ImmediateValue {
                value: Some(mil::value::immediate_value::Value::Tensor(
                    mil::TensorValue {
                        value: Some(tensor),
                    },
                )),
            },
        )),
    })
}

/// A protobuf value referring to a blob at `offset` in the model's weight file.
pub fn blob_ref(ty: &TensorType, offset: u64) -> mil::Value {
    mil::Value {
        doc_string: String::new(),
        r#type: Some(value_type(ty)),
        value: Some(mil::value::Value::BlobFileValue(
            mil::value::BlobFileValue {
                file_name: super::WEIGHT_FILE_NAME.to_string(),
                offset,
            },
        )),
    }
}

/// The constant a protobuf value holds; blob references resolve against `weights`.
pub fn const_value(
    v: &mil::Value,
    weights: Option<&Arc<BlobFile>>,
    field: &str,
) -> Result<ConstValue, String> {
    let ty = tensor_type(v.r#type.as_ref(), field)?;
    match &v.value {
        Some(mil::value::Value::BlobFileValue(b)) => {
            let file = weights.ok_or_else(|| {
                format!(
                    "{field}: refers to {} but the package has no weights",
                    b.file_name
                )
            })?;
            if b.file_name != super::WEIGHT_FILE_NAME {
                return Err(format!("{field}: unsupported blob file `{}`", b.file_name));
            }
            ConstValue::from_blob(ty, file, b.offset).map_err(|r| format!("{field}: {r}"))
        }
        Some(mil::value::Value::ImmediateValue(iv)) => {
            let tensor = match &iv.value {
                Some(mil::value::immediate_value::Value::Tensor(t)) => t,
                _ => {
                    return Err(format!(
                        "{field}: only tensor immediate values are supported"
                    ));
                }
            };
            immediate_tensor(ty, tensor.value.as_ref(), field)
        }
        None => Err(format!("{field}: value has no data")),
    }
}

fn immediate_tensor(ty: TensorType, tv: Option<&TV>, field: &str) -> Result<ConstValue, String> {
    let n = ty.element_count();
    let count_err = |got: usize| format!("{field}: {got} elements for type {ty}");
    let bytes: Vec<u8> = match tv {
        Some(TV::Strings(s)) => {
            if ty.dtype != DType::String || s.values.len() != n {
                return Err(count_err(s.values.len()));
            }
            return Ok(ConstValue {
                ty,
                data: ConstData::Strings(Arc::from(s.values.clone())),
            });
        }
        Some(TV::Floats(f)) if ty.dtype == DType::F32 => {
            f.values.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        Some(TV::Doubles(f)) if ty.dtype == DType::F64 => {
            f.values.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        Some(TV::Ints(i)) => match ty.dtype {
            DType::I32 => i.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            DType::I16 => i
                .values
                .iter()
                .flat_map(|v| (*v as i16).to_le_bytes())
                .collect(),
            DType::U16 => i
                .values
                .iter()
                .flat_map(|v| (*v as u16).to_le_bytes())
                .collect(),
            DType::I8 => i.values.iter().map(|v| *v as i8 as u8).collect(),
            DType::U8 => i.values.iter().map(|v| *v as u8).collect(),
            _ => return Err(format!("{field}: integer list for type {ty}")),
        },
        Some(TV::LongInts(i)) if matches!(ty.dtype, DType::I64 | DType::U64) => {
            i.values.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        Some(TV::Bools(b)) if ty.dtype == DType::Bool => {
            b.values.iter().map(|&x| x as u8).collect()
        }
        Some(TV::Bytes(b)) => b.values.clone(),
        None if n == 0 => Vec::new(),
        _ => return Err(format!("{field}: immediate value does not match type {ty}")),
    };
    if bytes.len() != ty.storage_len() {
        return Err(format!("{field}: {} bytes do not hold {ty}", bytes.len()));
    }
    Ok(ConstValue {
        ty,
        data: ConstData::Bytes(Arc::from(bytes)),
    })
}

/// A `dict<string, string>` value (the program's `buildInfo`).
pub fn string_dict(map: &std::collections::BTreeMap<String, String>) -> mil::Value {
    let string_type = value_type(&TensorType::scalar(DType::String));
    let s = |x: &str| mil::Value {
        doc_string: String::new(),
        r#type: Some(string_type.clone()),
        value: Some(mil::value::Value::ImmediateValue(
            mil::value::ImmediateValue {
                value: Some(mil::value::immediate_value::Value::Tensor(
                    mil::TensorValue {
                        value: Some(TV::Strings(RepeatedStrings {
                            values: vec![x.to_string()],
                        })),
                    },
                )),
            },
        )),
    };
    mil::Value {
        doc_string: String::new(),
        r#type: Some(mil::ValueType {
            r#type: Some(mil::value_type::Type::DictionaryType(Box::new(
                mil::DictionaryType {
                    key_type: Some(Box::new(string_type.clone())),
                    value_type: Some(Box::new(string_type.clone())),
                },
            ))),
        }),
        value: Some(mil::value::Value::ImmediateValue(
            mil::value::ImmediateValue {
                value: Some(mil::value::immediate_value::Value::Dictionary(
                    mil::DictionaryValue {
                        values: map
                            .iter()
                            .map(|(k, v)| mil::dictionary_value::KeyValuePair {
                                key: Some(s(k)),
                                value: Some(s(v)),
                            })
                            .collect(),
                    },
                )),
            },
        )),
    }
}

/// The entries of a `dict<string, string>` value.
pub fn read_string_dict(v: &mil::Value) -> Option<std::collections::BTreeMap<String, String>> {
    let str_of = |v: &Option<mil::Value>| -> Option<String> {
        match v.as_ref()?.value.as_ref()? {
            mil::value::Value::ImmediateValue(mil::value::ImmediateValue {
                value:
                    Some(mil::value::immediate_value::Value::Tensor(mil::TensorValue {
                        value: Some(TV::Strings(s)),
                    })),
            }) => s.values.first().cloned(),
            _ => None,
        }
    };
    match v.value.as_ref()? {
        mil::value::Value::ImmediateValue(mil::value::ImmediateValue {
            value: Some(mil::value::immediate_value::Value::Dictionary(d)),
        }) => d
            .values
            .iter()
            .map(|kv| Some((str_of(&kv.key)?, str_of(&kv.value)?)))
            .collect(),
        _ => None,
    }
}
