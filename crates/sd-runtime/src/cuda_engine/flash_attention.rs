//! Launch geometry of `kernels/flash_attention.cu`, the fused flash-attention forward kernel
//! `sd_flash_attention_f16` (fp16 operands, fp32 accumulation, tensor cores through `mma.sync`).
//!
//! Launch rule, mirrored from the comment block at the top of the `.cu` file:
//! grid = (`ceil(sq / BLOCK_Q)`, heads, batch), block = (`THREADS`, 1, 1), dynamic shared memory =
//! [`shared_bytes`]`(d, dv)` bytes. Above 48 KiB (49152 bytes) the function's
//! `CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES` must be raised to that size before the launch.

/// Query rows per block (`SD_FA_BLOCK_Q`): the grid's x dimension is `ceil(sq / BLOCK_Q)`.
pub(crate) const BLOCK_Q: u32 = 64;

/// Threads per block (`SD_FA_THREADS`): four warps, each owning 16 query rows.
pub(crate) const THREADS: u32 = 128;

/// Largest head dimension `d` and value dimension `dv` the kernel takes (`SD_FA_MAX_D`).
pub(crate) const MAX_D: usize = 256;

/// Value columns per pass (`SD_FA_DV_CHUNK`); the V stages in shared memory hold at most this many.
const DV_CHUNK: usize = 80;

/// Dynamic shared memory in bytes for head dimension `d` and value dimension `dv`:
/// `384 * dp + 288 * min(dvp, 80) + 5120` with `dp`, `dvp` = `d`, `dv` rounded up to a multiple
/// of 16 (a Q tile and two stages of K and V tiles, rows padded by 8 halves).
///
/// None when d or dv is outside what the kernel supports (`1..=256`).
pub(crate) fn shared_bytes(d: usize, dv: usize) -> Option<u32> {
    if !(1..=MAX_D).contains(&d) || !(1..=MAX_D).contains(&dv) {
        return None;
    }
    let dp = d.div_ceil(16) * 16;
    let dvp = dv.div_ceil(16) * 16;
    u32::try_from(384 * dp + 288 * dvp.min(DV_CHUNK) + 5120).ok()
}

/// The CUDA C++ source, compiled at run time by NVRTC (entry point `sd_flash_attention_f16`).
pub(crate) const SOURCE: &str = include_str!("kernels/flash_attention.cu");

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of `#define NAME value` in [`SOURCE`].
    fn define(name: &str) -> u64 {
        SOURCE
            .lines()
            .find_map(|line| {
                let mut words = line.split_whitespace();
                match (words.next(), words.next(), words.next()) {
                    (Some("#define"), Some(n), Some(value)) if n == name => value.parse().ok(),
                    _ => None,
                }
            })
            .unwrap_or_else(|| panic!("no #define {name} in kernels/flash_attention.cu"))
    }

    #[test]
    fn constants_match_the_kernel_source() {
        assert_eq!(define("SD_FA_BLOCK_Q"), u64::from(BLOCK_Q));
        assert_eq!(define("SD_FA_THREADS"), u64::from(THREADS));
        assert_eq!(define("SD_FA_MAX_D"), MAX_D as u64);
        assert_eq!(define("SD_FA_DV_CHUNK"), DV_CHUNK as u64);
        assert!(SOURCE.contains("extern \"C\" __global__"));
        assert!(SOURCE.contains("sd_flash_attention_f16("));
    }

    #[test]
    fn shared_bytes_of_the_sd_head_dims() {
        // d = 40 pads to 48: 384 * 48 + 288 * 48 + 5120.
        assert_eq!(shared_bytes(40, 40), Some(37_376));
        // d = 160: the value stages hold 80 columns (two passes).
        assert_eq!(shared_bytes(160, 160), Some(89_600));
        assert!(shared_bytes(160, 160).unwrap() <= 99 * 1024);
        assert!(shared_bytes(64, 64).unwrap() <= 48 * 1024);
        assert!(shared_bytes(80, 80).unwrap() > 48 * 1024);
    }

    #[test]
    fn shared_bytes_rejects_unsupported_dims() {
        assert_eq!(shared_bytes(300, 300), None);
        assert_eq!(shared_bytes(300, 64), None);
        assert_eq!(shared_bytes(64, 257), None);
        assert_eq!(shared_bytes(0, 64), None);
        assert!(shared_bytes(256, 256).is_some());
        assert!(shared_bytes(1, 1).is_some());
    }
}
