//! `cargo xtask test`: the project's whole test suite — `cargo test --workspace`, then the
//! browser test of `sd serve`'s page (headless Chromium; the tools installed when missing),
//! then Core ML's own tooling over every package the tests wrote under `target/test-packages`.

use crate::venv::workspace_root;
use anyhow::{Result, bail};
use clap::Parser;
use std::ffi::OsStr;
use std::process::Command;

/// Arguments of `cargo xtask test`.
#[derive(clap::Args)]
pub struct Args {
    /// Skip the coremltools check of the packages the tests wrote.
    #[arg(long)]
    no_package_check: bool,
    /// Skip the browser test of `sd serve`'s page.
    #[arg(long)]
    no_browser: bool,
    /// Extra arguments passed to `cargo test`.
    #[arg(last = true)]
    cargo_args: Vec<String>,
}

/// `check-mlpackage`'s arguments, parsed in-process.
#[derive(Parser)]
struct CheckCommand {
    #[command(flatten)]
    args: crate::check_mlpackage::Args,
}

/// Runs the suite.
pub fn run(args: Args) -> Result<()> {
    let root = workspace_root();
    let packages = root.join("target/test-packages");
    let _ = std::fs::remove_dir_all(&packages);
    let status = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args(["test", "--workspace"])
        .args(&args.cargo_args)
        .status()?;
    if !status.success() {
        bail!("cargo test failed");
    }
    if !args.no_browser {
        let tools = crate::browser::ensure()?;
        let status = Command::new(env!("CARGO"))
            .current_dir(&root)
            .args(["test", "-p", "sd-cli", "--test", "serve_page"])
            .args(["--", "--ignored"])
            .env("SD_CHROMIUM", &tools.chromium)
            .env("SD_BROWSER_NODE_MODULES", &tools.node_modules)
            .status()?;
        if !status.success() {
            bail!("the browser test failed (screenshots in target/test-artifacts/)");
        }
    }
    if args.no_package_check {
        return Ok(());
    }
    if !packages.exists() {
        bail!("the tests wrote no package under {}", packages.display());
    }
    // `cargo test` may have rebuilt this very binary, so run the check in-process.
    let check =
        CheckCommand::try_parse_from([OsStr::new("check-mlpackage"), packages.as_os_str()])?;
    crate::check_mlpackage::run(check.args)
}
