//! `--model-version` and `--convert-controlnet` values: a local folder, a single-file
//! checkpoint, or a Hugging Face Hub id already in the local Hub cache (nothing is downloaded).

use std::path::{Path, PathBuf};

/// A model named neither a local path nor a snapshot in the Hugging Face cache.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// A name of Hub-id form (`owner/name`) that is not a local path nor in the Hub cache.
    #[error(
        "`{name}` is neither a local diffusers folder or checkpoint file nor in the Hugging Face cache; download it first \
         (e.g. `huggingface-cli download {name}`) or pass its folder"
    )]
    NotCached {
        /// The name as given.
        name: String,
    },
    /// A path (absolute, relative with `./`, or with more than one `/`) that does not exist.
    #[error("{}: no such diffusers folder or checkpoint file", path.display())]
    NoSuchPath {
        /// The path as given.
        path: PathBuf,
    },
}

/// Resolves `name`: an existing folder or file as itself, else a Hub id (`owner/name`) as the
/// snapshot `refs/main` points to in the Hub cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `~/.cache/huggingface/hub`).
pub fn resolve(name: impl AsRef<Path>) -> Result<PathBuf, ResolveError> {
    let p = name.as_ref();
    if p.is_dir() || p.is_file() {
        return Ok(p.to_path_buf());
    }
    let name = p.to_string_lossy().into_owned();
    if !looks_like_hub_id(&name) {
        return Err(ResolveError::NoSuchPath {
            path: p.to_path_buf(),
        });
    }
    if let Some(snapshot) = hub_cache().and_then(|hub| snapshot(&hub, &name)) {
        return Ok(snapshot);
    }
    Err(ResolveError::NotCached { name })
}

/// Whether `name` could be a Hub id: `name` or `owner/name`, not starting with `/`, `.` or `~`.
fn looks_like_hub_id(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['/', '.', '~'])
        && name.matches('/').count() <= 1
        && !name.contains('\\')
}

/// The Hugging Face Hub cache folder, from the environment.
fn hub_cache() -> Option<PathBuf> {
    std::env::var_os("HF_HUB_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
        })
}

/// The snapshot of `id` that `refs/main` names, when it is on disk.
fn snapshot(hub: &Path, id: &str) -> Option<PathBuf> {
    let repo = hub.join(format!("models--{}", id.replace('/', "--")));
    let rev = std::fs::read_to_string(repo.join("refs/main")).ok()?;
    let snap = repo.join("snapshots").join(rev.trim());
    snap.is_dir().then_some(snap)
}

/// The Hub id (`owner/name`) of a snapshot folder of the Hub cache
/// (`…/models--owner--name/snapshots/<rev>`), if `path` is one.
pub fn hub_id_of_snapshot(path: &Path) -> Option<String> {
    let snapshots = path.parent()?;
    if snapshots.file_name()? != "snapshots" {
        return None;
    }
    let repo = snapshots.parent()?.file_name()?.to_str()?;
    Some(repo.strip_prefix("models--")?.replace("--", "/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_folders_name_their_hub_id() {
        let p = Path::new("/h/hub/models--stabilityai--sd-2-1/snapshots/abc123");
        assert_eq!(hub_id_of_snapshot(p).as_deref(), Some("stabilityai/sd-2-1"));
        assert_eq!(hub_id_of_snapshot(Path::new("/data/sd1-tiny")), None);
    }

    #[test]
    fn unknown_names_say_what_they_were_taken_for() {
        let e = resolve("/nonexistent/owner/model").unwrap_err().to_string();
        assert!(
            e.contains("/nonexistent/owner/model") && e.contains("no such"),
            "{e}"
        );
        let e = resolve("nobody-xyz/no-model-xyz").unwrap_err().to_string();
        assert!(
            e.contains("nobody-xyz/no-model-xyz") && e.contains("download"),
            "{e}"
        );
    }
}
