//! The Hugging Face cache layout, shared with Python's `huggingface_hub`:
//!
//! ```text
//! <cache>/models--owner--name/
//!     blobs/<sha256 or git blob id>            each file's contents, verified
//!     blobs/<hash>.incomplete                  a download in progress (resumed next time)
//!     snapshots/<commit>/<path>  ->  ../../blobs/<hash>   (relative symbolic links)
//!     refs/<revision>                          the commit a branch or tag pointed to
//! <cache>/.locks/models--owner--name/<hash>.lock
//! ```
//!
//! A blob appears only complete and checked (renamed from `.incomplete`), a snapshot link only
//! to such a blob, and a ref only once every file asked for is linked — so whatever a killed
//! run leaves, nothing in `snapshots/` is partial.

use super::HubError;
use super::error::io;
use super::repo::{FileHash, Listing, RepoFile, RepoId, check_file_path, is_commit, is_hex};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Most files a cached snapshot is walked for.
const MAX_SNAPSHOT_FILES: usize = 200_000;

/// One repository's folder in the cache.
#[derive(Debug, Clone)]
pub struct RepoCache {
    dir: PathBuf,
    locks: PathBuf,
}

impl RepoCache {
    /// The cache folder of `repo` under the Hub cache `cache_dir`.
    pub fn new(cache_dir: &Path, repo: &RepoId) -> Self {
        RepoCache {
            dir: cache_dir.join(repo.cache_folder()),
            locks: cache_dir.join(".locks").join(repo.cache_folder()),
        }
    }

    /// `models--owner--name/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The verified contents of a file with checksum `hash`.
    pub fn blob(&self, hash: &FileHash) -> PathBuf {
        self.dir.join("blobs").join(hash.hex())
    }

    /// Where a download of `hash` accumulates until it is complete and checked.
    pub fn incomplete(&self, hash: &FileHash) -> PathBuf {
        self.dir
            .join("blobs")
            .join(format!("{}.incomplete", hash.hex()))
    }

    /// The lock file serialising downloads of `hash` between processes.
    pub fn lock_file(&self, hash: &FileHash) -> PathBuf {
        self.locks.join(format!("{}.lock", hash.hex()))
    }

    /// The snapshot folder of `commit`.
    pub fn snapshot(&self, commit: &str) -> PathBuf {
        self.dir.join("snapshots").join(commit)
    }

    /// The commit `revision` names in the cache: the revision itself when it is a commit
    /// with a snapshot, else what `refs/<revision>` holds.
    pub fn commit_of(&self, revision: &str) -> Option<String> {
        if is_commit(revision) && self.snapshot(revision).is_dir() {
            return Some(revision.to_string());
        }
        let text = read_small(&self.dir.join("refs").join(revision))?;
        let commit = text.trim();
        is_commit(commit).then(|| commit.to_string())
    }

    /// Records that `revision` points to `commit` (nothing when the revision is the commit).
    pub fn write_ref(&self, revision: &str, commit: &str) -> Result<(), HubError> {
        if revision == commit {
            return Ok(());
        }
        let path = self.dir.join("refs").join(revision);
        let parent = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        sd_runtime::pipeline::image::write_file_atomic(&path, commit.as_bytes())
            .map_err(|e| io("writing", &path)(std::io::Error::other(e)))
    }

    /// Whether the snapshot of `commit` has `file`: a link to its blob, or a regular file
    /// of its size.
    pub fn has(&self, commit: &str, file: &RepoFile) -> bool {
        let path = self.snapshot(commit).join(&file.path);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => file.size.is_none_or(|s| s == m.len()),
            _ => false,
        }
    }

    /// Links `snapshots/<commit>/<path>` to the blob of `hash` (relative, replacing an older
    /// link atomically; a regular file a user put there is left alone).
    pub fn link(&self, commit: &str, path: &str, hash: &FileHash) -> Result<(), HubError> {
        let snapshot = self.snapshot(commit);
        let at = snapshot.join(path);
        let parent = at.parent().unwrap_or(&snapshot);
        std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        if let Ok(m) = std::fs::symlink_metadata(&at)
            && !m.file_type().is_symlink()
        {
            return Ok(());
        }
        let depth = path.split('/').count() + 1;
        let target: PathBuf = std::iter::repeat_n(Path::new(".."), depth)
            .collect::<PathBuf>()
            .join("blobs")
            .join(hash.hex());
        let tmp = temp_beside(&at);
        symlink(&target, &tmp).map_err(io("linking", &tmp))?;
        std::fs::rename(&tmp, &at).map_err(io("linking", &at))
    }

    /// The files of a cached snapshot, as a listing (hashes from the blobs they link to).
    pub fn listing(&self, commit: &str) -> Result<Listing, HubError> {
        let root = self.snapshot(commit);
        let mut files = Vec::new();
        let mut stack = vec![(root.clone(), String::new())];
        while let Some((dir, rel)) = stack.pop() {
            for e in std::fs::read_dir(&dir).map_err(io("listing", &dir))? {
                let e = e.map_err(io("listing", &dir))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(".sd-tmp-") {
                    continue;
                }
                let path = if rel.is_empty() {
                    name.clone()
                } else {
                    format!("{rel}/{name}")
                };
                if !check_file_path(&path) {
                    continue;
                }
                let full = e.path();
                let Ok(meta) = std::fs::metadata(&full) else {
                    continue; // a dangling link: as if absent
                };
                if meta.is_dir() {
                    stack.push((full, path));
                } else if meta.is_file() {
                    let hash = std::fs::read_link(&full).ok().and_then(|t| {
                        let n = t.file_name()?.to_str()?.to_string();
                        if is_hex(&n, 64) {
                            Some(FileHash::Sha256(n))
                        } else if is_hex(&n, 40) {
                            Some(FileHash::GitBlob(n))
                        } else {
                            None
                        }
                    });
                    files.push(RepoFile {
                        path,
                        size: Some(meta.len()),
                        hash,
                    });
                    if files.len() > MAX_SNAPSHOT_FILES {
                        return Err(HubError::Io {
                            what: "listing (too many files in)",
                            path: root,
                            source: std::io::Error::other("more than 200000 files"),
                        });
                    }
                }
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Listing {
            commit: commit.to_string(),
            files,
        })
    }
}

/// A name beside `path` for a temporary file (hidden, unique to this process and call).
pub(crate) fn temp_beside(path: &Path) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let short: String = name.chars().take(100).collect();
    path.with_file_name(format!(".sd-tmp-{}-{n}-{short}", std::process::id()))
}

/// A small regular file's text (refs), `None` when absent or not a small regular file.
fn read_small(path: &Path) -> Option<String> {
    let bytes = sd_runtime::pipeline::image::read_input_file(path, 4096).ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(unix)]
fn symlink(target: &Path, at: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, at)
}

#[cfg(not(unix))]
fn symlink(target: &Path, at: &Path) -> std::io::Result<()> {
    // Without symbolic links the blob is copied, as huggingface_hub does on such systems.
    let blob = at.parent().unwrap_or(Path::new(".")).join(target);
    std::fs::copy(blob, at).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_relative_and_listed_back_with_their_hashes() {
        let root = std::env::temp_dir().join(format!("sd-hub-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let repo = RepoId::parse("o/n").unwrap();
        let cache = RepoCache::new(&root, &repo);
        let hash = FileHash::Sha256("a".repeat(64));
        std::fs::create_dir_all(cache.dir().join("blobs")).unwrap();
        std::fs::write(cache.blob(&hash), b"weights").unwrap();
        let commit = "0123456789abcdef0123456789abcdef01234567";
        cache.link(commit, "unet/w.safetensors", &hash).unwrap();
        cache.link(commit, "unet/w.safetensors", &hash).unwrap();
        let at = cache.snapshot(commit).join("unet/w.safetensors");
        assert_eq!(
            std::fs::read_link(&at).unwrap(),
            PathBuf::from("../../../blobs").join("a".repeat(64))
        );
        assert_eq!(std::fs::read(&at).unwrap(), b"weights");
        let l = cache.listing(commit).unwrap();
        assert_eq!(l.files.len(), 1);
        assert_eq!(l.files[0].hash, Some(hash));
        assert_eq!(cache.commit_of("main"), None);
        cache.write_ref("main", commit).unwrap();
        assert_eq!(cache.commit_of("main").as_deref(), Some(commit));
        assert_eq!(cache.commit_of(commit).as_deref(), Some(commit));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
