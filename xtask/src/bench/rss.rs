//! Peak resident set size of this process, per benchmark phase (Linux `/proc`).

use anyhow::{Context, Result};

/// Resets the kernel's peak-RSS mark (`VmHWM`) to the current RSS, so that the next
/// [`peak_bytes`] reports the peak of the phase that starts now. Returns false where the
/// kernel does not allow it (then `VmHWM` is the peak since the process started).
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The peak resident set size in bytes (`VmHWM` of `/proc/self/status`).
pub fn peak_bytes() -> Result<u64> {
    status_kib("VmHWM").map(|kib| kib * 1024)
}

fn status_kib(field: &str) -> Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .with_context(|| format!("/proc/self/status has no {field}"))?;
    let kib = line.trim().trim_end_matches("kB").trim();
    kib.parse()
        .with_context(|| format!("/proc/self/status: {field} is `{line}`"))
}
