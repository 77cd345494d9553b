//! Building an entry where no reader can mistake it for a complete one.
//!
//! Per key, under `<cache>/models/`: `.<key>.lock` (an empty file, kept) is held with an
//! exclusive lock by whoever builds the entry, so builders of one key take turns and the
//! second finds the first's entry; the entry is built in `.<key>.tmp` and renamed to `<key>`
//! once its marker is written. A `.<key>.tmp` found while holding the lock is left over from
//! a killed run and removed.

use crate::fs_util::{PathError, at};
use std::fs::File;
use std::path::{Path, PathBuf};

/// The exclusive right to build one key's entry, and its scratch folder.
pub struct Staging {
    _lock: File,
    tmp: PathBuf,
}

impl Staging {
    /// Waits for the lock of `key` in `models`, then gives an empty scratch folder (a stale one
    /// is removed first).
    pub fn acquire(models: &Path, key: &str) -> Result<Self, PathError> {
        let lock_path = models.join(format!(".{key}.lock"));
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(at("creating", &lock_path))?;
        match lock.lock() {
            // A file system without locks (some network mounts): build unguarded.
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {}
            r => r.map_err(at("locking", &lock_path))?,
        }
        let tmp = models.join(format!(".{key}.tmp"));
        remove_if_present(&tmp)?;
        std::fs::create_dir_all(&tmp).map_err(at("creating", &tmp))?;
        Ok(Staging { _lock: lock, tmp })
    }

    /// The scratch folder.
    pub fn dir(&self) -> &Path {
        &self.tmp
    }

    /// Moves the scratch folder to `entry` (replacing an incomplete one there).
    pub fn commit(self, entry: &Path) -> Result<(), PathError> {
        remove_if_present(entry)?;
        std::fs::rename(&self.tmp, entry).map_err(at("renaming into place", &self.tmp))
    }
}

impl Drop for Staging {
    /// Removes the scratch folder when the build did not commit (the lock is released when
    /// the file closes).
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

/// Removes the folder `path` if it exists.
fn remove_if_present(path: &Path) -> Result<(), PathError> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(at("removing", path)(e)),
        _ => Ok(()),
    }
}
