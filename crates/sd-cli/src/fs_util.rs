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

/// Copies the folder `src` into `dst` recursively (symbolic links are followed).
pub fn copy_dir(src: &Path, dst: &Path) -> Result<(), PathError> {
    std::fs::create_dir_all(dst).map_err(at("creating", dst))?;
    for e in std::fs::read_dir(src).map_err(at("listing", src))? {
        let e = e.map_err(at("listing", src))?;
        let to = dst.join(e.file_name());
        let from = e.path();
        if std::fs::metadata(&from)
            .map_err(at("reading", &from))?
            .is_dir()
        {
            copy_dir(&from, &to)?;
        } else {
            std::fs::copy(&from, &to).map_err(at("copying", &from))?;
        }
    }
    Ok(())
}

/// Copies the file `src` to `dst`, creating `dst`'s folder.
pub fn copy_file(src: &Path, dst: &Path) -> Result<(), PathError> {
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent).map_err(at("creating", parent))?;
    }
    std::fs::copy(src, dst).map_err(at("copying", src))?;
    Ok(())
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
