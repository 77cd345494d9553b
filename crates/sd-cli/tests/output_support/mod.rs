//! Checking how an `sd` run ended, for tests that run the binary.

use std::process::Output;

/// Asserts the run succeeded (else fails with its stderr); returns its stderr.
pub fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the run failed; returns its stderr.
pub fn failed(o: Output) -> String {
    assert!(!o.status.success(), "sd succeeded");
    String::from_utf8_lossy(&o.stderr).into_owned()
}
