//! Building functions op by op, with output types inferred and parameters checked against the
//! catalogue as each op is added.

use crate::catalogue::{ValueInfo, infer_op};
use crate::error::ProgramError;
use crate::program::{Binding, Function, Operation, Opset, Var};
use crate::{ConstValue, MilError, TensorType};
use std::collections::{BTreeMap, HashMap};

/// Whether `name` matches MIL's identifier rule `[A-Za-z_][A-Za-z0-9_@]*`.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '@')
}

/// Builds one function. Each op is checked against the catalogue when it is added.
#[derive(Debug)]
pub struct FunctionBuilder {
    opset: Opset,
    inputs: Vec<Var>,
    operations: Vec<Operation>,
    /// Value name → (type, index of its `const` op).
    values: HashMap<String, (TensorType, Option<usize>)>,
    counters: HashMap<String, usize>,
}

impl FunctionBuilder {
    /// An empty function for `opset`.
    pub fn new(opset: Opset) -> Self {
        FunctionBuilder {
            opset,
            inputs: Vec::new(),
            operations: Vec::new(),
            values: HashMap::new(),
            counters: HashMap::new(),
        }
    }

    /// The opset being built for.
    pub fn opset(&self) -> Opset {
        self.opset
    }

    /// The type of a value defined so far.
    pub fn value_type(&self, name: &str) -> Option<&TensorType> {
        self.values.get(name).map(|(t, _)| t)
    }

    /// The constant value of a value defined so far, if it is a `const` op output.
    pub fn const_value(&self, name: &str) -> Option<&ConstValue> {
        let (_, idx) = self.values.get(name)?;
        self.operations[(*idx)?].const_value()
    }

    /// A fresh name `<prefix>_<n>` that is not yet used.
    pub fn unique_name(&mut self, prefix: &str) -> String {
        loop {
            let n = self.counters.entry(prefix.to_string()).or_insert(0);
            let name = format!("{prefix}_{n}");
            *n += 1;
            if !self.values.contains_key(&name) {
                return name;
            }
        }
    }

    fn define(
        &mut self,
        name: &str,
        ty: TensorType,
        konst: Option<usize>,
    ) -> Result<(), ProgramError> {
        if !is_identifier(name) {
            return Err(ProgramError::BadIdentifier {
                name: name.to_string(),
            });
        }
        if self.values.contains_key(name) {
            return Err(ProgramError::DuplicateValue {
                name: name.to_string(),
            });
        }
        self.values.insert(name.to_string(), (ty, konst));
        Ok(())
    }

    /// Adds a function input.
    pub fn input(&mut self, name: &str, ty: TensorType) -> Result<Var, ProgramError> {
        self.define(name, ty.clone(), None)?;
        let v = Var::new(name, ty);
        self.inputs.push(v.clone());
        Ok(v)
    }

    /// Adds a `const` op named `name` holding `value`.
    pub fn constant(&mut self, name: &str, value: ConstValue) -> Result<Var, ProgramError> {
        let ty = value.ty.clone();
        self.define(name, ty.clone(), Some(self.operations.len()))?;
        self.operations.push(Operation {
            op_type: "const".into(),
            name: name.to_string(),
            inputs: Vec::new(),
            outputs: vec![Var::new(name, ty.clone())],
            attributes: BTreeMap::from([("val".to_string(), value)]),
        });
        Ok(Var::new(name, ty))
    }

    /// Starts an op of type `op_type`.
    pub fn op(&mut self, op_type: &str) -> OpBuilder<'_> {
        OpBuilder {
            fb: self,
            op_type: op_type.to_string(),
            name: None,
            inputs: Vec::new(),
            literals: Vec::new(),
            attributes: BTreeMap::new(),
            output_names: None,
        }
    }

    /// Finishes the function, returning `outputs` from its block.
    pub fn finish(self, outputs: &[&Var]) -> Result<Function, ProgramError> {
        for o in outputs {
            if !self.values.contains_key(&o.name) {
                return Err(ProgramError::UndefinedValue {
                    op: "<outputs>".into(),
                    name: o.name.clone(),
                });
            }
        }
        Ok(Function {
            inputs: self.inputs,
            opset: self.opset,
            operations: self.operations,
            outputs: outputs.iter().map(|v| v.name.clone()).collect(),
        })
    }
}

/// One op being built; see [`FunctionBuilder::op`].
#[derive(Debug)]
pub struct OpBuilder<'a> {
    fb: &'a mut FunctionBuilder,
    op_type: String,
    name: Option<String>,
    inputs: Vec<(String, Vec<Binding>)>,
    literals: Vec<(String, ConstValue)>,
    attributes: BTreeMap<String, ConstValue>,
    output_names: Option<Vec<String>>,
}

impl OpBuilder<'_> {
    /// Names the op (and its single output); by default `<op_type>_<n>`.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    /// Binds a parameter to a value defined earlier.
    pub fn input(mut self, param: &str, value: &Var) -> Self {
        self.inputs
            .push((param.to_string(), vec![Binding::Name(value.name.clone())]));
        self
    }

    /// Binds a variadic parameter to several values.
    pub fn inputs(mut self, param: &str, values: &[&Var]) -> Self {
        let bs = values
            .iter()
            .map(|v| Binding::Name(v.name.clone()))
            .collect();
        self.inputs.push((param.to_string(), bs));
        self
    }

    /// Binds a parameter to a constant, materialized as a `const` op `<op>_<param>`.
    pub fn param(mut self, param: &str, value: impl Into<ConstValue>) -> Self {
        self.literals.push((param.to_string(), value.into()));
        self
    }

    /// Binds a parameter to an inline value (the iOS18 form of constexpr parameters).
    pub fn inline(mut self, param: &str, value: ConstValue) -> Self {
        self.inputs
            .push((param.to_string(), vec![Binding::Value(value)]));
        self
    }

    /// Sets a parameter held as an attribute (the iOS16/17 form of constexpr parameters).
    pub fn attr(mut self, param: &str, value: ConstValue) -> Self {
        self.attributes.insert(param.to_string(), value);
        self
    }

    /// Names the outputs (by default the op name, or `<op>_<i>` for several outputs).
    pub fn output_names(mut self, names: &[&str]) -> Self {
        self.output_names = Some(names.iter().map(|s| s.to_string()).collect());
        self
    }

    /// Checks the op, infers its output types and adds it (with its literal constants).
    pub fn build(self) -> Result<Vec<Var>, MilError> {
        let OpBuilder {
            fb,
            op_type,
            name,
            mut inputs,
            literals,
            attributes,
            output_names,
        } = self;
        let name = name.unwrap_or_else(|| fb.unique_name(&op_type));
        let mut consts = Vec::new();
        for (param, value) in literals {
            let cname = format!("{name}_{param}");
            consts.push(Operation {
                op_type: "const".into(),
                name: cname.clone(),
                inputs: Vec::new(),
                outputs: vec![Var::new(&cname, value.ty.clone())],
                attributes: BTreeMap::from([("val".to_string(), value)]),
            });
            inputs.push((param, vec![Binding::Name(cname)]));
        }
        let mut op = Operation {
            op_type,
            name: name.clone(),
            inputs,
            outputs: Vec::new(),
            attributes,
        };
        let types = {
            let lookup = |n: &str| -> Option<ValueInfo<'_>> {
                if let Some(c) = consts.iter().find(|c| c.name == n) {
                    let v = c.const_value()?;
                    return Some(ValueInfo {
                        ty: &v.ty,
                        konst: Some(v),
                    });
                }
                let (ty, idx) = fb.values.get(n)?;
                Some(ValueInfo {
                    ty,
                    konst: idx.and_then(|i| fb.operations[i].const_value()),
                })
            };
            infer_op(&op, fb.opset, &lookup)?
        };
        let names = match output_names {
            Some(n) if n.len() == types.len() => n,
            Some(n) => {
                return Err(MilError::Unsupported {
                    what: format!(
                        "op `{name}` gives {} outputs, {} names were given",
                        types.len(),
                        n.len()
                    ),
                });
            }
            None if types.len() == 1 => vec![name.clone()],
            None => (0..types.len()).map(|i| format!("{name}_{i}")).collect(),
        };
        for c in consts {
            fb.define(&c.name, c.outputs[0].ty.clone(), Some(fb.operations.len()))?;
            fb.operations.push(c);
        }
        op.outputs = names
            .iter()
            .zip(types)
            .map(|(n, t)| Var::new(n, t))
            .collect();
        for v in &op.outputs {
            fb.define(&v.name, v.ty.clone(), None)?;
        }
        let outs = op.outputs.clone();
        fb.operations.push(op);
        Ok(outs)
    }

    /// [`OpBuilder::build`] for an op with one output.
    pub fn build_one(self) -> Result<Var, MilError> {
        let mut v = self.build()?;
        if v.len() != 1 {
            return Err(MilError::Unsupported {
                what: format!("expected one output, got {}", v.len()),
            });
        }
        Ok(v.remove(0))
    }
}

impl From<i32> for ConstValue {
    fn from(v: i32) -> Self {
        ConstValue::scalar_i32(v)
    }
}

impl From<bool> for ConstValue {
    fn from(v: bool) -> Self {
        ConstValue::scalar_bool(v)
    }
}

impl From<f32> for ConstValue {
    fn from(v: f32) -> Self {
        ConstValue::scalar_f32(v)
    }
}

impl From<&str> for ConstValue {
    fn from(v: &str) -> Self {
        ConstValue::string(v)
    }
}

impl From<&[i32]> for ConstValue {
    fn from(v: &[i32]) -> Self {
        ConstValue::vec_i32(v)
    }
}

impl<const N: usize> From<[i32; N]> for ConstValue {
    fn from(v: [i32; N]) -> Self {
        ConstValue::vec_i32(&v)
    }
}

impl From<Vec<i32>> for ConstValue {
    fn from(v: Vec<i32>) -> Self {
        ConstValue::vec_i32(&v)
    }
}

impl<const N: usize> From<[bool; N]> for ConstValue {
    fn from(v: [bool; N]) -> Self {
        ConstValue::bools([N], &v).expect("a vector always fits")
    }
}
