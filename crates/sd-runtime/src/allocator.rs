//! An opt-in, process-wide setting of the C allocator for programs that run predictions.
//!
//! A prediction allocates its large intermediates afresh (tens of MB each in a full-size
//! UNet step) and frees them soon after. glibc's malloc maps every block above 32 MB from the
//! kernel and unmaps it when freed, so the next prediction faults every page in again; on a
//! virtual machine whose memory the host backs lazily that costs 2.5–4.5 ms per MB (measured
//! here: 2 GB first touched in 5–9 s, touched again in 0.3 s). [`keep_freed_memory`] asks
//! malloc to serve every block from its heap and to keep freed memory for reuse, which made
//! the full-size UNet step 8–11 % faster on such a machine. It changes the whole process, so
//! the library never calls it: the `sd` binary and the benchmarks do.

/// Serves large blocks from malloc's heap and keeps freed memory in the process (glibc:
/// `M_MMAP_MAX = 0`, `M_TRIM_THRESHOLD` = 2 GiB). Returns whether the allocator took the
/// settings; elsewhere than glibc it does nothing and returns false. The peak resident set
/// is unchanged (memory is reused, not added); memory freed after the peak stays with the
/// process until it exits.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes malloc's tunables; both values are in range.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// The same settings for a child process through glibc's environment tunables (for peer
/// engines measured beside us): the `GLIBC_TUNABLES` value.
pub const GLIBC_TUNABLES: &str = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647";

#[cfg(test)]
mod tests {
    #[test]
    fn glibc_takes_the_settings() {
        let took = super::keep_freed_memory();
        assert_eq!(took, cfg!(all(target_os = "linux", target_env = "gnu")));
        // Large blocks still allocate, fill and free.
        let v = vec![1.5f32; 20 << 20];
        assert!(v.len() == 20 << 20 && v.iter().all(|&x| x == 1.5));
    }
}
