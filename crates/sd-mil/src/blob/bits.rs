//! Bit packing of sub-byte elements (u1, u2, u3, u4, u6, i4) as `weight.bin` stores them.
//!
//! Element `i` of an `n`-bit stream occupies bits `[i·n, i·n + n)` of the byte stream, least
//! significant bit first; 3- and 6-bit elements may straddle two bytes. The stream is
//! `ceil(count·n / 8)` bytes long and the unused high bits of the last byte are zero.
//!
//! Packing a tensor in pieces whose element counts are multiples of 8 and concatenating the
//! results gives the same bytes as packing it at once, which is how a streaming writer packs
//! huge tensors.

/// Number of bytes that `count` elements of `bits` bits each occupy when packed
/// (`ceil(count·bits / 8)`), saturating at `u64::MAX`.
pub fn packed_len(count: u64, bits: u32) -> u64 {
    let bits = u64::from(bits);
    let whole = (count / 8).saturating_mul(bits);
    whole.saturating_add(((count % 8) * bits).div_ceil(8))
}

/// Unused bits in the last byte when `count` elements of `bits` bits are packed
/// (`8·packed_len − count·bits`); always below 8.
pub fn padding_bits(count: u64, bits: u32) -> u64 {
    let tail = ((count % 8) * u64::from(bits)) % 8;
    (8 - tail) % 8
}

/// Packs one element per input byte into an `bits`-bit stream, least significant bit first.
///
/// Only the low `bits` bits of each value are kept. `bits = 8` copies the input.
///
/// # Panics
///
/// If `bits` is not in `1..=8` (a caller error, never caused by file contents).
pub fn pack_bits(values: &[u8], bits: u32) -> Vec<u8> {
    assert!(
        (1..=8).contains(&bits),
        "pack_bits: bits must be 1..=8, got {bits}"
    );
    match bits {
        1 => pack_n::<1>(values),
        2 => pack_n::<2>(values),
        3 => pack_n::<3>(values),
        4 => pack_n::<4>(values),
        5 => pack_n::<5>(values),
        6 => pack_n::<6>(values),
        7 => pack_n::<7>(values),
        _ => values.to_vec(),
    }
}

/// [`pack_bits`] into a caller's buffer: `out` must hold exactly
/// [`packed_len`]`(values.len(), bits)` bytes. Packing a long run piece by piece gives the
/// same bytes as packing it whole when every piece but the last is a multiple of 8 elements.
///
/// # Panics
///
/// If `bits` is not in `1..=8` or `out` has another length (caller errors).
pub fn pack_bits_into(values: &[u8], bits: u32, out: &mut [u8]) {
    assert!(
        (1..=8).contains(&bits),
        "pack_bits_into: bits must be 1..=8, got {bits}"
    );
    assert_eq!(
        out.len() as u64,
        packed_len(values.len() as u64, bits),
        "pack_bits_into: output length"
    );
    match bits {
        1 => pack_into::<1>(values, out),
        2 => pack_into::<2>(values, out),
        3 => pack_into::<3>(values, out),
        4 => pack_into::<4>(values, out),
        5 => pack_into::<5>(values, out),
        6 => pack_into::<6>(values, out),
        7 => pack_into::<7>(values, out),
        _ => out.copy_from_slice(values),
    }
}

/// [`pack_bits`] for a width known at compile time, so that the shifts are constants.
fn pack_n<const BITS: usize>(values: &[u8]) -> Vec<u8> {
    let len = usize::try_from(packed_len(values.len() as u64, BITS as u32)).unwrap_or(usize::MAX);
    let mut out = vec![0u8; len];
    pack_into::<BITS>(values, &mut out);
    out
}

/// [`pack_bits_into`] for a width known at compile time.
fn pack_into<const BITS: usize>(values: &[u8], out: &mut [u8]) {
    if BITS == 4 {
        // Nibble pairs: the compiler vectorizes this form best.
        let mut pairs = values.chunks_exact(2);
        for (dst, p) in out.iter_mut().zip(pairs.by_ref()) {
            *dst = (p[0] & 0x0f) | (p[1] << 4);
        }
        if let [last] = pairs.remainder() {
            out[out.len() - 1] = last & 0x0f;
        }
        return;
    }
    // Eight elements fill exactly `BITS` whole bytes.
    let full = values.len() / 8;
    for (group, dst) in values.chunks_exact(8).zip(out.chunks_exact_mut(BITS)) {
        dst.copy_from_slice(&pack_group::<BITS>(group).to_le_bytes()[..BITS]);
    }
    let tail = pack_group::<BITS>(&values[full * 8..]).to_le_bytes();
    let done = full * BITS;
    let rest = out.len() - done;
    out[done..].copy_from_slice(&tail[..rest]);
}

/// Up to eight elements packed into the low bits of a word.
#[inline(always)]
fn pack_group<const BITS: usize>(values: &[u8]) -> u64 {
    let mask = (1u64 << BITS) - 1;
    let mut acc = 0u64;
    for (i, &v) in values.iter().enumerate() {
        acc |= (u64::from(v) & mask) << (i * BITS);
    }
    acc
}

/// Unpacks `count` elements of `bits` bits from `bytes`, one element per output byte.
///
/// If `bytes` holds fewer than `count` whole elements, the result is shorter than `count`
/// (callers that need exactly `count` check the length).
///
/// # Panics
///
/// If `bits` is not in `1..=8` (a caller error, never caused by file contents).
pub fn unpack_bits(bytes: &[u8], bits: u32, count: usize) -> Vec<u8> {
    assert!(
        (1..=8).contains(&bits),
        "unpack_bits: bits must be 1..=8, got {bits}"
    );
    let available = (bytes.len() as u64).saturating_mul(8) / u64::from(bits);
    let n = usize::try_from(available).map_or(count, |a| a.min(count));
    match bits {
        1 => unpack_n::<1>(bytes, n),
        2 => unpack_n::<2>(bytes, n),
        3 => unpack_n::<3>(bytes, n),
        4 => unpack_n::<4>(bytes, n),
        5 => unpack_n::<5>(bytes, n),
        6 => unpack_n::<6>(bytes, n),
        7 => unpack_n::<7>(bytes, n),
        _ => bytes[..n].to_vec(),
    }
}

/// [`unpack_bits`] of exactly `n` elements (which `bytes` holds) for a width known at
/// compile time.
fn unpack_n<const BITS: usize>(bytes: &[u8], n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    // Eight elements come from exactly `BITS` whole bytes.
    let full = n / 8;
    for (dst, group) in out.chunks_exact_mut(8).zip(bytes.chunks_exact(BITS)) {
        dst.copy_from_slice(&unpack_group::<BITS>(group));
    }
    let tail = &bytes[(full * BITS).min(bytes.len())..];
    let values = unpack_group::<BITS>(&tail[..tail.len().min(BITS)]);
    out[full * 8..].copy_from_slice(&values[..n - full * 8]);
    out
}

/// Eight elements from the little-endian word made of `bytes` (at most `BITS` of them,
/// zero-extended).
#[inline(always)]
fn unpack_group<const BITS: usize>(bytes: &[u8]) -> [u8; 8] {
    let mut word = [0u8; 8];
    word[..bytes.len()].copy_from_slice(bytes);
    let acc = u64::from_le_bytes(word);
    let mask = (1u64 << BITS) - 1;
    std::array::from_fn(|i| ((acc >> (i * BITS)) & mask) as u8)
}

/// Packs signed 4-bit values (two's-complement nibbles, −8..=7) as an i4 stream.
///
/// Only the low nibble of each value is kept, so values outside −8..=7 wrap.
pub fn pack_i4(values: &[i8]) -> Vec<u8> {
    let nibbles: Vec<u8> = values.iter().map(|&v| v as u8 & 0x0f).collect();
    pack_bits(&nibbles, 4)
}

/// Unpacks `count` signed 4-bit values from an i4 stream (shorter if `bytes` runs out).
pub fn unpack_i4(bytes: &[u8], count: usize) -> Vec<i8> {
    unpack_bits(bytes, 4, count)
        .into_iter()
        .map(|n| ((n << 4) as i8) >> 4)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit-by-bit reference packer, written straight from the layout rule.
    fn reference_pack(values: &[u8], bits: u32) -> Vec<u8> {
        let mut out = vec![0u8; packed_len(values.len() as u64, bits) as usize];
        for (i, &v) in values.iter().enumerate() {
            for b in 0..bits as usize {
                if (v >> b) & 1 == 1 {
                    let pos = i * bits as usize + b;
                    out[pos / 8] |= 1 << (pos % 8);
                }
            }
        }
        out
    }

    fn pseudo_random(n: usize, bits: u32, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x & ((1u32 << bits) - 1)) as u8
            })
            .collect()
    }

    #[test]
    fn packed_len_and_padding() {
        assert_eq!(packed_len(5, 3), 2);
        assert_eq!(padding_bits(5, 3), 1);
        assert_eq!(packed_len(3, 4), 2);
        assert_eq!(padding_bits(3, 4), 4);
        assert_eq!(packed_len(1, 6), 1);
        assert_eq!(padding_bits(1, 6), 2);
        assert_eq!(packed_len(288, 16), 576);
        assert_eq!(padding_bits(288, 16), 0);
        assert_eq!(packed_len(0, 3), 0);
        assert_eq!(padding_bits(0, 3), 0);
        assert_eq!(packed_len(u64::MAX, 32), u64::MAX);
        for bits in 1..=8 {
            for count in 0..40u64 {
                assert_eq!(
                    8 * packed_len(count, bits) - count * u64::from(bits),
                    padding_bits(count, bits)
                );
            }
        }
    }

    #[test]
    fn matches_reference_for_all_widths_and_lengths() {
        for bits in 1..=8 {
            for n in 0..50 {
                let values = pseudo_random(n, bits, n as u32 + bits);
                let packed = pack_bits(&values, bits);
                assert_eq!(packed, reference_pack(&values, bits), "bits {bits} n {n}");
                assert_eq!(unpack_bits(&packed, bits, n), values, "bits {bits} n {n}");
            }
        }
    }

    #[test]
    fn known_bytes() {
        // 3-bit values 1,7,3,5,2 as coremltools writes them.
        assert_eq!(pack_bits(&[1, 7, 3, 5, 2], 3), [0xf9, 0x2a]);
        // i4 −8, −1, 7.
        assert_eq!(pack_i4(&[-8, -1, 7]), [0xf8, 0x07]);
        assert_eq!(unpack_i4(&[0xf8, 0x07], 3), [-8, -1, 7]);
    }

    #[test]
    fn masks_high_bits_and_handles_short_input() {
        assert_eq!(pack_bits(&[0xff, 0xff], 2), [0x0f]);
        assert_eq!(unpack_bits(&[0xff], 3, 10), [7, 7]);
        assert_eq!(unpack_bits(&[], 1, 4), Vec::<u8>::new());
        assert_eq!(unpack_bits(&[1, 2], 8, 1), [1]);
    }

    #[test]
    fn chunked_packing_concatenates() {
        for bits in [1, 2, 3, 4, 6] {
            let values = pseudo_random(83, bits, 7);
            let whole = pack_bits(&values, bits);
            let pieces: Vec<u8> = values.chunks(16).flat_map(|c| pack_bits(c, bits)).collect();
            assert_eq!(pieces, whole);
        }
    }

    #[test]
    fn i4_round_trip() {
        let values: Vec<i8> = (-8..=7).chain([3, -5, 0]).collect();
        assert_eq!(unpack_i4(&pack_i4(&values), values.len()), values);
    }

    #[test]
    #[should_panic(expected = "bits must be 1..=8")]
    fn rejects_wide_bits() {
        pack_bits(&[1], 16);
    }
}
