//! Kernels: one function per op type, kept in a [`Registry`] keyed by op type so that a
//! faster implementation of one op replaces one entry.
//!
//! A kernel receives a [`Ctx`] holding the op's bound parameters — runtime values, and
//! constants materialized once at load — and returns the op's outputs. Values are burn float
//! primitives tagged with their MIL element type ([`Val`]); int32 and bool values are held as
//! exact floats (integers up to 2²⁴, ample for the indices and token ids of these programs).

mod activation;
pub mod const_tensor;
pub mod constexpr;
pub(crate) mod conv;
pub mod cpu;
mod elementwise;
mod gather;
mod linalg;
mod norm;
mod reduce;
pub(crate) mod shape;
pub(crate) mod util;

pub use activation::{Activation, softmax as softmax_generic};
pub use const_tensor::ConstTensor;
pub use constexpr::{decompress, is_constexpr};
pub use conv::{Conv2dGeometry, conv2d_generic};
pub use linalg::{attention_generic, linear_generic, matmul_generic};
pub use norm::{group_norm_generic, layer_norm_generic};
pub use util::narrow_generic;

use crate::backend::RtBackend;
use burn_tensor::TensorMetadata;
use burn_tensor::ops::FloatTensor;
use sd_mil::catalogue::{self, Default as PDefault, OpSpec};
use sd_mil::{DType, TensorType};
use std::collections::HashMap;

/// A runtime value: a float primitive and the MIL element type it stands for.
#[derive(Debug, Clone)]
pub struct Val<B: RtBackend> {
    /// The data (f32 storage).
    pub t: FloatTensor<B>,
    /// MIL element type (fp16, fp32, int32, bool…).
    pub dtype: DType,
}

impl<B: RtBackend> Val<B> {
    /// A value of the given element type.
    pub fn new(t: FloatTensor<B>, dtype: DType) -> Self {
        Val { t, dtype }
    }
    /// Its dimensions.
    pub fn shape(&self) -> Vec<usize> {
        self.t.shape().to_vec()
    }
    /// Its rank.
    pub fn rank(&self) -> usize {
        self.t.shape().num_dims()
    }
}

/// A kernel's failure; the planner adds the op's name and type.
#[derive(Debug, Clone)]
pub struct KernelError {
    /// The parameter at fault, if one is.
    pub param: Option<String>,
    /// What went wrong.
    pub reason: String,
}

impl KernelError {
    /// A failure not tied to a parameter.
    pub fn new(reason: impl Into<String>) -> Self {
        KernelError {
            param: None,
            reason: reason.into(),
        }
    }
    /// A failure about one parameter.
    pub fn param(param: &str, reason: impl Into<String>) -> Self {
        KernelError {
            param: Some(param.to_string()),
            reason: reason.into(),
        }
    }
}

/// Kernel result.
pub type KResult<T> = Result<T, KernelError>;

/// A kernel: computes an op's outputs from its bound parameters.
pub type KernelFn<B> = fn(&mut Ctx<'_, B>) -> KResult<Vec<Val<B>>>;

/// A constant known at load time: host-side small values (attributes) and, when a kernel
/// reads it as a tensor, its materialized backend tensor.
#[derive(Debug, Clone)]
pub struct ConstEntry<B: RtBackend> {
    /// Value name.
    pub name: String,
    /// Its type.
    pub ty: TensorType,
    /// Integer elements (integer and bool constants of ≤ 4096 elements).
    pub ints: Option<Vec<i64>>,
    /// Float elements (constants of ≤ 4096 elements).
    pub floats: Option<Vec<f32>>,
    /// The string of a string constant.
    pub string: Option<String>,
    /// The backend tensor, when some op reads the constant as a tensor (large float
    /// constants are made on first read).
    pub tensor: ConstTensor<B>,
}

/// One bound element of a parameter.
pub enum In<'a, B: RtBackend> {
    /// A runtime value (taken at its last use, else cloned).
    Val(Option<Val<B>>),
    /// A load-time constant.
    Const(&'a ConstEntry<B>),
}

/// What a kernel sees of its op.
pub struct Ctx<'a, B: RtBackend> {
    /// Op name.
    pub name: &'a str,
    /// Op type.
    pub op_type: &'a str,
    /// The catalogue form, when the op is a catalogue op (fused ops have none).
    pub spec: Option<&'static OpSpec>,
    /// Device to create tensors on.
    pub device: &'a B::Device,
    /// Output types as the program declares them.
    pub out_types: &'a [TensorType],
    /// Bound parameters.
    pub args: Vec<(&'a str, Vec<In<'a, B>>)>,
}

impl<'a, B: RtBackend> Ctx<'a, B> {
    fn find(&mut self, p: &str) -> Option<&mut Vec<In<'a, B>>> {
        self.args.iter_mut().find(|(n, _)| *n == p).map(|(_, v)| v)
    }

    /// Whether the parameter is bound.
    pub fn has(&self, p: &str) -> bool {
        self.args.iter().any(|(n, v)| *n == p && !v.is_empty())
    }

    fn take(i: &mut In<'a, B>, p: &str) -> KResult<Val<B>> {
        match i {
            In::Val(v) => v
                .take()
                .ok_or_else(|| KernelError::param(p, "value read twice")),
            In::Const(c) => c.tensor.get().cloned().ok_or_else(|| {
                KernelError::param(p, format!("constant `{}` is not a readable tensor", c.name))
            }),
        }
    }

    /// The single tensor bound to `p`.
    pub fn tensor(&mut self, p: &str) -> KResult<Val<B>> {
        self.opt_tensor(p)?
            .ok_or_else(|| KernelError::param(p, "required parameter is not bound"))
    }

    /// The tensor bound to `p`, if bound.
    pub fn opt_tensor(&mut self, p: &str) -> KResult<Option<Val<B>>> {
        match self.find(p) {
            Some(v) if v.len() == 1 => Ok(Some(Self::take(&mut v[0], p)?)),
            Some(v) if v.is_empty() => Ok(None),
            Some(_) => Err(KernelError::param(p, "expected one value, got several")),
            None => Ok(None),
        }
    }

    /// All tensors bound to a variadic parameter.
    pub fn tensors(&mut self, p: &str) -> KResult<Vec<Val<B>>> {
        let v = self
            .find(p)
            .ok_or_else(|| KernelError::param(p, "required parameter is not bound"))?;
        v.iter_mut().map(|i| Self::take(i, p)).collect()
    }

    fn default_of(&self, p: &str) -> Option<PDefault> {
        self.spec.and_then(|s| s.param(p)).map(|ps| ps.default)
    }

    /// Host integers bound to `p` (constant, or a small runtime value read back), else the
    /// catalogue's integer/bool default, else `None`.
    pub fn opt_ints(&mut self, p: &str) -> KResult<Option<Vec<i64>>> {
        if let Some(v) = self.find(p)
            && let Some(first) = v.first_mut()
        {
            return match first {
                In::Const(c) => c
                    .ints
                    .clone()
                    .or_else(|| {
                        c.floats
                            .as_ref()
                            .map(|f| f.iter().map(|x| *x as i64).collect())
                    })
                    .map(Some)
                    .ok_or_else(|| {
                        KernelError::param(
                            p,
                            format!("constant `{}` is not a small integer tensor", c.name),
                        )
                    }),
                In::Val(Some(val)) => Ok(Some(
                    util::to_vec::<B>(val.t.clone())
                        .into_iter()
                        .map(|x| x as i64)
                        .collect(),
                )),
                In::Val(None) => Err(KernelError::param(p, "value already taken")),
            };
        }
        Ok(match self.default_of(p) {
            Some(PDefault::Int(i)) => Some(vec![i]),
            Some(PDefault::Bool(b)) => Some(vec![b as i64]),
            _ => None,
        })
    }

    /// Host floats bound to `p`, else the catalogue's numeric default.
    pub fn opt_floats(&mut self, p: &str) -> KResult<Option<Vec<f32>>> {
        if let Some(v) = self.find(p)
            && let Some(first) = v.first_mut()
        {
            return match first {
                In::Const(c) => c.floats.clone().map(Some).ok_or_else(|| {
                    KernelError::param(
                        p,
                        format!("constant `{}` is not a small numeric tensor", c.name),
                    )
                }),
                In::Val(Some(val)) => Ok(Some(util::to_vec::<B>(val.t.clone()))),
                In::Val(None) => Err(KernelError::param(p, "value already taken")),
            };
        }
        Ok(match self.default_of(p) {
            Some(PDefault::Int(i)) => Some(vec![i as f32]),
            Some(PDefault::Float(f)) => Some(vec![f as f32]),
            Some(PDefault::Bool(b)) => Some(vec![b as i32 as f32]),
            _ => None,
        })
    }

    /// Required host integers.
    pub fn ints(&mut self, p: &str) -> KResult<Vec<i64>> {
        self.opt_ints(p)?
            .ok_or_else(|| KernelError::param(p, "required parameter is not bound"))
    }

    /// One integer (a scalar or a one-element tensor).
    pub fn int(&mut self, p: &str) -> KResult<i64> {
        match self.ints(p)?.as_slice() {
            [v] => Ok(*v),
            v => Err(KernelError::param(
                p,
                format!("expected one integer, got {v:?}"),
            )),
        }
    }

    /// One float.
    pub fn float(&mut self, p: &str) -> KResult<f32> {
        match self.opt_floats(p)?.as_deref() {
            Some([v]) => Ok(*v),
            Some(v) => Err(KernelError::param(
                p,
                format!("expected one number, got {v:?}"),
            )),
            None => Err(KernelError::param(p, "required parameter is not bound")),
        }
    }

    /// One bool.
    pub fn bool(&mut self, p: &str) -> KResult<bool> {
        Ok(self.int(p)? != 0)
    }

    /// A string parameter, else the catalogue's string default.
    pub fn string(&mut self, p: &str) -> KResult<String> {
        if let Some(v) = self.find(p)
            && let Some(In::Const(c)) = v.first()
        {
            return c
                .string
                .clone()
                .ok_or_else(|| KernelError::param(p, "expected a string constant"));
        }
        match self.default_of(p) {
            Some(PDefault::Str(s)) => Ok(s.to_string()),
            _ => Err(KernelError::param(
                p,
                "required string parameter is not bound",
            )),
        }
    }

    /// The declared type of output `i`.
    pub fn out(&self, i: usize) -> KResult<&TensorType> {
        self.out_types
            .get(i)
            .ok_or_else(|| KernelError::new(format!("op declares no output {i}")))
    }

    /// A value of output `i`'s declared element type.
    pub fn val(&self, t: FloatTensor<B>, i: usize) -> KResult<Val<B>> {
        Ok(Val::new(t, self.out(i)?.dtype))
    }
}

/// Kernels by op type.
pub struct Registry<B: RtBackend> {
    map: HashMap<String, KernelFn<B>>,
}

impl<B: RtBackend> Default for Registry<B> {
    fn default() -> Self {
        Self::standard()
    }
}

impl<B: RtBackend> Registry<B> {
    /// Every catalogue op's kernel, and the kernels of the fused ops the passes create.
    pub fn standard() -> Self {
        let mut r = Registry {
            map: HashMap::new(),
        };
        activation::register(&mut r);
        conv::register(&mut r);
        elementwise::register(&mut r);
        gather::register(&mut r);
        linalg::register(&mut r);
        norm::register(&mut r);
        reduce::register(&mut r);
        shape::register(&mut r);
        r
    }

    /// Sets (or replaces) the kernel of an op type.
    pub fn insert(&mut self, op_type: &str, k: KernelFn<B>) {
        self.map.insert(op_type.to_string(), k);
    }

    /// The kernel of an op type.
    pub fn get(&self, op_type: &str) -> Option<KernelFn<B>> {
        self.map.get(op_type).copied()
    }

    /// Whether a catalogue op is handled: by a kernel, or (constexpr ops) at load time.
    pub fn handles(&self, op_type: &str) -> bool {
        self.map.contains_key(op_type) || is_constexpr(op_type) || op_type == "const"
    }
}

/// Every catalogue op name.
pub fn catalogue_ops() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = catalogue::all().map(|s| s.name).collect();
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests;
