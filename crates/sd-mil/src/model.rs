//! The model around a program: specification version, description (signature) and metadata.

use crate::{DType, MilError, Program, TensorType};
use std::collections::BTreeMap;

/// Element types a model input or output (a multi-array feature) can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArrayDType {
    /// fp16 (spec ≥ 7).
    F16,
    /// fp32.
    F32,
    /// fp64.
    F64,
    /// int32.
    I32,
    /// int8.
    I8,
}

impl ArrayDType {
    /// The `ArrayDataType` code in FeatureTypes.proto.
    pub fn proto_code(self) -> i32 {
        match self {
            ArrayDType::F32 => 65568,
            ArrayDType::F16 => 65552,
            ArrayDType::F64 => 65600,
            ArrayDType::I32 => 131104,
            ArrayDType::I8 => 131080,
        }
    }

    /// The type for an `ArrayDataType` code.
    pub fn from_proto_code(code: i32) -> Option<Self> {
        [
            ArrayDType::F32,
            ArrayDType::F16,
            ArrayDType::F64,
            ArrayDType::I32,
            ArrayDType::I8,
        ]
        .into_iter()
        .find(|d| d.proto_code() == code)
    }

    /// The matching MIL element type.
    pub fn dtype(self) -> DType {
        match self {
            ArrayDType::F16 => DType::F16,
            ArrayDType::F32 => DType::F32,
            ArrayDType::F64 => DType::F64,
            ArrayDType::I32 => DType::I32,
            ArrayDType::I8 => DType::I8,
        }
    }

    /// The feature type for a MIL element type, if one exists.
    pub fn from_dtype(d: DType) -> Option<Self> {
        Some(match d {
            DType::F16 => ArrayDType::F16,
            DType::F32 => ArrayDType::F32,
            DType::F64 => ArrayDType::F64,
            DType::I32 => ArrayDType::I32,
            DType::I8 => ArrayDType::I8,
            _ => return None,
        })
    }
}

/// One model input or output: a multi-array with a fixed shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureDescription {
    /// Feature name (= the MIL function input or block output name).
    pub name: String,
    /// Human-readable description.
    pub short_description: String,
    /// Element type.
    pub dtype: ArrayDType,
    /// Shape.
    pub shape: Vec<usize>,
}

impl FeatureDescription {
    /// The MIL type of the feature.
    pub fn tensor_type(&self) -> TensorType {
        TensorType::new(self.dtype.dtype(), self.shape.clone())
    }
}

/// Model metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// Short description.
    pub short_description: String,
    /// Version string.
    pub version_string: String,
    /// Author.
    pub author: String,
    /// Licence.
    pub license: String,
    /// Free-form key/value pairs.
    pub user_defined: BTreeMap<String, String>,
}

/// The model's signature and metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelDescription {
    /// Inputs, in function input order.
    pub inputs: Vec<FeatureDescription>,
    /// Outputs, in block output order.
    pub outputs: Vec<FeatureDescription>,
    /// Metadata.
    pub metadata: Metadata,
}

/// A Core ML ML Program model: specification version, description and program.
#[derive(Debug, Clone)]
pub struct Model {
    /// `specificationVersion` (7 = iOS16, 8 = iOS17, 9 = iOS18).
    pub spec_version: u32,
    /// Signature and metadata.
    pub description: ModelDescription,
    /// The program.
    pub program: Program,
}

impl Model {
    /// A model whose description is derived from the program's "main" signature, at the
    /// specification version of its opset.
    pub fn from_program(program: Program) -> Result<Self, MilError> {
        let main = program.main().ok_or_else(|| MilError::Unsupported {
            what: "a program without a `main` function".into(),
        })?;
        let feature = |name: &str, ty: &TensorType| -> Result<FeatureDescription, MilError> {
            let dtype = ArrayDType::from_dtype(ty.dtype).ok_or_else(|| MilError::Unsupported {
                what: format!("model feature `{name}` of element type {}", ty.dtype),
            })?;
            Ok(FeatureDescription {
                name: name.to_string(),
                short_description: String::new(),
                dtype,
                shape: ty.shape.clone(),
            })
        };
        let inputs = main
            .inputs
            .iter()
            .map(|v| feature(&v.name, &v.ty))
            .collect::<Result<Vec<_>, _>>()?;
        let outputs = main
            .outputs
            .iter()
            .map(|name| {
                let ty = main.value_type(name).ok_or_else(|| {
                    MilError::from(crate::ProgramError::UndefinedValue {
                        op: "<outputs>".into(),
                        name: name.clone(),
                    })
                })?;
                feature(name, ty)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Model {
            spec_version: main.opset.spec_version(),
            description: ModelDescription {
                inputs,
                outputs,
                metadata: Metadata::default(),
            },
            program,
        })
    }
}
