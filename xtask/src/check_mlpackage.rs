//! `cargo xtask check-mlpackage PATH…`: validates packages with Core ML's own tooling.
//!
//! Runs `xtask/check/check_mlpackage.py` (coremltools 9.0, installed on first use into
//! `target/coremltools-venv`), which loads each package, rebuilds its MIL program op by op
//! with type inference for the package's specification version, reads every weight blob and
//! compares the model description with the function signature.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Arguments of `cargo xtask check-mlpackage`.
#[derive(clap::Args)]
pub struct Args {
    /// Packages, or folders searched recursively for `*.mlpackage`.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Also print each package's op histogram (ops as stored in the file).
    #[arg(long)]
    ops: bool,
    /// Print one JSON object per package.
    #[arg(long)]
    json: bool,
}

/// Checks every package; fails naming the packages that did not pass.
pub fn run(args: Args) -> Result<()> {
    let mut packages = Vec::new();
    for path in &args.paths {
        find_packages(path, &mut packages)?;
    }
    if packages.is_empty() {
        bail!("no .mlpackage found in {:?}", args.paths);
    }
    let python = coremltools_python()?;
    let mut command = Command::new(&python);
    command.arg(checker_script());
    if args.ops {
        command.arg("--ops");
    }
    if args.json {
        command.arg("--json");
    }
    let mut child = command
        .args(&packages)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", python.display()))?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut failed = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading the checker's output")?;
        println!("{line}");
        if let Some(package) = failed_package(&line, args.json) {
            failed.push(package);
        }
    }
    let status = child.wait().context("waiting for the checker")?;
    if !failed.is_empty() {
        bail!(
            "{} of {} packages failed the coremltools check: {}",
            failed.len(),
            packages.len(),
            failed.join(", ")
        );
    }
    if !status.success() {
        bail!("the coremltools checker exited with {status}");
    }
    Ok(())
}

/// The Python of `target/coremltools-venv`, created (from `xtask/check/requirements.txt`, so
/// PyPI must be reachable the first time) when missing.
pub fn coremltools_python() -> Result<PathBuf> {
    let root = crate::venv::workspace_root();
    crate::venv::ensure(
        "coremltools-venv",
        &root.join("xtask/check/requirements.txt"),
    )
}

/// `xtask/check/check_mlpackage.py`.
fn checker_script() -> PathBuf {
    crate::venv::workspace_root().join("xtask/check/check_mlpackage.py")
}

/// coremltools' verdict on one package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The package as passed.
    pub package: PathBuf,
    /// Whether it passed every rule.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
}

/// Checks `packages` with the checker run by `python`; one verdict per package, in order.
pub fn verdicts(python: &Path, packages: &[PathBuf]) -> Result<Vec<Verdict>> {
    let out = Command::new(python)
        .arg(checker_script())
        .arg("--json")
        .args(packages)
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let verdicts: Vec<Verdict> = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .map(|r| Verdict {
            package: PathBuf::from(r["package"].as_str().unwrap_or("?")),
            ok: r["ok"].as_bool() == Some(true),
            error: r["error"].as_str().map(str::to_string),
        })
        .collect();
    if verdicts.len() != packages.len() {
        bail!(
            "the coremltools checker reported {} of {} packages:\n{}",
            verdicts.len(),
            packages.len(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(verdicts)
}

/// The package a report line says failed, if it does.
fn failed_package(line: &str, json: bool) -> Option<String> {
    if json {
        let report: serde_json::Value = serde_json::from_str(line).ok()?;
        if report["ok"].as_bool() == Some(false) {
            return Some(report["package"].as_str().unwrap_or("?").to_string());
        }
        return None;
    }
    let rest = line.strip_prefix("FAIL ")?;
    Some(
        rest.rsplit_once(": spec ")
            .map_or(rest, |(p, _)| p)
            .to_string(),
    )
}

/// Adds `path` if it is a package, or the packages below it (sorted) if it is a folder.
fn find_packages(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    if path.extension().is_some_and(|e| e == "mlpackage") {
        if !meta.is_dir() {
            bail!(
                "{} is not a directory, so not an .mlpackage",
                path.display()
            );
        }
        out.push(path.to_path_buf());
        return Ok(());
    }
    if !meta.is_dir() {
        bail!("{} is neither an .mlpackage nor a folder", path.display());
    }
    let mut entries = std::fs::read_dir(path)
        .with_context(|| format!("listing {}", path.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("listing {}", path.display()))?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            find_packages(&entry, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_recognised_in_both_formats() {
        assert_eq!(
            failed_package("ok   a.mlpackage: spec 7 iOS16 ops=3", false),
            None
        );
        assert_eq!(
            failed_package("FAIL dir/a b.mlpackage: spec 7 None ops=None", false).as_deref(),
            Some("dir/a b.mlpackage")
        );
        assert_eq!(failed_package("     add=3, const=4", false), None);
        let bad = r#"{"package": "x.mlpackage", "ok": false, "error": "E"}"#;
        assert_eq!(failed_package(bad, true).as_deref(), Some("x.mlpackage"));
        assert_eq!(
            failed_package(r#"{"package": "y", "ok": true}"#, true),
            None
        );
    }

    #[test]
    fn finds_packages_recursively_in_order() {
        let dir = std::env::temp_dir().join(format!("xtask-find-{}", std::process::id()));
        for p in [
            "b/x.mlpackage/Data",
            "a/y.mlpackage",
            "a/z/w.mlpackage",
            "c",
        ] {
            std::fs::create_dir_all(dir.join(p)).unwrap();
        }
        let mut found = Vec::new();
        find_packages(&dir, &mut found).unwrap();
        let rel: Vec<_> = found
            .iter()
            .map(|p| p.strip_prefix(&dir).unwrap().to_path_buf())
            .collect();
        std::fs::remove_dir_all(&dir).unwrap();
        let want: Vec<PathBuf> = ["a/y.mlpackage", "a/z/w.mlpackage", "b/x.mlpackage"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(rel, want);
        assert!(find_packages(&dir.join("missing"), &mut found).is_err());
    }
}
