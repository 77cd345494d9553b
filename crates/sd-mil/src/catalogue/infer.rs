//! The context a type rule reads: the types and constant values bound to each parameter.

use crate::error::ProgramError;
use crate::{ConstValue, DType, Opset, TensorType};

use super::validate::ValueInfo;

/// Types and constant values bound to an op's parameters, handed to its type rule.
#[derive(Debug)]
pub struct InferCtx<'a> {
    /// Op name.
    pub op: &'a str,
    /// Op type.
    pub op_type: &'a str,
    /// The function's opset.
    pub opset: Opset,
    pub(crate) args: Vec<(&'a str, Vec<ValueInfo<'a>>)>,
}

impl<'a> InferCtx<'a> {
    /// An error about a parameter's value.
    pub fn invalid(&self, param: &str, reason: impl Into<String>) -> ProgramError {
        ProgramError::InvalidValue {
            op: self.op.to_string(),
            op_type: self.op_type.to_string(),
            param: param.to_string(),
            reason: reason.into(),
        }
    }

    fn missing(&self, param: &str) -> ProgramError {
        ProgramError::MissingInput {
            op: self.op.to_string(),
            op_type: self.op_type.to_string(),
            param: param.to_string(),
        }
    }

    /// The values bound to a parameter (empty when unbound).
    pub fn values(&self, param: &str) -> &[ValueInfo<'a>] {
        self.args
            .iter()
            .find(|(p, _)| *p == param)
            .map(|(_, v)| v.as_slice())
            .unwrap_or(&[])
    }

    /// Whether the parameter is bound.
    pub fn has(&self, param: &str) -> bool {
        !self.values(param).is_empty()
    }

    /// The type of a bound parameter; an error when unbound.
    pub fn ty(&self, param: &str) -> Result<&'a TensorType, ProgramError> {
        self.opt_ty(param).ok_or_else(|| self.missing(param))
    }

    /// The type of a parameter, if bound.
    pub fn opt_ty(&self, param: &str) -> Option<&'a TensorType> {
        self.values(param).first().map(|v| v.ty)
    }

    /// The types of a variadic parameter.
    pub fn tys(&self, param: &str) -> Vec<&'a TensorType> {
        self.values(param).iter().map(|v| v.ty).collect()
    }

    /// The constant value of a parameter: `None` when unbound, an error when computed.
    pub fn konst(&self, param: &str) -> Result<Option<&'a ConstValue>, ProgramError> {
        match self.values(param).first() {
            None => Ok(None),
            Some(v) => v.konst.map(Some).ok_or_else(|| ProgramError::NotConst {
                op: self.op.to_string(),
                op_type: self.op_type.to_string(),
                param: param.to_string(),
            }),
        }
    }

    /// A constant integer list (any integer type), if bound.
    pub fn ints(&self, param: &str) -> Result<Option<Vec<i64>>, ProgramError> {
        match self.konst(param)? {
            None => Ok(None),
            Some(c) => c
                .to_i64_vec()
                .map(Some)
                .ok_or_else(|| self.invalid(param, format!("expected integers, got {}", c.ty))),
        }
    }

    /// A required constant integer list.
    pub fn req_ints(&self, param: &str) -> Result<Vec<i64>, ProgramError> {
        self.ints(param)?.ok_or_else(|| self.missing(param))
    }

    /// A constant integer scalar, or `default` when unbound.
    pub fn int_or(&self, param: &str, default: i64) -> Result<i64, ProgramError> {
        match self.ints(param)? {
            None => Ok(default),
            Some(v) if v.len() == 1 => Ok(v[0]),
            Some(v) => Err(self.invalid(param, format!("expected one integer, got {}", v.len()))),
        }
    }

    /// A constant bool scalar, or `default` when unbound.
    pub fn bool_or(&self, param: &str, default: bool) -> Result<bool, ProgramError> {
        Ok(self.int_or(param, default as i64)? != 0)
    }

    /// A constant string scalar, or `default` when unbound.
    pub fn str_or(&self, param: &str, default: &'a str) -> Result<&'a str, ProgramError> {
        match self.konst(param)? {
            None => Ok(default),
            Some(c) => c
                .as_str()
                .ok_or_else(|| self.invalid(param, format!("expected a string, got {}", c.ty))),
        }
    }

    /// A constant float list (any numeric type), if bound.
    pub fn floats(&self, param: &str) -> Result<Option<Vec<f32>>, ProgramError> {
        match self.konst(param)? {
            None => Ok(None),
            Some(c) => c
                .to_f32_vec()
                .map(Some)
                .ok_or_else(|| self.invalid(param, format!("expected numbers, got {}", c.ty))),
        }
    }

    /// An axis in `[-rank, rank)` made non-negative.
    pub fn axis(&self, param: &str, axis: i64, rank: usize) -> Result<usize, ProgramError> {
        let r = rank as i64;
        if axis < -r || axis >= r {
            return Err(self.invalid(
                param,
                format!("axis {axis} is out of range for rank {rank}"),
            ));
        }
        Ok(if axis < 0 {
            (axis + r) as usize
        } else {
            axis as usize
        })
    }

    /// Requires two types to have the same element type.
    pub fn same_dtype(&self, param: &str, a: DType, b: DType) -> Result<(), ProgramError> {
        if a != b {
            return Err(ProgramError::WrongType {
                op: self.op.to_string(),
                op_type: self.op_type.to_string(),
                param: param.to_string(),
                expected: a.name().to_string(),
                found: b.name().to_string(),
            });
        }
        Ok(())
    }

    /// Requires a parameter's rank.
    pub fn rank_is(&self, param: &str, ty: &TensorType, rank: usize) -> Result<(), ProgramError> {
        if ty.rank() != rank {
            return Err(self.invalid(param, format!("expected rank {rank}, got {ty}")));
        }
        Ok(())
    }
}

/// The numpy-style broadcast of two shapes, or `None` when they do not broadcast.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::broadcast_shapes;

    #[test]
    fn broadcasting() {
        assert_eq!(broadcast_shapes(&[2, 1, 4], &[3, 1]), Some(vec![2, 3, 4]));
        assert_eq!(broadcast_shapes(&[], &[5]), Some(vec![5]));
        assert_eq!(broadcast_shapes(&[2, 3], &[4, 3]), None);
    }
}
