//! Paths named inside a package or model folder, kept inside it.

use super::FileError;
use std::path::{Component, Path, PathBuf};

/// The root of a package or model folder, and the places its paths may lead to.
///
/// A relative path inside the folder (from a manifest, an index file, a config) is accepted
/// only when it has no root, drive or `..` component, and when the file it names — after
/// following every symbolic link — lies below the folder itself, or below the `blobs/` folder
/// of the Hugging Face cache repository the folder is a snapshot of (the cache links every
/// snapshot file there).
#[derive(Debug, Clone)]
pub struct Confinement {
    root: PathBuf,
    allowed: Vec<PathBuf>,
}

impl Confinement {
    /// The confinement of the folder at `root` (which must exist).
    pub fn new(root: &Path) -> Result<Self, FileError> {
        let real = root.canonicalize().map_err(|e| FileError::io(root, e))?;
        let mut allowed = vec![real.clone()];
        // `…/models--org--name/snapshots/<commit>/…`: the repository's `blobs/` holds the data.
        for dir in real.ancestors() {
            if dir.file_name().is_some_and(|n| n == "snapshots")
                && let Some(repo) = dir.parent()
                && let Ok(blobs) = repo.join("blobs").canonicalize()
            {
                allowed.push(blobs);
                break;
            }
        }
        Ok(Self {
            root: root.to_path_buf(),
            allowed,
        })
    }

    /// The folder, as given.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `root/relative`, after checking that `relative` is a plain relative path and that what
    /// it names (which must exist) stays inside the confinement.
    pub fn resolve(&self, relative: &str) -> Result<PathBuf, FileError> {
        self.check_relative(relative)?;
        let joined = self.root.join(relative);
        let real = joined
            .canonicalize()
            .map_err(|e| FileError::io(&joined, e))?;
        if self.allowed.iter().any(|a| real.starts_with(a)) {
            Ok(joined)
        } else {
            Err(FileError::Escapes {
                root: self.root.clone(),
                relative: relative.to_string(),
                target: real,
            })
        }
    }

    /// [`Confinement::resolve`] of `folder/relative`, where `relative` (a path read from a
    /// file, such as a manifest item's) is itself checked to be a plain relative path.
    pub fn resolve_in(&self, folder: &str, relative: &str) -> Result<PathBuf, FileError> {
        self.check_relative(relative)?;
        self.resolve(&format!("{folder}/{relative}"))
    }

    fn check_relative(&self, relative: &str) -> Result<(), FileError> {
        join_relative(&self.root, relative).map(drop)
    }
}

/// `root/relative` after checking only that `relative` is a plain relative path (non-empty, no
/// root, no `..`): for folders a user assembled, where links to elsewhere are their own choice
/// (a model folder sharing its tokenizer files), but a name read from a file must still not
/// climb out. [`Confinement`] adds the check of where links lead.
pub fn join_relative(root: &Path, relative: &str) -> Result<PathBuf, FileError> {
    let bad = |why| FileError::BadRelativePath {
        root: root.to_path_buf(),
        relative: relative.to_string(),
        why,
    };
    if relative.is_empty() {
        return Err(bad("is empty"));
    }
    if relative.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    for c in Path::new(relative).components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(bad("climbs out with `..`")),
            Component::RootDir | Component::Prefix(_) => return Err(bad("is absolute")),
        }
    }
    Ok(root.join(relative))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_resolve_and_escapes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pkg = dir.path().join("m.mlpackage");
        std::fs::create_dir_all(pkg.join("Data/x")).unwrap();
        std::fs::write(pkg.join("Data/x/f"), b"1").unwrap();
        std::fs::write(dir.path().join("secret"), b"2").unwrap();
        let c = Confinement::new(&pkg).unwrap();
        assert_eq!(c.resolve("Data/x/f").unwrap(), pkg.join("Data/x/f"));
        assert_eq!(c.resolve("./Data/x").unwrap(), pkg.join("./Data/x"));
        for (rel, why) in [
            ("../secret", "`..`"),
            ("Data/../../secret", "`..`"),
            ("/etc/passwd", "absolute"),
            ("", "empty"),
        ] {
            let e = c.resolve(rel).unwrap_err();
            assert!(e.to_string().contains(why), "{rel}: {e}");
        }
        assert!(c.resolve("Data/missing").unwrap_err().is_not_found());
        assert!(join_relative(&pkg, "../secret").is_err());
        assert_eq!(
            join_relative(&pkg, "Data/x/f").unwrap(),
            pkg.join("Data/x/f")
        );
        let e = c.resolve_in("Data", "/etc").unwrap_err();
        assert!(e.to_string().contains("absolute"), "{e}");
        assert!(c.resolve_in("Data", "x/f").is_ok());
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("secret"), pkg.join("Data/out")).unwrap();
            std::os::unix::fs::symlink("/etc", pkg.join("Data/etc")).unwrap();
            std::os::unix::fs::symlink("x/f", pkg.join("Data/inside")).unwrap();
            for rel in ["Data/out", "Data/etc/passwd"] {
                let e = c.resolve(rel).unwrap_err();
                assert!(matches!(e, FileError::Escapes { .. }), "{rel}: {e}");
            }
            assert!(c.resolve("Data/inside").is_ok());
        }
    }

    #[cfg(unix)]
    #[test]
    fn hub_cache_snapshots_may_link_into_their_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("models--org--name");
        let snap = repo.join("snapshots/abc/unet.mlpackage");
        std::fs::create_dir_all(repo.join("blobs")).unwrap();
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(repo.join("blobs/0123"), b"w").unwrap();
        std::fs::write(repo.join("elsewhere"), b"w").unwrap();
        std::os::unix::fs::symlink("../../../blobs/0123", snap.join("Manifest.json")).unwrap();
        std::os::unix::fs::symlink("../../../elsewhere", snap.join("other")).unwrap();
        let c = Confinement::new(&snap).unwrap();
        assert!(c.resolve("Manifest.json").is_ok());
        assert!(matches!(c.resolve("other"), Err(FileError::Escapes { .. })));
    }
}
