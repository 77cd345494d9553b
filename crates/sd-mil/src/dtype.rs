//! MIL element types and their codes in the protobuf and in `weight.bin`.

use crate::blob::BlobDtype;

/// The element type of a MIL tensor value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// Boolean, one byte per element in memory.
    Bool,
    /// UTF-8 string (only as scalars or string lists in parameters).
    String,
    /// IEEE half precision.
    F16,
    /// IEEE single precision.
    F32,
    /// IEEE double precision.
    F64,
    /// bfloat16.
    BF16,
    /// Signed 4-bit integer (two's complement nibble).
    I4,
    /// Signed 8-bit integer.
    I8,
    /// Signed 16-bit integer.
    I16,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 1-bit integer.
    U1,
    /// Unsigned 2-bit integer.
    U2,
    /// Unsigned 3-bit integer.
    U3,
    /// Unsigned 4-bit integer.
    U4,
    /// Unsigned 6-bit integer.
    U6,
    /// Unsigned 8-bit integer.
    U8,
    /// Unsigned 16-bit integer.
    U16,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 64-bit integer.
    U64,
    /// 8-bit float, 4 exponent bits, finite only.
    F8E4M3FN,
    /// 8-bit float, 5 exponent bits.
    F8E5M2,
}

const ALL: [DType; 22] = [
    DType::Bool,
    DType::String,
    DType::F16,
    DType::F32,
    DType::F64,
    DType::BF16,
    DType::I4,
    DType::I8,
    DType::I16,
    DType::I32,
    DType::I64,
    DType::U1,
    DType::U2,
    DType::U3,
    DType::U4,
    DType::U6,
    DType::U8,
    DType::U16,
    DType::U32,
    DType::U64,
    DType::F8E4M3FN,
    DType::F8E5M2,
];

impl DType {
    /// Every element type.
    pub fn all() -> &'static [DType] {
        &ALL
    }

    /// The `DataType` code in MIL.proto.
    pub fn proto_code(self) -> i32 {
        match self {
            DType::Bool => 1,
            DType::String => 2,
            DType::F16 => 10,
            DType::F32 => 11,
            DType::F64 => 12,
            DType::BF16 => 13,
            DType::I8 => 21,
            DType::I16 => 22,
            DType::I32 => 23,
            DType::I64 => 24,
            DType::I4 => 25,
            DType::U8 => 31,
            DType::U16 => 32,
            DType::U32 => 33,
            DType::U64 => 34,
            DType::U4 => 35,
            DType::U2 => 36,
            DType::U1 => 37,
            DType::U6 => 38,
            DType::U3 => 39,
            DType::F8E4M3FN => 40,
            DType::F8E5M2 => 41,
        }
    }

    /// The element type for a MIL.proto `DataType` code.
    pub fn from_proto_code(code: i32) -> Option<DType> {
        ALL.iter().copied().find(|d| d.proto_code() == code)
    }

    /// The name MIL text and the `cast` op use ("fp16", "int32", "bool", …).
    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::String => "string",
            DType::F16 => "fp16",
            DType::F32 => "fp32",
            DType::F64 => "fp64",
            DType::BF16 => "bf16",
            DType::I4 => "int4",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::U1 => "uint1",
            DType::U2 => "uint2",
            DType::U3 => "uint3",
            DType::U4 => "uint4",
            DType::U6 => "uint6",
            DType::U8 => "uint8",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::F8E4M3FN => "fp8e4m3fn",
            DType::F8E5M2 => "fp8e5m2",
        }
    }

    /// The element type for a name as [`DType::name`] gives it.
    pub fn from_name(name: &str) -> Option<DType> {
        ALL.iter().copied().find(|d| d.name() == name)
    }

    /// Bits one element occupies in packed storage (strings: 0).
    pub fn bits(self) -> u32 {
        match self {
            DType::String => 0,
            DType::U1 => 1,
            DType::U2 => 2,
            DType::U3 => 3,
            DType::I4 | DType::U4 => 4,
            DType::U6 => 6,
            DType::Bool | DType::I8 | DType::U8 | DType::F8E4M3FN | DType::F8E5M2 => 8,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 16,
            DType::F32 | DType::I32 | DType::U32 => 32,
            DType::F64 | DType::I64 | DType::U64 => 64,
        }
    }

    /// Bytes that `count` elements occupy in packed little-endian storage.
    pub fn storage_len(self, count: usize) -> usize {
        (count * self.bits() as usize).div_ceil(8)
    }

    /// Whether the type is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(
            self,
            DType::F16 | DType::F32 | DType::F64 | DType::BF16 | DType::F8E4M3FN | DType::F8E5M2
        )
    }

    /// Whether the type is an integer type (signed or unsigned, any width).
    pub fn is_int(self) -> bool {
        !self.is_float() && !matches!(self, DType::Bool | DType::String)
    }

    /// Whether elements are narrower than a byte.
    pub fn is_sub_byte(self) -> bool {
        self.bits() < 8 && self != DType::String
    }

    /// The `weight.bin` blob type for this element type, if it can live in a blob.
    pub fn blob_dtype(self) -> Option<BlobDtype> {
        Some(match self {
            DType::F16 => BlobDtype::F16,
            DType::F32 => BlobDtype::F32,
            DType::U8 => BlobDtype::U8,
            DType::I8 => BlobDtype::I8,
            DType::BF16 => BlobDtype::BF16,
            DType::I16 => BlobDtype::I16,
            DType::U16 => BlobDtype::U16,
            DType::I4 => BlobDtype::I4,
            DType::U1 => BlobDtype::U1,
            DType::U2 => BlobDtype::U2,
            DType::U4 => BlobDtype::U4,
            DType::U3 => BlobDtype::U3,
            DType::U6 => BlobDtype::U6,
            DType::I32 => BlobDtype::I32,
            DType::U32 => BlobDtype::U32,
            DType::F8E4M3FN => BlobDtype::F8E4M3FN,
            DType::F8E5M2 => BlobDtype::F8E5M2,
            _ => return None,
        })
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_are_unique_and_round_trip() {
        for &d in DType::all() {
            assert_eq!(DType::from_proto_code(d.proto_code()), Some(d));
            assert_eq!(DType::from_name(d.name()), Some(d));
        }
        assert_eq!(DType::from_proto_code(99), None);
        assert_eq!(DType::F16.storage_len(3), 6);
        assert_eq!(DType::U6.storage_len(5), 4);
    }
}
