//! Writing a model folder (`.mlpackage` or `.mlmodelc`) safely: assembled in a temporary
//! directory beside the destination and renamed into place when complete, replacing only a
//! folder of the same kind (never a link, a file, a device or a foreign folder), and cleaning
//! up what killed writes left behind.

use crate::MilError;
use crate::files::{FileError, check_replaceable};
use std::path::{Path, PathBuf};
use tracing::debug;

/// What is at the destination of a model folder about to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// Nothing: the folder can be written.
    Missing,
    /// A folder whose every part is there (a finished earlier write).
    Complete,
    /// An empty directory, or a folder of this kind that is not complete: what an interrupted
    /// tool could have left. Writing replaces it.
    Unfinished,
}

/// A kind of model folder: the names it may hold at its top level and how to tell that one
/// is complete.
pub(crate) struct FolderKind {
    /// How a directory holding other things is described when refused ("a directory that is
    /// not a Core ML package").
    pub foreign: &'static str,
    /// Names allowed at the top level.
    pub entries: &'static [&'static str],
    /// Whether a folder of this kind at the path is complete.
    pub is_complete: fn(&Path) -> bool,
}

/// Fails (not found, naming `path` and `what`) unless `path` is a directory.
pub(crate) fn require_dir(path: &Path, what: &str) -> Result<(), MilError> {
    if path.is_dir() {
        return Ok(());
    }
    Err(MilError::io(
        path,
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no such {what} directory"),
        ),
    ))
}

/// Looks at `dest` before a folder of `kind` is written there. Anything but a missing path, an
/// empty directory or a directory holding only `kind`'s entries is refused
/// ([`FileError::RefuseToReplace`]).
pub(crate) fn inspect(dest: &Path, kind: &FolderKind) -> Result<Destination, MilError> {
    check_replaceable(dest, true)?;
    let entries = match std::fs::read_dir(dest) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Destination::Missing),
        Err(e) => return Err(MilError::io(dest, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| MilError::io(dest, e))?;
        let name = entry.file_name();
        if !kind.entries.iter().any(|n| name == *n) {
            return Err(FileError::RefuseToReplace {
                path: dest.to_path_buf(),
                kind: kind.foreign,
            }
            .into());
        }
    }
    Ok(if (kind.is_complete)(dest) {
        Destination::Complete
    } else {
        Destination::Unfinished
    })
}

/// Writes a folder of `kind` at `dest`: `fill` populates a fresh temporary directory beside
/// it, which then replaces `dest`. A complete folder at `dest` is replaced only when
/// `overwrite`.
pub(crate) fn write(
    dest: &Path,
    kind: &FolderKind,
    overwrite: bool,
    fill: impl FnOnce(&Path) -> Result<(), MilError>,
) -> Result<(), MilError> {
    if inspect(dest, kind)? == Destination::Complete && !overwrite {
        return Err(MilError::AlreadyExists {
            path: dest.to_path_buf(),
        });
    }
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| MilError::io(parent, e))?;
    let file_name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("model");
    remove_stale_partials(parent, file_name);
    let tmp = parent.join(format!(
        "{}{}-{}",
        partial_prefix(file_name),
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    std::fs::create_dir_all(&tmp).map_err(|e| MilError::io(&tmp, e))?;
    let result = fill(&tmp).and_then(|()| replace_dir(&tmp, dest, kind));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// The name prefix of the temporary directories a write of `file_name` uses:
/// `.<name>.partial-<pid>-<uuid>` (and `….old` for a replaced folder set aside).
fn partial_prefix(file_name: &str) -> String {
    format!(".{file_name}.partial-")
}

/// Removes what writes of `file_name` into `parent` that were killed left behind: temporary
/// directories of processes that no longer run (Linux only, where `/proc` tells; elsewhere
/// they stay).
fn remove_stale_partials(parent: &Path, file_name: &str) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let prefix = partial_prefix(file_name);
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists()
        {
            debug!(path = %entry.path().display(), "removing a killed write's temporary folder");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn replace_dir(tmp: &Path, dest: &Path, kind: &FolderKind) -> Result<(), MilError> {
    let mut old: Option<PathBuf> = None;
    // Checked again: the destination could have been replaced while the folder was written.
    if inspect(dest, kind)? != Destination::Missing {
        let aside = tmp.with_extension("old");
        std::fs::rename(dest, &aside).map_err(|e| MilError::io(dest, e))?;
        old = Some(aside);
    }
    if let Err(e) = std::fs::rename(tmp, dest) {
        if let Some(aside) = &old {
            let _ = std::fs::rename(aside, dest);
        }
        return Err(MilError::io(dest, e));
    }
    if let Some(aside) = old {
        std::fs::remove_dir_all(&aside).map_err(|e| MilError::io(&aside, e))?;
    }
    Ok(())
}
