//! Sets of element types a parameter accepts.

use crate::DType;

/// A set of element types, as a bit mask over [`DType`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeSet(pub u32);

const fn bit(d: DType) -> u32 {
    1 << (d as u32)
}

impl TypeSet {
    /// fp16 and fp32: the activation types.
    pub const FLOAT: TypeSet = TypeSet(bit(DType::F16) | bit(DType::F32));
    /// int32 only.
    pub const INT32: TypeSet = TypeSet(bit(DType::I32));
    /// Index types: int8/16/32/64 and uint8/16 (gather indices).
    pub const INDEX: TypeSet = TypeSet(
        bit(DType::I8)
            | bit(DType::I16)
            | bit(DType::I32)
            | bit(DType::I64)
            | bit(DType::U8)
            | bit(DType::U16),
    );
    /// fp16, fp32 and int32: the numeric types of elementwise ops.
    pub const NUMERIC: TypeSet = TypeSet(Self::FLOAT.0 | bit(DType::I32));
    /// bool only.
    pub const BOOL: TypeSet = TypeSet(bit(DType::Bool));
    /// string only.
    pub const STRING: TypeSet = TypeSet(bit(DType::String));
    /// Scalars that scale: fp16, fp32 or int32.
    pub const SCALE: TypeSet = Self::NUMERIC;
    /// Any tensor type except strings.
    pub const ANY: TypeSet = TypeSet(!bit(DType::String));
    /// Weight storage types of compressed weights (every integer and float type).
    pub const STORAGE: TypeSet = TypeSet(!(bit(DType::String) | bit(DType::Bool)));

    /// Whether the set holds `d`.
    pub fn contains(self, d: DType) -> bool {
        self.0 & bit(d) != 0
    }

    /// The union of two sets.
    pub const fn or(self, other: TypeSet) -> TypeSet {
        TypeSet(self.0 | other.0)
    }

    /// The element types in the set, as names.
    pub fn names(self) -> String {
        DType::all()
            .iter()
            .filter(|d| self.contains(**d))
            .map(|d| d.name())
            .collect::<Vec<_>>()
            .join("|")
    }
}
