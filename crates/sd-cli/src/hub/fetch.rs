//! [`fetch`]: a Hub model into the local cache — listed, selected, downloaded and linked —
//! or, offline or when the Hub cannot be reached, found in the cache.

use super::api::HubClient;
use super::cache::RepoCache;
use super::download::Transfer;
use super::repo::{Listing, RepoFile, RepoId, check_file_path, check_revision, parent};
use super::select::{RepoKind, Selection, select};
use super::{HubConfig, HubError};
use std::path::PathBuf;

/// Largest shard index read.
const MAX_INDEX_BYTES: u64 = 16 << 20;

/// A model on the Hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRequest {
    /// `owner/name`.
    pub repo: String,
    /// Branch, tag or commit (default `main`).
    pub revision: Option<String>,
    /// A folder or file of the repository (`original/packages`,
    /// `v1-5-pruned-emaonly.safetensors`) or a diffusers weight variant (`fp16`).
    pub variant: Option<String>,
}

impl HubRequest {
    /// `repo` at `main`, default variant.
    pub fn new(repo: impl Into<String>) -> Self {
        HubRequest {
            repo: repo.into(),
            revision: None,
            variant: None,
        }
    }

    fn revision(&self) -> &str {
        self.revision.as_deref().unwrap_or("main")
    }
}

/// What [`fetch`] reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubEvent<'a> {
    /// The revision resolved to `commit`; `files` files are needed, `bytes` of them not cached.
    Resolved {
        /// The commit.
        commit: &'a str,
        /// Files needed.
        files: usize,
        /// Bytes to download.
        bytes: u64,
    },
    /// Working from the cache alone, and why.
    CacheOnly {
        /// Why (offline mode, or the Hub unreachable).
        reason: &'a str,
    },
    /// A choice the selection made.
    Note(&'a str),
    /// A download begins (`resumed_from` bytes were already there).
    FileStart {
        /// Repository path.
        path: &'a str,
        /// Its size.
        size: u64,
        /// Bytes kept from an earlier attempt.
        resumed_from: u64,
    },
    /// Bytes arrived.
    FileProgress {
        /// Repository path.
        path: &'a str,
        /// Bytes so far.
        done: u64,
        /// Its size.
        size: u64,
    },
    /// The connection broke; trying again from where it stopped.
    Retry {
        /// Repository path.
        path: &'a str,
        /// Which retry this is (1, 2, …).
        attempt: u32,
        /// What broke.
        cause: &'a str,
    },
    /// A file is in the snapshot.
    FileDone {
        /// Repository path.
        path: &'a str,
        /// Its size.
        size: u64,
        /// Whether it was downloaded now (`false`: already in the cache).
        downloaded: bool,
    },
}

/// A model in the local cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The repository.
    pub repo: String,
    /// The commit.
    pub commit: String,
    /// The snapshot folder of the commit.
    pub snapshot: PathBuf,
    /// What the model is.
    pub kind: RepoKind,
    /// What to load: the snapshot itself, a folder in it, or a checkpoint file.
    pub path: PathBuf,
    /// A tokenizer folder in the snapshot, when the model's folder has none.
    pub tokenizer: Option<PathBuf>,
    /// The diffusers weight variant asked for (`fp16`), to pass to the converter.
    pub weight_variant: Option<String>,
    /// Files downloaded by this call.
    pub downloaded: usize,
    /// Whether the Hub was not asked (offline, or unreachable with the model cached).
    pub cache_only: bool,
}

/// Makes `request` available in the cache and says where: lists the revision on the Hub,
/// downloads what is missing (see [`super::select`] for which files), and records the
/// revision's commit. Offline (`config.offline`) — or when the Hub cannot be reached and the
/// revision is cached — only the cache is used, and what it lacks is named.
pub fn fetch(
    config: &HubConfig,
    request: &HubRequest,
    on_event: &mut dyn FnMut(&HubEvent),
) -> Result<Fetched, HubError> {
    let repo = RepoId::parse(&request.repo)?;
    let revision = request.revision();
    check_revision(revision)?;
    let cache = RepoCache::new(&config.cache_dir, &repo);
    if config.offline {
        on_event(&HubEvent::CacheOnly {
            reason: "HF_HUB_OFFLINE is set",
        });
        return from_cache(&cache, &repo, request, on_event);
    }
    let client = HubClient::new(config);
    let listing = match client.list(&repo, revision) {
        Ok(l) => l,
        Err(HubError::Unreachable { endpoint, cause }) if cache.commit_of(revision).is_some() => {
            let reason = format!("{endpoint} cannot be reached ({cause}); using the cache");
            on_event(&HubEvent::CacheOnly { reason: &reason });
            return from_cache(&cache, &repo, request, on_event);
        }
        Err(e) => return Err(e),
    };
    let selection = select(repo.as_str(), &listing, request.variant.as_deref())?;
    for n in &selection.notes {
        on_event(&HubEvent::Note(n));
    }
    let commit = listing.commit.clone();
    // Each file with whether the snapshot has it already (looked up once).
    let mut files: Vec<(&RepoFile, bool)> = selection
        .files
        .iter()
        .map(|p| listing.file(p).expect("selected from the listing"))
        .map(|f| (f, cache.has(&commit, f)))
        .collect();
    let bytes = files
        .iter()
        .filter(|(_, cached)| !cached)
        .map(|(f, _)| f.size.unwrap_or(0))
        .sum();
    let transfer = Transfer {
        client: &client,
        config,
        cache: &cache,
        repo: &repo,
        commit: &commit,
    };
    on_event(&HubEvent::Resolved {
        commit: &commit,
        files: files.len(),
        bytes,
    });
    let mut downloaded = 0;
    let mut i = 0;
    while i < files.len() {
        let (f, cached) = files[i];
        if cached {
            on_event(&HubEvent::FileDone {
                path: &f.path,
                size: f.size.unwrap_or(0),
                downloaded: false,
            });
        } else if transfer.fetch_file(f, on_event)? {
            downloaded += 1;
        }
        if selection.indexes.contains(&f.path) {
            for shard in shards(&cache, &repo, &commit, &f.path)? {
                let file = listing.file(&shard).ok_or_else(|| HubError::NotAModel {
                    repo: repo.to_string(),
                    reason: format!("{} names {shard}, which the repository lacks", f.path),
                })?;
                if !files.iter().any(|(g, _)| g.path == file.path) {
                    files.push((file, cache.has(&commit, file)));
                }
            }
        }
        i += 1;
    }
    cache.write_ref(revision, &commit)?;
    Ok(fetched(
        &cache, &repo, commit, &selection, downloaded, false,
    ))
}

/// The shards the index `path` of the snapshot names, as repository paths beside it.
fn shards(
    cache: &RepoCache,
    repo: &RepoId,
    commit: &str,
    path: &str,
) -> Result<Vec<String>, HubError> {
    let full = cache.snapshot(commit).join(path);
    let bad = |reason: String| HubError::NotAModel {
        repo: repo.to_string(),
        reason: format!("{path}: {reason}"),
    };
    let bytes = sd_runtime::pipeline::image::read_input_file(&full, MAX_INDEX_BYTES)
        .map_err(|e| bad(e.to_string()))?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    let names =
        sd_convert::weights::shard_names(&value).ok_or_else(|| bad("no `weight_map`".into()))?;
    let dir = parent(path);
    names
        .into_iter()
        .map(|n| {
            let p = if dir.is_empty() {
                n.clone()
            } else {
                format!("{dir}/{n}")
            };
            if n.contains('/') || !check_file_path(&p) {
                Err(bad(format!("unsafe shard name {n:?}")))
            } else {
                Ok(p)
            }
        })
        .collect()
}

/// The model from the cache alone.
fn from_cache(
    cache: &RepoCache,
    repo: &RepoId,
    request: &HubRequest,
    on_event: &mut dyn FnMut(&HubEvent),
) -> Result<Fetched, HubError> {
    let revision = request.revision();
    let not_cached = |missing: String| HubError::NotCached {
        repo: repo.to_string(),
        revision: revision.to_string(),
        cache: cache.dir().to_path_buf(),
        missing,
    };
    let commit = cache
        .commit_of(revision)
        .ok_or_else(|| not_cached(format!("no snapshot for `{revision}`")))?;
    let listing: Listing = cache.listing(&commit)?;
    let selection = select(repo.as_str(), &listing, request.variant.as_deref())
        .map_err(|e| not_cached(e.to_string()))?;
    for n in &selection.notes {
        on_event(&HubEvent::Note(n));
    }
    for index in &selection.indexes {
        let shards = shards(cache, repo, &commit, index)?;
        let missing: Vec<&String> = shards
            .iter()
            .filter(|s| listing.file(s).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(not_cached(format!(
                "the shards {}",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(fetched(cache, repo, commit, &selection, 0, true))
}

fn fetched(
    cache: &RepoCache,
    repo: &RepoId,
    commit: String,
    s: &Selection,
    downloaded: usize,
    cache_only: bool,
) -> Fetched {
    let snapshot = cache.snapshot(&commit);
    let at = |p: &str| {
        if p.is_empty() {
            snapshot.clone()
        } else {
            snapshot.join(p)
        }
    };
    Fetched {
        repo: repo.to_string(),
        path: at(&s.root),
        tokenizer: s.tokenizer.as_deref().map(at),
        kind: s.kind,
        weight_variant: s.weight_variant.clone(),
        snapshot: snapshot.clone(),
        commit,
        downloaded,
        cache_only,
    }
}
