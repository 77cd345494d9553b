//! The cache key of a model: `<readable stem>-<16 hex digits>`, the digits a hash (FNV-1a,
//! 64-bit: stable across builds, not cryptographic) of what the converted packages depend on —
//! the model's canonical path, the size and modification time of every file under it, the
//! conversion options and this crate's version. A changed model, other options or a new
//! converter give another key, so stale entries are never reused.

use crate::fs_util::{PathError, at};
use crate::hub::hub_id_of_snapshot;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// Folder depth [`fingerprint_files`] descends to (a diffusers folder needs two).
const MAX_DEPTH: usize = 6;

/// Longest readable stem kept in a key.
const MAX_STEM: usize = 48;

/// A readable name for `model`: its Hub id for a Hub-cache snapshot (`owner_name`), else the
/// folder name or the file stem; characters other than ASCII letters, digits, `.`, `-` and
/// `_` become `_`.
pub fn readable_stem(model: &Path) -> String {
    let raw = hub_id_of_snapshot(model).unwrap_or_else(|| {
        let name = if model.is_file() {
            model.file_stem()
        } else {
            model.file_name()
        };
        name.map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let stem: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_STEM)
        .collect();
    let stem = stem.trim_start_matches('.').to_string();
    if stem.is_empty() {
        "model".into()
    } else {
        stem
    }
}

/// Appends one line per file under `path` (or for `path` itself when it is a file):
/// `file <relative path> <bytes> <mtime ns>`, sorted; hidden entries are skipped and symbolic
/// links followed.
pub fn fingerprint_files(path: &Path, lines: &mut Vec<String>) -> Result<(), PathError> {
    let mut found = Vec::new();
    walk(path, path, 0, &mut found)?;
    found.sort();
    lines.extend(found);
    Ok(())
}

fn walk(root: &Path, path: &Path, depth: usize, out: &mut Vec<String>) -> Result<(), PathError> {
    let meta = std::fs::metadata(path).map_err(at("reading", path))?;
    if meta.is_file() {
        let rel = path.strip_prefix(root).unwrap_or(path);
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        out.push(format!("file {} {} {mtime}", rel.display(), meta.len()));
        return Ok(());
    }
    if !meta.is_dir() || depth >= MAX_DEPTH {
        return Ok(());
    }
    for e in std::fs::read_dir(path).map_err(at("listing", path))? {
        let e = e.map_err(at("listing", path))?;
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        walk(root, &e.path(), depth + 1, out)?;
    }
    Ok(())
}

/// The canonical absolute form of `path`.
pub fn canonical(path: &Path) -> Result<PathBuf, PathError> {
    std::fs::canonicalize(path).map_err(at("resolving", path))
}

/// FNV-1a over `lines` (each followed by a newline), as 16 hex digits.
pub fn hash_lines(lines: &[String]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for line in lines {
        for &b in line.as_bytes().iter().chain(b"\n") {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_are_readable_and_safe() {
        assert_eq!(readable_stem(Path::new("/m/sd1-tiny")), "sd1-tiny");
        assert_eq!(
            readable_stem(Path::new("/m/my model (v2)")),
            "my_model__v2_"
        );
        assert_eq!(
            readable_stem(Path::new("/hub/models--runwayml--sd-v1-5/snapshots/0123")),
            "runwayml_sd-v1-5"
        );
        assert_eq!(readable_stem(Path::new("/")), "model");
    }

    #[test]
    fn hashes_are_stable_and_order_sensitive() {
        let a = vec!["x".to_string(), "y".to_string()];
        let b = vec!["y".to_string(), "x".to_string()];
        assert_eq!(hash_lines(&a), hash_lines(&a.clone()));
        assert_ne!(hash_lines(&a), hash_lines(&b));
        // FNV-1a 64 of "" is its offset basis.
        assert_eq!(hash_lines(&[]), "cbf29ce484222325");
    }
}
