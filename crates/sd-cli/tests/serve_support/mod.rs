//! A `sd serve` process on the tiny model for the server tests: started on a free loopback
//! port, its address read from its one stdout line, killed when dropped.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The tiny model converted once (kept between runs: the cache checks itself).
pub fn resources() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let options = sd_cli::CacheOptions {
            cache_root: Some(root().join("target/test-serve/cache")),
            ..Default::default()
        };
        sd_cli::prepare(&root().join("fixtures/models/sd1-tiny"), &options)
            .unwrap()
            .folder
    })
}

pub struct ServerProcess {
    pub child: Child,
    /// Held open: when this process ends (a static is never dropped) the pipe closes and the
    /// server, started with `--watch-stdin`, stops.
    _stdin: std::process::ChildStdin,
    pub url: String,
    pub output: PathBuf,
}

impl ServerProcess {
    /// Starts `sd serve` with `extra` flags; `name` keeps its output folder apart.
    pub fn start(name: &str, extra: &[&str]) -> ServerProcess {
        let output = root().join("target/test-serve/out").join(name);
        if output.exists() {
            std::fs::remove_dir_all(&output).unwrap();
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_sd"))
            .arg("serve")
            .arg("--resource-path")
            .arg(resources())
            .args(["--watch-stdin", "--bind", "127.0.0.1:0", "--output-path"])
            .arg(&output)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sd serve starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("sd serve printed `{line}`"))
            .to_string();
        ServerProcess {
            child,
            _stdin: stdin,
            url,
            output,
        }
    }

    /// The server's resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it gives `Some` or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}
