//! The op catalogue: every op this project reads, writes or executes, described once.
//!
//! An [`OpSpec`] gives an op's parameters (name, accepted types, required or default, opsets)
//! and its type rule. The builder, the protobuf reader's validation and the executor all read
//! this one table; adding an op means adding one entry to one of the family files below.

mod activation;
mod attention;
mod constexpr;
mod conv;
mod elementwise;
mod gather;
mod infer;
mod linalg;
mod norm;
mod reduce;
mod shape;
mod types;
mod validate;

pub use infer::{InferCtx, broadcast_shapes};
pub use types::TypeSet;
pub use validate::{ValueInfo, infer_op};

use crate::error::ProgramError;
use crate::{Opset, TensorType};

/// How a parameter may be bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// One value, computed or constant.
    Tensor,
    /// One value that must be known when the program is built (a const op or inline value).
    Const,
    /// Any number (≥ 1) of values of one type (e.g. `concat.values`).
    Variadic,
}

/// A parameter's default when it is not bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Default {
    /// Must be bound.
    Required,
    /// May be absent; the op then does without it (e.g. a bias).
    Absent,
    /// An integer default.
    Int(i64),
    /// A float default.
    Float(f64),
    /// A boolean default.
    Bool(bool),
    /// A string default.
    Str(&'static str),
    /// A default derived from the other inputs (e.g. conv strides: 1 per spatial axis).
    Derived,
}

/// One parameter of an op.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    /// Parameter name, exactly as Core ML expects it.
    pub name: &'static str,
    /// Element types accepted.
    pub types: TypeSet,
    /// How it may be bound.
    pub kind: ParamKind,
    /// Default when unbound.
    pub default: Default,
    /// First opset that has the parameter.
    pub since: Opset,
    /// The parameter whose element type this one must share, and the last opset where that
    /// rule holds (None: every opset).
    pub same_dtype_as: Option<(&'static str, Option<Opset>)>,
}

impl ParamSpec {
    /// Whether the parameter must be bound.
    pub fn required(&self) -> bool {
        self.default == Default::Required
    }
}

/// Where an op's parameters live in the protobuf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamForm {
    /// Ordinary op inputs.
    Inputs,
    /// Attributes holding constant values (iOS16/17 constexpr ops).
    Attributes,
}

/// The type rule of an op: the output types from the parameters.
pub type InferFn = fn(&InferCtx<'_>) -> Result<Vec<TensorType>, ProgramError>;

/// The description of one op in one range of opsets.
#[derive(Debug, Clone, Copy)]
pub struct OpSpec {
    /// Op type name.
    pub name: &'static str,
    /// Parameters.
    pub params: &'static [ParamSpec],
    /// First opset of this form.
    pub since: Opset,
    /// Last opset of this form (None: still current).
    pub until: Option<Opset>,
    /// Where the parameters live.
    pub form: ParamForm,
    /// Type rule.
    pub infer: InferFn,
}

impl OpSpec {
    /// The parameter of this name.
    pub fn param(&self, name: &str) -> Option<&'static ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Whether this form exists in the opset.
    pub fn exists_in(&self, opset: Opset) -> bool {
        opset >= self.since && self.until.is_none_or(|u| opset <= u)
    }
}

/// Every op form in the catalogue.
pub fn all() -> impl Iterator<Item = &'static OpSpec> {
    [
        activation::OPS,
        attention::OPS,
        constexpr::OPS,
        conv::OPS,
        elementwise::OPS,
        gather::OPS,
        linalg::OPS,
        norm::OPS,
        reduce::OPS,
        shape::OPS,
    ]
    .into_iter()
    .flatten()
}

/// The form of op `name` that exists in `opset`.
pub fn lookup(name: &str, opset: Opset) -> Option<&'static OpSpec> {
    all().find(|s| s.name == name && s.exists_in(opset))
}

/// Where parameter `param` of op `op_type` comes in the catalogue's order (`usize::MAX` for
/// an op or parameter the catalogue does not know): readers keep parameters in this order.
pub fn param_position(op_type: &str, opset: Opset, param: &str) -> usize {
    lookup(op_type, opset)
        .and_then(|s| s.params.iter().position(|ps| ps.name == param))
        .unwrap_or(usize::MAX)
}

/// Whether any opset has an op called `name`.
pub fn is_known(name: &str) -> bool {
    all().any(|s| s.name == name)
}

/// Shorthand constructors for parameter tables.
pub(crate) mod p {
    use super::{Default, ParamKind, ParamSpec, TypeSet};
    use crate::Opset;

    /// A required tensor parameter.
    pub const fn req(name: &'static str, types: TypeSet) -> ParamSpec {
        ParamSpec {
            name,
            types,
            kind: ParamKind::Tensor,
            default: Default::Required,
            since: Opset::CoreML5,
            same_dtype_as: None,
        }
    }
    /// An optional tensor parameter with no default.
    pub const fn opt(name: &'static str, types: TypeSet) -> ParamSpec {
        ParamSpec {
            name,
            types,
            kind: ParamKind::Tensor,
            default: Default::Absent,
            since: Opset::CoreML5,
            same_dtype_as: None,
        }
    }
    /// A constant parameter with a default.
    pub const fn konst(name: &'static str, types: TypeSet, default: Default) -> ParamSpec {
        ParamSpec {
            name,
            types,
            kind: ParamKind::Const,
            default,
            since: Opset::CoreML5,
            same_dtype_as: None,
        }
    }
    /// A required variadic parameter.
    pub const fn variadic(name: &'static str, types: TypeSet) -> ParamSpec {
        ParamSpec {
            name,
            types,
            kind: ParamKind::Variadic,
            default: Default::Required,
            since: Opset::CoreML5,
            same_dtype_as: None,
        }
    }
    /// The same parameter, whose element type must equal that of `other`.
    pub const fn same(mut spec: ParamSpec, other: &'static str) -> ParamSpec {
        spec.same_dtype_as = Some((other, None));
        spec
    }
    /// The same parameter, whose element type must equal that of `other` up to opset `until`.
    pub const fn same_until(mut spec: ParamSpec, other: &'static str, until: Opset) -> ParamSpec {
        spec.same_dtype_as = Some((other, Some(until)));
        spec
    }
    /// The same parameter, first present in `opset`.
    pub const fn since(mut spec: ParamSpec, opset: Opset) -> ParamSpec {
        spec.since = opset;
        spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_per_opset() {
        for opset in [
            Opset::CoreML5,
            Opset::CoreML6,
            Opset::CoreML7,
            Opset::CoreML8,
        ] {
            let mut seen = std::collections::BTreeSet::new();
            for s in all().filter(|s| s.exists_in(opset)) {
                assert!(seen.insert(s.name), "{} twice in {:?}", s.name, opset);
            }
        }
    }

    #[test]
    fn param_names_are_unique() {
        for s in all() {
            let mut seen = std::collections::BTreeSet::new();
            for p in s.params {
                assert!(seen.insert(p.name), "{}.{} twice", s.name, p.name);
            }
        }
    }
}
