//! Why a Hub repository could not be resolved or fetched, each cause its own variant with
//! what the user can do about it.

use std::path::PathBuf;

/// A failure to resolve, list or download a Hub repository.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Not a repository id.
    #[error("`{id}` is not a Hugging Face repository id: {reason}")]
    InvalidId {
        /// The id as given.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// Not a revision name.
    #[error("`{revision}` is not a revision (a branch, tag or commit of letters, digits, `-_./+`)")]
    InvalidRevision {
        /// The revision as given.
        revision: String,
    },
    /// The environment gives no configuration.
    #[error(transparent)]
    Config(#[from] super::ConfigError),
    /// The endpoint could not be reached (DNS, refused, TLS, timeout).
    #[error(
        "could not reach {endpoint} ({cause}); check the network or HF_ENDPOINT, or set \
         HF_HUB_OFFLINE=1 to use only what is cached"
    )]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// The transport error.
        cause: String,
    },
    /// 401: a private or gated repository without (valid) credentials, or one that does not
    /// exist (the Hub does not tell which without a token).
    #[error(
        "{repo}: the Hub refused access ({detail}); if the repository exists it is private or \
         gated — {hint}"
    )]
    Unauthorized {
        /// The repository.
        repo: String,
        /// The Hub's message.
        detail: String,
        /// What to do, depending on whether a token was sent.
        hint: String,
    },
    /// 403 for a gated repository whose terms the token's account has not accepted.
    #[error(
        "{repo} is gated: accept its conditions at {url} with the account whose token you use \
         (HF_TOKEN or `huggingface-cli login`){detail}"
    )]
    Gated {
        /// The repository.
        repo: String,
        /// Its page.
        url: String,
        /// The Hub's message, when it gave one.
        detail: String,
    },
    /// The repository does not exist (or the token cannot see it).
    #[error("{repo}: no such repository on {endpoint}")]
    RepoNotFound {
        /// The repository.
        repo: String,
        /// The endpoint asked.
        endpoint: String,
    },
    /// The revision does not exist.
    #[error("{repo}: no revision `{revision}` (branch, tag or commit)")]
    RevisionNotFound {
        /// The repository.
        repo: String,
        /// The revision.
        revision: String,
    },
    /// Another HTTP failure.
    #[error("{url}: HTTP {status}{detail}")]
    Status {
        /// What was requested.
        url: String,
        /// The status code.
        status: u16,
        /// The Hub's message, when it gave one.
        detail: String,
    },
    /// The listing the server sent cannot be used.
    #[error("{repo}: the Hub's file listing is unusable: {reason}")]
    BadListing {
        /// The repository.
        repo: String,
        /// What is wrong.
        reason: String,
    },
    /// Nothing in the repository is a model this tool loads.
    #[error("{repo}: {reason}")]
    NotAModel {
        /// The repository.
        repo: String,
        /// What was looked for and what was found.
        reason: String,
    },
    /// `--variant` names nothing in the repository.
    #[error("{repo}: no variant `{variant}`; it has: {choices}")]
    NoSuchVariant {
        /// The repository.
        repo: String,
        /// The variant asked for.
        variant: String,
        /// What it has, comma-separated.
        choices: String,
    },
    /// Offline, and the cache lacks what is needed.
    #[error(
        "HF_HUB_OFFLINE is set and {repo} ({revision}) is not complete in the cache {}: {missing}; \
         run once with network access (or unset HF_HUB_OFFLINE)",
        cache.display()
    )]
    NotCached {
        /// The repository.
        repo: String,
        /// The revision.
        revision: String,
        /// The repository's cache folder.
        cache: PathBuf,
        /// What is missing.
        missing: String,
    },
    /// A downloaded file is not what the Hub reported; it was discarded.
    #[error(
        "{repo}: {path}: the download does not match the Hub's {what} (expected {expected}, got \
         {actual}); it was discarded — try again, or report the mirror if it persists"
    )]
    Mismatch {
        /// The repository.
        repo: String,
        /// The file.
        path: String,
        /// Which check (`size`, `sha256`, `git blob id`).
        what: &'static str,
        /// What the listing says.
        expected: String,
        /// What arrived.
        actual: String,
    },
    /// A transfer kept breaking; what arrived is kept for the next run to resume.
    #[error(
        "{repo}: {path}: the download broke off {attempts} times ({cause}); {done} of {size} \
         bytes are kept in the cache's blobs/ as `.incomplete` and the next run resumes there"
    )]
    Interrupted {
        /// The repository.
        repo: String,
        /// The file.
        path: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last failure.
        cause: String,
        /// Bytes kept.
        done: u64,
        /// Bytes in all.
        size: u64,
    },
    /// A file-system operation in the cache failed.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// `map_err` helper: an I/O error in the cache, with what was done and where.
pub(crate) fn io<'a>(
    what: &'static str,
    path: &'a std::path::Path,
) -> impl FnOnce(std::io::Error) -> HubError + 'a {
    move |source| HubError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}
