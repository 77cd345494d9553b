//! What the browser test needs: Node.js, Debian's Chromium and npm's `playwright-core`
//! (pinned in `xtask/browser/package-lock.json`, installed into `target/browser-test`).

use crate::venv::workspace_root;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the browser test finds its tools.
pub struct BrowserTools {
    /// The Chromium binary.
    pub chromium: PathBuf,
    /// `node_modules` holding `playwright-core`.
    pub node_modules: PathBuf,
}

/// Finds or installs Chromium (Debian's package, when running as root with apt-get) and
/// `playwright-core`, and checks that Node.js runs.
pub fn ensure() -> Result<BrowserTools> {
    let chromium = chromium()?;
    let node = Command::new("node")
        .arg("--version")
        .output()
        .context("running `node --version`: the browser test needs Node.js (18 or later)")?;
    if !node.status.success() {
        bail!("`node --version` failed: the browser test needs Node.js (18 or later)");
    }
    let node_modules = playwright_core()?;
    Ok(BrowserTools {
        chromium,
        node_modules,
    })
}

fn chromium() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("SD_CHROMIUM") {
        return Ok(PathBuf::from(p));
    }
    let debian = Path::new("/usr/bin/chromium");
    if debian.exists() {
        return Ok(debian.to_path_buf());
    }
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|u| u.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false);
    if !root || !Path::new("/usr/bin/apt-get").exists() {
        bail!(
            "no Chromium at /usr/bin/chromium: install Debian's `chromium` package (or set SD_CHROMIUM), or run `cargo xtask test --no-browser`"
        );
    }
    eprintln!("installing Debian's chromium for the browser test …");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    if !install()?.success() {
        let updated = Command::new("apt-get").args(["update", "-q"]).status()?;
        if !updated.success() || !install()?.success() {
            bail!("apt-get install chromium failed");
        }
    }
    Ok(debian.to_path_buf())
}

fn playwright_core() -> Result<PathBuf> {
    let root = workspace_root();
    let source = root.join("xtask/browser");
    let dir = root.join("target/browser-test");
    let lock = std::fs::read_to_string(source.join("package-lock.json"))?;
    let stamp = dir.join("installed.lock.json");
    let node_modules = dir.join("node_modules");
    if node_modules.join("playwright-core").exists()
        && std::fs::read_to_string(&stamp).ok().as_deref() == Some(lock.as_str())
    {
        return Ok(node_modules);
    }
    std::fs::create_dir_all(&dir)?;
    for f in ["package.json", "package-lock.json"] {
        std::fs::copy(source.join(f), dir.join(f))?;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .status()
        .context("running npm ci (is npm installed?)")?;
    if !status.success() {
        bail!("npm ci in {} failed", dir.display());
    }
    std::fs::write(&stamp, lock)?;
    Ok(node_modules)
}
