//! Small file-system helpers shared by the Swift bundle and the model cache.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// An I/O failure with the path it concerns.
#[derive(Debug, thiserror::Error)]
#[error("{what} {}", path.display())]
pub struct PathError {
    /// What was being done (`creating`, `copying`, …).
    pub what: &'static str,
    /// The path.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: std::io::Error,
}

/// `Result::map_err` helper: attaches `what` and `path` to an I/O error.
pub fn at<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PathError + 'a {
    move |source| PathError {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// [`at`] for an error of [`sd_mil::files`].
pub fn at_file<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(sd_mil::files::FileError) -> PathError + 'a {
    move |e| at(what, path)(std::io::Error::other(e.to_string()))
}

/// Copies the regular file `src` (at most [`sd_mil::files::MAX_JSON_BYTES`]: tokenizer and
/// config files) to `dst`, creating `dst`'s folder and writing it atomically.
pub fn copy_small_file(src: &Path, dst: &Path) -> Result<(), PathError> {
    let bytes = sd_mil::files::read_regular(src, sd_mil::files::MAX_JSON_BYTES)
        .map_err(at_file("copying", src))?;
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent).map_err(at("creating", parent))?;
    }
    sd_mil::files::write_atomic(dst, &bytes).map_err(at_file("copying", src))
}

/// A path under the system temporary folder, unique to this process and call:
/// `<tmp>/<prefix>-<pid>-<n>` (nothing is created).
pub fn unique_temp_path(prefix: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()))
}

/// A scratch folder path from [`unique_temp_path`], removed (if it was created) on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new scratch path named after `prefix`.
    pub fn new(prefix: &str) -> Self {
        TempDir(unique_temp_path(prefix))
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Creates `dir` when needed and proves it can be written (a probe file made and removed),
/// so that a run fails before any work rather than after it.
pub fn prepare_output_folder(dir: &Path) -> Result<(), PathError> {
    std::fs::create_dir_all(dir).map_err(at("creating the output folder", dir))?;
    if !std::fs::metadata(dir).map_err(at("reading", dir))?.is_dir() {
        return Err(PathError {
            what: "using as the output folder",
            path: dir.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a folder"),
        });
    }
    let probe = dir.join(format!(".sd-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(at("writing into the output folder", dir))?;
    std::fs::remove_file(&probe).ok();
    Ok(())
}
