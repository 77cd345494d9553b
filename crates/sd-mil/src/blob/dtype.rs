//! The element types a `weight.bin` blob can hold, with their on-disk codes.

use std::fmt;

/// Element type of one blob, as stored in the `mil_dtype` field of its metadata record.
///
/// The discriminants are the on-disk codes (little-endian `u32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum BlobDtype {
    /// IEEE 754 half precision.
    F16 = 1,
    /// IEEE 754 single precision.
    F32 = 2,
    /// Unsigned 8-bit integer.
    U8 = 3,
    /// Signed 8-bit integer.
    I8 = 4,
    /// bfloat16.
    BF16 = 5,
    /// Signed 16-bit integer.
    I16 = 6,
    /// Unsigned 16-bit integer.
    U16 = 7,
    /// Signed 4-bit integer (two's-complement nibble, −8..=7), bit-packed.
    I4 = 8,
    /// Unsigned 1-bit integer, bit-packed.
    U1 = 9,
    /// Unsigned 2-bit integer, bit-packed.
    U2 = 10,
    /// Unsigned 4-bit integer, bit-packed.
    U4 = 11,
    /// Unsigned 3-bit integer, bit-packed (values may straddle bytes).
    U3 = 12,
    /// Unsigned 6-bit integer, bit-packed (values may straddle bytes).
    U6 = 13,
    /// Signed 32-bit integer.
    I32 = 14,
    /// Unsigned 32-bit integer.
    U32 = 15,
    /// 8-bit float, 4 exponent bits, 3 mantissa bits, finite-only with NaN.
    F8E4M3FN = 16,
    /// 8-bit float, 5 exponent bits, 2 mantissa bits.
    F8E5M2 = 17,
}

impl BlobDtype {
    /// Every dtype, in code order.
    pub const ALL: [BlobDtype; 17] = [
        Self::F16,
        Self::F32,
        Self::U8,
        Self::I8,
        Self::BF16,
        Self::I16,
        Self::U16,
        Self::I4,
        Self::U1,
        Self::U2,
        Self::U4,
        Self::U3,
        Self::U6,
        Self::I32,
        Self::U32,
        Self::F8E4M3FN,
        Self::F8E5M2,
    ];

    /// The on-disk code of this dtype.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The dtype with on-disk code `code`, or `None` for an unknown code.
    pub fn from_code(code: u32) -> Option<Self> {
        let index = usize::try_from(code).ok()?.checked_sub(1)?;
        Self::ALL.get(index).copied()
    }

    /// Bits per element.
    pub fn bits(self) -> u32 {
        match self {
            Self::U1 => 1,
            Self::U2 => 2,
            Self::U3 => 3,
            Self::I4 | Self::U4 => 4,
            Self::U6 => 6,
            Self::U8 | Self::I8 | Self::F8E4M3FN | Self::F8E5M2 => 8,
            Self::F16 | Self::BF16 | Self::I16 | Self::U16 => 16,
            Self::F32 | Self::I32 | Self::U32 => 32,
        }
    }

    /// Whether elements are narrower than a byte and stored bit-packed.
    pub fn is_sub_byte(self) -> bool {
        self.bits() < 8
    }

    /// The lower-case name coremltools uses for this type (`fp16`, `uint4`, `int8`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::F16 => "fp16",
            Self::F32 => "fp32",
            Self::U8 => "uint8",
            Self::I8 => "int8",
            Self::BF16 => "bf16",
            Self::I16 => "int16",
            Self::U16 => "uint16",
            Self::I4 => "int4",
            Self::U1 => "uint1",
            Self::U2 => "uint2",
            Self::U4 => "uint4",
            Self::U3 => "uint3",
            Self::U6 => "uint6",
            Self::I32 => "int32",
            Self::U32 => "uint32",
            Self::F8E4M3FN => "fp8e4m3fn",
            Self::F8E5M2 => "fp8e5m2",
        }
    }

    /// The dtype called `name` (as returned by [`BlobDtype::name`]), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }
}

impl fmt::Display for BlobDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.name(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_dense() {
        for (i, d) in BlobDtype::ALL.into_iter().enumerate() {
            assert_eq!(d.code(), i as u32 + 1);
            assert_eq!(BlobDtype::from_code(d.code()), Some(d));
            assert_eq!(BlobDtype::from_name(d.name()), Some(d));
        }
        assert_eq!(BlobDtype::from_code(0), None);
        assert_eq!(BlobDtype::from_code(18), None);
        assert_eq!(BlobDtype::from_code(u32::MAX), None);
    }

    #[test]
    fn documented_codes() {
        assert_eq!(BlobDtype::F16.code(), 1);
        assert_eq!(BlobDtype::I4.code(), 8);
        assert_eq!(BlobDtype::U4.code(), 11);
        assert_eq!(BlobDtype::U3.code(), 12);
        assert_eq!(BlobDtype::U6.code(), 13);
        assert_eq!(BlobDtype::F8E5M2.code(), 17);
    }

    #[test]
    fn widths() {
        let sub: Vec<_> = BlobDtype::ALL
            .into_iter()
            .filter(|d| d.is_sub_byte())
            .collect();
        assert_eq!(
            sub,
            [
                BlobDtype::I4,
                BlobDtype::U1,
                BlobDtype::U2,
                BlobDtype::U4,
                BlobDtype::U3,
                BlobDtype::U6
            ]
        );
        assert_eq!(BlobDtype::U6.bits(), 6);
        assert_eq!(BlobDtype::BF16.bits(), 16);
        assert_eq!(BlobDtype::U32.bits(), 32);
        assert_eq!(BlobDtype::F8E4M3FN.bits(), 8);
    }
}
