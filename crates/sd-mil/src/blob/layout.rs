//! Byte layout of `weight.bin`: the 64-byte header and the 64-byte metadata record of a blob.
//!
//! All integers are little-endian. Header: `count: u32`, `version: u32` (= 2), 7 × `u64` zero.
//! Metadata: `sentinel: u32` (0xDEADBEEF), `mil_dtype: u32`, `size_in_bytes: u64`,
//! `offset: u64` (absolute offset of the data), `padding_size_in_bits: u64`, 4 × `u64` zero.

/// Length of the file header.
pub const HEADER_LEN: u64 = 64;
/// Length of a blob's metadata record.
pub const METADATA_LEN: u64 = 64;
/// Metadata records start at multiples of this.
pub const ALIGNMENT: u64 = 64;
/// First field of every metadata record.
pub const SENTINEL: u32 = 0xDEAD_BEEF;
/// The only header version Core ML writes and this crate reads.
pub const VERSION: u32 = 2;

/// `offset` rounded up to the next multiple of [`ALIGNMENT`], or `None` on overflow.
pub fn align_up(offset: u64) -> Option<u64> {
    offset.checked_next_multiple_of(ALIGNMENT)
}

/// The header for a file holding `count` blobs.
pub(crate) fn encode_header(count: u32) -> [u8; HEADER_LEN as usize] {
    let mut out = [0u8; HEADER_LEN as usize];
    out[0..4].copy_from_slice(&count.to_le_bytes());
    out[4..8].copy_from_slice(&VERSION.to_le_bytes());
    out
}

/// The fields of a header: `(count, version)`.
pub(crate) fn decode_header(bytes: &[u8; HEADER_LEN as usize]) -> (u32, u32) {
    (le_u32(bytes, 0), le_u32(bytes, 4))
}

/// One metadata record, fields as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Metadata {
    /// Should be [`SENTINEL`].
    pub sentinel: u32,
    /// Blob dtype code.
    pub dtype_code: u32,
    /// Data length in bytes.
    pub size: u64,
    /// Absolute offset of the data.
    pub data_offset: u64,
    /// Unused bits in the last data byte.
    pub padding_bits: u64,
}

impl Metadata {
    /// The record's 64 bytes.
    pub fn encode(&self) -> [u8; METADATA_LEN as usize] {
        let mut out = [0u8; METADATA_LEN as usize];
        out[0..4].copy_from_slice(&self.sentinel.to_le_bytes());
        out[4..8].copy_from_slice(&self.dtype_code.to_le_bytes());
        out[8..16].copy_from_slice(&self.size.to_le_bytes());
        out[16..24].copy_from_slice(&self.data_offset.to_le_bytes());
        out[24..32].copy_from_slice(&self.padding_bits.to_le_bytes());
        out
    }

    /// Reads a record (the reserved fields are ignored).
    pub fn decode(bytes: &[u8; METADATA_LEN as usize]) -> Self {
        Self {
            sentinel: le_u32(bytes, 0),
            dtype_code: le_u32(bytes, 4),
            size: le_u64(bytes, 8),
            data_offset: le_u64(bytes, 16),
            padding_bits: le_u64(bytes, 24),
        }
    }
}

fn le_u32(bytes: &[u8; 64], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn le_u64(bytes: &[u8; 64], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_bytes() {
        let h = encode_header(3);
        assert_eq!(&h[..8], &[3, 0, 0, 0, 2, 0, 0, 0]);
        assert!(h[8..].iter().all(|&b| b == 0));
        assert_eq!(decode_header(&h), (3, 2));
    }

    #[test]
    fn metadata_bytes() {
        let m = Metadata {
            sentinel: SENTINEL,
            dtype_code: 12,
            size: 2,
            data_offset: 128,
            padding_bits: 1,
        };
        let bytes = m.encode();
        assert_eq!(&bytes[..8], &[0xef, 0xbe, 0xad, 0xde, 12, 0, 0, 0]);
        assert_eq!(&bytes[8..16], &2u64.to_le_bytes());
        assert_eq!(&bytes[16..24], &128u64.to_le_bytes());
        assert_eq!(&bytes[24..32], &1u64.to_le_bytes());
        assert!(bytes[32..].iter().all(|&b| b == 0));
        assert_eq!(Metadata::decode(&bytes), m);
    }

    #[test]
    fn alignment() {
        assert_eq!(align_up(0), Some(0));
        assert_eq!(align_up(64), Some(64));
        assert_eq!(align_up(65), Some(128));
        assert_eq!(align_up(704), Some(704));
        assert_eq!(align_up(u64::MAX), None);
    }
}
