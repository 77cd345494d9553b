//! The program IR: program → functions → one block of operations over named, typed values.

use crate::{ConstValue, TensorType};
use std::collections::BTreeMap;

/// The MIL opset a function is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Opset {
    /// iOS15 / macOS12 (specification version 6).
    CoreML5,
    /// iOS16 / macOS13 (specification version 7).
    CoreML6,
    /// iOS17 / macOS14 (specification version 8).
    CoreML7,
    /// iOS18 / macOS15 (specification version 9).
    CoreML8,
}

impl Opset {
    /// The opset string as stored in `Function.opset`.
    pub fn name(self) -> &'static str {
        match self {
            Opset::CoreML5 => "CoreML5",
            Opset::CoreML6 => "CoreML6",
            Opset::CoreML7 => "CoreML7",
            Opset::CoreML8 => "CoreML8",
        }
    }

    /// The opset for an opset string.
    pub fn from_name(name: &str) -> Option<Opset> {
        [
            Opset::CoreML5,
            Opset::CoreML6,
            Opset::CoreML7,
            Opset::CoreML8,
        ]
        .into_iter()
        .find(|o| o.name() == name)
    }

    /// The model specification version that introduced this opset.
    pub fn spec_version(self) -> u32 {
        match self {
            Opset::CoreML5 => 6,
            Opset::CoreML6 => 7,
            Opset::CoreML7 => 8,
            Opset::CoreML8 => 9,
        }
    }

    /// The opset of a model specification version (6–9).
    pub fn from_spec_version(v: u32) -> Option<Opset> {
        match v {
            6 => Some(Opset::CoreML5),
            7 => Some(Opset::CoreML6),
            8 => Some(Opset::CoreML7),
            9 => Some(Opset::CoreML8),
            _ => None,
        }
    }

    /// The OS release name ("iOS16", …).
    pub fn ios_name(self) -> &'static str {
        match self {
            Opset::CoreML5 => "iOS15",
            Opset::CoreML6 => "iOS16",
            Opset::CoreML7 => "iOS17",
            Opset::CoreML8 => "iOS18",
        }
    }
}

/// A named, typed value: a function input or an op output.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Var {
    /// Identifier, unique within the function.
    pub name: String,
    /// Its type.
    pub ty: TensorType,
}

impl Var {
    /// A named value of the given type.
    pub fn new(name: impl Into<String>, ty: TensorType) -> Self {
        Var {
            name: name.into(),
            ty,
        }
    }
}

/// One element bound to an op parameter: a value produced earlier, or an inline constant.
#[derive(Debug, Clone)]
pub enum Binding {
    /// The name of a function input or an earlier op output.
    Name(String),
    /// An inline value (the iOS18 form of constexpr op parameters).
    Value(ConstValue),
}

/// An operation: its type, its name, its parameter bindings and its outputs.
#[derive(Debug, Clone)]
pub struct Operation {
    /// The op type, as in the catalogue ("conv", "const", …).
    pub op_type: String,
    /// The op's `name` attribute.
    pub name: String,
    /// Parameter bindings in a stable order; a variadic parameter holds several bindings.
    pub inputs: Vec<(String, Vec<Binding>)>,
    /// Output values.
    pub outputs: Vec<Var>,
    /// Attributes other than `name`: `val` of a `const`, parameters of iOS16/17 constexpr ops.
    pub attributes: BTreeMap<String, ConstValue>,
}

impl Operation {
    /// The bindings of a parameter, if bound.
    pub fn input(&self, param: &str) -> Option<&[Binding]> {
        self.inputs
            .iter()
            .find(|(p, _)| p == param)
            .map(|(_, b)| b.as_slice())
    }

    /// The single value name bound to a parameter, if it is bound by name.
    pub fn input_name(&self, param: &str) -> Option<&str> {
        match self.input(param)? {
            [Binding::Name(n)] => Some(n),
            _ => None,
        }
    }

    /// Names of all values this op reads.
    pub fn input_names(&self) -> impl Iterator<Item = &str> {
        self.inputs.iter().flat_map(|(_, bs)| {
            bs.iter().filter_map(|b| match b {
                Binding::Name(n) => Some(n.as_str()),
                Binding::Value(_) => None,
            })
        })
    }

    /// Every constant the op holds: its attributes' values and its inline bindings.
    pub fn constants(&self) -> impl Iterator<Item = &ConstValue> {
        self.attributes
            .values()
            .chain(self.inputs.iter().flat_map(|(_, bs)| {
                bs.iter().filter_map(|b| match b {
                    Binding::Value(v) => Some(v),
                    Binding::Name(_) => None,
                })
            }))
    }

    /// The value of a `const` op.
    pub fn const_value(&self) -> Option<&ConstValue> {
        if self.op_type == "const" {
            self.attributes.get("val")
        } else {
            None
        }
    }
}

/// A function: typed inputs, an opset, one block of operations and its outputs.
#[derive(Debug, Clone)]
pub struct Function {
    /// Function inputs, in order.
    pub inputs: Vec<Var>,
    /// Opset of the function body.
    pub opset: Opset,
    /// Operations in execution order.
    pub operations: Vec<Operation>,
    /// Names of the values the block returns, in order.
    pub outputs: Vec<String>,
}

impl Function {
    /// The type of a value by name (function input or op output).
    pub fn value_type(&self, name: &str) -> Option<&TensorType> {
        self.inputs
            .iter()
            .chain(self.operations.iter().flat_map(|op| op.outputs.iter()))
            .find(|v| v.name == name)
            .map(|v| &v.ty)
    }

    /// Index of the op producing a value, if an op produces it.
    pub fn producer(&self, name: &str) -> Option<usize> {
        self.operations
            .iter()
            .position(|op| op.outputs.iter().any(|v| v.name == name))
    }
}

/// A MIL program: named functions (Core ML models use one, "main") and build information.
#[derive(Debug, Clone)]
pub struct Program {
    /// Functions by name.
    pub functions: BTreeMap<String, Function>,
    /// The `buildInfo` attribute (string → string).
    pub build_info: BTreeMap<String, String>,
}

impl Program {
    /// A program with a single function called "main".
    pub fn with_main(main: Function) -> Self {
        Program {
            functions: BTreeMap::from([("main".to_string(), main)]),
            build_info: BTreeMap::new(),
        }
    }

    /// The "main" function.
    pub fn main(&self) -> Option<&Function> {
        self.functions.get("main")
    }

    /// Every constant of every op of every function.
    pub fn constants(&self) -> impl Iterator<Item = &ConstValue> {
        self.functions
            .values()
            .flat_map(|f| &f.operations)
            .flat_map(Operation::constants)
    }

    /// The "main" function, mutably.
    pub fn main_mut(&mut self) -> Option<&mut Function> {
        self.functions.get_mut("main")
    }
}
