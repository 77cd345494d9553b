//! `sd serve`'s page in a real browser: headless Chromium driven by Playwright
//! (`tests/browser/page.test.cjs`) on the tiny model. Needs Node.js, Chromium and npm's
//! `playwright-core`, which `cargo xtask test` installs and then runs this with `--ignored`.
//! Screenshots are kept in `target/test-artifacts/`.

mod serve_support;

use serve_support::{ServerProcess, root};
use std::process::Command;

#[test]
#[ignore = "needs Node.js, Chromium and playwright-core: run by `cargo xtask test`"]
fn the_page_generates_shows_progress_downloads_and_cancels() {
    let node_modules = std::env::var_os("SD_BROWSER_NODE_MODULES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root().join("target/browser-test/node_modules"));
    assert!(
        node_modules.join("playwright-core").exists(),
        "no playwright-core in {} (cargo xtask test installs it)",
        node_modules.display()
    );
    let server = ServerProcess::start("page", &["--max-steps", "1000"]);
    let artifacts = root().join("target/test-artifacts");
    let script = root().join("crates/sd-cli/tests/browser/page.test.cjs");
    let status = Command::new("node")
        .arg(&script)
        .arg(&server.url)
        .arg(&artifacts)
        .env("NODE_PATH", &node_modules)
        .status()
        .expect("node runs (install Node.js)");
    assert!(
        status.success(),
        "the page test failed; see target/test-artifacts/"
    );
    assert!(artifacts.join("serve-page.png").exists());
}
