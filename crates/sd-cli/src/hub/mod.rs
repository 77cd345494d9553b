//! The Hugging Face Hub: model ids resolved, downloaded and cached the way Python's
//! `huggingface_hub` does it, in the same cache folder, so either tool reuses what the other
//! fetched.
//!
//! - [`fetch`]: a [`HubRequest`] (`owner/name`, revision, variant) into the cache — only the
//!   files the model needs ([`select`]), each resumable, size- and checksum-checked, and
//!   linked into its snapshot only when complete — with progress through [`HubEvent`]s;
//!   offline ([`HubConfig::offline`]) from the cache alone.
//! - [`HubConfig::from_env`]: `HF_ENDPOINT`, `HF_HOME` / `HF_HUB_CACHE`, `HF_TOKEN` (or the
//!   token file), `HF_HUB_OFFLINE`.
//! - [`resolve`]: a local path, or an id already in the cache, without any network access.
//!
//! ```no_run
//! use sd_cli::hub::{HubConfig, HubRequest, fetch};
//! let config = HubConfig::from_env()?;
//! let mut request = HubRequest::new("apple/coreml-stable-diffusion-v1-5");
//! request.variant = Some("original/packages".into());
//! let model = fetch(&config, &request, &mut |_event| {})?;
//! println!("{} at {}", model.repo, model.path.display());
//! # Ok::<(), sd_cli::hub::HubError>(())
//! ```

mod api;
mod cache;
mod config;
mod download;
mod error;
mod fetch;
mod repo;
pub mod select;

pub use api::{HubClient, parse_listing};
pub use cache::RepoCache;
pub use config::{ConfigError, DEFAULT_ENDPOINT, HubConfig};
pub use error::HubError;
pub use fetch::{Fetched, HubEvent, HubRequest, fetch};
pub use repo::{FileHash, Listing, RepoFile, RepoId};
pub use select::{RepoKind, Selection};

use std::path::{Path, PathBuf};

/// A model named neither a local path nor a snapshot in the Hugging Face cache.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// A name of Hub-id form (`owner/name`) that is not a local path nor in the Hub cache.
    #[error(
        "`{name}` is neither a local diffusers folder or checkpoint file nor in the Hugging Face cache; fetch it first \
         (`sd download {name}`) or pass its folder"
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

/// Resolves `name` without network access: an existing folder or file as itself, else a Hub
/// id (`owner/name`) as the snapshot `refs/main` points to in the Hub cache
/// ([`HubConfig::from_env`]'s `cache_dir`).
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
    if let Some(snapshot) = cached_snapshot(&name) {
        return Ok(snapshot);
    }
    Err(ResolveError::NotCached { name })
}

/// Whether `name` could be a Hub id rather than a path: `name` or `owner/name`, not starting
/// with `/`, `.` or `~`.
pub fn looks_like_hub_id(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['/', '.', '~'])
        && name.matches('/').count() <= 1
        && !name.contains('\\')
}

/// The snapshot of `id` that `refs/main` names, when it is on disk.
fn cached_snapshot(id: &str) -> Option<PathBuf> {
    let config = HubConfig::from_env().ok()?;
    let repo = RepoId::parse(id).ok()?;
    let cache = RepoCache::new(&config.cache_dir, &repo);
    let commit = cache.commit_of("main")?;
    let snap = cache.snapshot(&commit);
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
            e.contains("nobody-xyz/no-model-xyz") && e.contains("sd download"),
            "{e}"
        );
    }
}
