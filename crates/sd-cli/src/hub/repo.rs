//! What a Hub repository is made of: its id, a revision, and the files of one commit, each
//! name checked so that no file from a server can land outside its snapshot folder.

use super::HubError;

/// A model repository id, `owner/name` (or a bare `name`), checked as the Hub checks it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoId(String);

impl RepoId {
    /// Parses `id`: one or two parts of letters, digits, `-`, `_` and `.` joined by `/`, no
    /// part starting or ending with `.` or `-`, no `--` or `..`, at most 96 characters.
    pub fn parse(id: &str) -> Result<Self, HubError> {
        let bad = |reason: &str| HubError::InvalidId {
            id: id.to_string(),
            reason: reason.to_string(),
        };
        if id.is_empty() || id.len() > 96 {
            return Err(bad("it must have 1 to 96 characters"));
        }
        let parts: Vec<&str> = id.split('/').collect();
        if parts.len() > 2 {
            return Err(bad("it has more than one `/` (owner/name)"));
        }
        for p in &parts {
            if p.is_empty() {
                return Err(bad("an empty owner or name"));
            }
            if !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(bad("only letters, digits, `-`, `_` and `.` may appear"));
            }
            if p.starts_with(['.', '-']) || p.ends_with(['.', '-']) {
                return Err(bad("a part starts or ends with `.` or `-`"));
            }
            if p.contains("--") || p.contains("..") {
                return Err(bad("`--` and `..` may not appear"));
            }
        }
        Ok(RepoId(id.to_string()))
    }

    /// The id as typed (`owner/name`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The repository's folder name in the cache: `models--owner--name`.
    pub fn cache_folder(&self) -> String {
        format!("models--{}", self.0.replace('/', "--"))
    }
}

impl std::fmt::Display for RepoId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a revision (branch, tag or commit): at most 255 characters, no `..`, no
/// component that is empty, and nothing but letters, digits and `-_./+`.
pub fn check_revision(revision: &str) -> Result<(), HubError> {
    let ok = !revision.is_empty()
        && revision.len() <= 255
        && !revision.contains("..")
        && revision.split('/').all(|c| !c.is_empty() && c != ".")
        && revision
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | '+'));
    if ok {
        Ok(())
    } else {
        Err(HubError::InvalidRevision {
            revision: revision.to_string(),
        })
    }
}

/// Whether `s` is `len` lowercase hex digits.
pub fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `s` is a full commit hash (40 lowercase hex digits).
pub fn is_commit(s: &str) -> bool {
    is_hex(s, 40)
}

/// The checksum the Hub reports for a file, also its blob name in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileHash {
    /// A Git LFS file: the SHA-256 of its contents (64 hex digits).
    Sha256(String),
    /// A plain Git file: its Git blob id, SHA-1 of `blob <len>\0<contents>` (40 hex digits).
    GitBlob(String),
}

impl FileHash {
    /// The hex digest, which is also the file's name under `blobs/`.
    pub fn hex(&self) -> &str {
        match self {
            FileHash::Sha256(h) | FileHash::GitBlob(h) => h,
        }
    }

    /// The kind of digest, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            FileHash::Sha256(_) => "sha256",
            FileHash::GitBlob(_) => "git blob id",
        }
    }
}

/// One file of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoFile {
    /// Its path in the repository (`unet/config.json`), checked by [`check_file_path`].
    pub path: String,
    /// Its size in bytes, when known.
    pub size: Option<u64>,
    /// Its checksum, when known (the Hub reports it; a cache listing knows it from the blob).
    pub hash: Option<FileHash>,
}

/// The files of one commit of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The commit hash.
    pub commit: String,
    /// Every file, sorted by path.
    pub files: Vec<RepoFile>,
}

impl Listing {
    /// The file at `path`, if the commit has one.
    pub fn file(&self, path: &str) -> Option<&RepoFile> {
        self.files
            .binary_search_by(|f| f.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.files[i])
    }

    /// Whether `path` is a folder of the commit (some file lies under it).
    pub fn is_folder(&self, path: &str) -> bool {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        self.files.iter().any(|f| f.path.starts_with(&prefix))
    }

    /// The files under the folder `dir` (`""`: the root), at any depth.
    pub fn under<'a>(&'a self, dir: &'a str) -> impl Iterator<Item = &'a RepoFile> + 'a {
        self.files
            .iter()
            .filter(move |f| dir.is_empty() || f.path.starts_with(&format!("{dir}/")))
    }
}

/// Checks a file path a server names: relative, `/`-separated, each component a plain
/// name (not empty, `.` or `..`; no `\`, NUL or control characters; at most 255 bytes), at
/// most 1024 bytes in all — so joining it to a snapshot folder stays inside that folder.
pub fn check_file_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 1024
        && path.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.len() <= 255
                && !c.chars().any(|ch| ch == '\\' || ch.is_control())
        })
}

/// The parent folder of a repository path (`""` for a root file).
pub fn parent(path: &str) -> &str {
    path.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
}

/// The last component of a repository path.
pub fn file_name(path: &str) -> &str {
    path.rsplit_once('/').map(|(_, n)| n).unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_as_the_hub_checks_them() {
        for ok in [
            "runwayml/stable-diffusion-v1-5",
            "gpt2",
            "apple/coreml-sd_2.1",
        ] {
            assert_eq!(RepoId::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "", "a/b/c", "/abs", "a//b", "../x", "a/..", "a/.b", "a/b-", "a--b/c", "a b/c",
            "a/b\\c", "a/b\0",
        ] {
            assert!(RepoId::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(RepoId::parse("o/n").unwrap().cache_folder(), "models--o--n");
    }

    #[test]
    fn file_paths_from_a_server_stay_inside_the_snapshot() {
        for ok in [
            "a",
            "unet/config.json",
            "x/y.mlpackage/Data/com.apple.CoreML/model.mlmodel",
        ] {
            assert!(check_file_path(ok), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            "a\\..\\b",
            "a\nb",
        ] {
            assert!(!check_file_path(bad), "{bad:?} accepted");
        }
        assert!(!check_file_path(&"a".repeat(256)));
    }

    #[test]
    fn revisions_are_checked() {
        for ok in [
            "main",
            "v1.0",
            "refs/pr/1",
            "0123456789abcdef0123456789abcdef01234567",
        ] {
            check_revision(ok).unwrap();
        }
        for bad in ["", "..", "a/../b", "a b", "a//b", "/main", "x\0"] {
            assert!(check_revision(bad).is_err(), "{bad:?} accepted");
        }
    }
}
