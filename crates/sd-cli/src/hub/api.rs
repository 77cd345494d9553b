//! The two Hub endpoints this tool uses: a commit's file listing
//! (`/api/models/{id}/revision/{rev}?blobs=true`, with sizes and checksums) and a file's
//! contents (`/{id}/resolve/{commit}/{path}`, with `Range` to resume). HTTP by `ureq`.

use super::repo::{FileHash, Listing, RepoFile, RepoId, check_file_path, is_commit, is_hex};
use super::{HubConfig, HubError};
use serde::Deserialize;
use std::time::Duration;
use ureq::http::{HeaderMap, Response, StatusCode};

/// Largest listing accepted (a repository with ~100 000 files).
const MAX_LISTING_BYTES: u64 = 64 << 20;
/// Most files a listing may name.
const MAX_FILES: usize = 200_000;
/// Largest error body read for its message.
const MAX_ERROR_BYTES: u64 = 64 << 10;

/// A connection to one Hub endpoint.
#[derive(Debug, Clone)]
pub struct HubClient {
    agent: ureq::Agent,
    endpoint: String,
    token: Option<String>,
}

/// A failed request: either the Hub's answer, or no answer at all.
#[derive(Debug)]
pub(crate) enum RequestError {
    /// The transport failed (no connection, reset, timeout): worth retrying.
    Transport(String),
    /// The Hub answered with an error status.
    Answer(HubError),
}

impl HubClient {
    /// A client for `config`'s endpoint and token (redirects followed, the token sent only
    /// to the endpoint's own host, no compression so that byte ranges are the file's).
    pub fn new(config: &HubConfig) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(10)
            .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
            .timeout_connect(Some(Duration::from_secs(20)))
            .timeout_recv_response(Some(config.read_timeout))
            .timeout_per_read(Some(config.read_timeout))
            .user_agent(concat!("sd/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        HubClient {
            agent,
            endpoint: config.endpoint.clone(),
            token: config.token.clone(),
        }
    }

    /// The endpoint's base URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The files of `revision` of `repo`, with the commit it points to.
    pub fn list(&self, repo: &RepoId, revision: &str) -> Result<Listing, HubError> {
        let url = format!(
            "{}/api/models/{}/revision/{}?blobs=true",
            self.endpoint,
            repo,
            encode_segment(revision)
        );
        let mut response = match self.get(&url, None) {
            Ok(r) => r,
            Err(RequestError::Transport(cause)) => {
                return Err(HubError::Unreachable {
                    endpoint: self.endpoint.clone(),
                    cause,
                });
            }
            Err(RequestError::Answer(e)) => return Err(e),
        };
        if !response.status().is_success() {
            return Err(self.status_error(repo, Some(revision), &url, &mut response));
        }
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_LISTING_BYTES)
            .read_to_string()
            .map_err(|e| HubError::BadListing {
                repo: repo.to_string(),
                reason: format!("reading it: {e}"),
            })?;
        parse_listing(repo, &text)
    }

    /// Starts reading `path` of `commit` from byte `from` (a `Range` request when `from > 0`).
    /// The caller checks the status: 200 (whole file), 206 (the range), 416, or an error.
    pub(crate) fn open_file(
        &self,
        repo: &RepoId,
        commit: &str,
        path: &str,
        from: u64,
    ) -> Result<Response<ureq::Body>, RequestError> {
        let url = self.file_url(repo, commit, path);
        self.get(&url, (from > 0).then(|| format!("bytes={from}-")))
    }

    /// The address of `path` at `commit`.
    pub fn file_url(&self, repo: &RepoId, commit: &str, path: &str) -> String {
        let path: Vec<String> = path.split('/').map(encode_segment).collect();
        format!(
            "{}/{}/resolve/{}/{}",
            self.endpoint,
            repo,
            commit,
            path.join("/")
        )
    }

    fn get(&self, url: &str, range: Option<String>) -> Result<Response<ureq::Body>, RequestError> {
        let mut req = self.agent.get(url).header("Accept-Encoding", "identity");
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        if let Some(r) = range {
            req = req.header("Range", r);
        }
        req.call().map_err(|e| match e {
            ureq::Error::BadUri(u) => RequestError::Answer(HubError::Unreachable {
                endpoint: self.endpoint.clone(),
                cause: format!("bad address {u}"),
            }),
            other => RequestError::Transport(other.to_string()),
        })
    }

    /// The error an unsuccessful answer stands for, read as `huggingface_hub` reads it: the
    /// `X-Error-Code` header first, then the status.
    pub(crate) fn status_error(
        &self,
        repo: &RepoId,
        revision: Option<&str>,
        url: &str,
        response: &mut Response<ureq::Body>,
    ) -> HubError {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_ERROR_BYTES)
            .read_to_string()
            .unwrap_or_default();
        classify(
            &self.endpoint,
            repo,
            revision,
            url,
            status,
            &headers,
            &body,
            self.token.is_some(),
        )
    }
}

#[allow(clippy::too_many_arguments)]
fn classify(
    endpoint: &str,
    repo: &RepoId,
    revision: Option<&str>,
    url: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    has_token: bool,
) -> HubError {
    let header = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let code = header("x-error-code");
    let mut message = header("x-error-message");
    if message.is_empty() {
        message = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_default();
    }
    let message: String = message
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect();
    let detail = if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    };
    let repo_s = repo.to_string();
    match (code.as_str(), status.as_u16()) {
        ("GatedRepo", _) => HubError::Gated {
            url: format!("{endpoint}/{repo}"),
            repo: repo_s,
            detail,
        },
        ("RevisionNotFound", _) => HubError::RevisionNotFound {
            repo: repo_s,
            revision: revision.unwrap_or("?").to_string(),
        },
        (_, 401) => HubError::Unauthorized {
            repo: repo_s,
            detail: if message.is_empty() {
                "HTTP 401".into()
            } else {
                message
            },
            hint: if has_token {
                "the token given (HF_TOKEN or the token file) was refused or has no access".into()
            } else {
                "set HF_TOKEN or log in with `huggingface-cli login`".into()
            },
        },
        ("RepoNotFound", _) | (_, 404) if revision.is_some() => HubError::RepoNotFound {
            repo: repo_s,
            endpoint: endpoint.to_string(),
        },
        _ => HubError::Status {
            url: url.to_string(),
            status: status.as_u16(),
            detail,
        },
    }
}

#[derive(Deserialize)]
struct RevisionInfo {
    sha: Option<String>,
    siblings: Option<Vec<Sibling>>,
}

#[derive(Deserialize)]
struct Sibling {
    rfilename: String,
    size: Option<u64>,
    #[serde(rename = "blobId")]
    blob_id: Option<String>,
    lfs: Option<Lfs>,
}

#[derive(Deserialize)]
struct Lfs {
    sha256: String,
    size: u64,
}

/// Reads and checks the JSON of a revision listing (`/api/models/<repo>/revision/<rev>`).
pub fn parse_listing(repo: &RepoId, text: &str) -> Result<Listing, HubError> {
    let bad = |reason: String| HubError::BadListing {
        repo: repo.to_string(),
        reason,
    };
    let info: RevisionInfo =
        serde_json::from_str(text).map_err(|e| bad(format!("not the expected JSON: {e}")))?;
    let commit = info
        .sha
        .filter(|s| is_commit(s))
        .ok_or_else(|| bad("no commit hash (`sha`)".into()))?;
    let siblings = info
        .siblings
        .ok_or_else(|| bad("no file list (`siblings`)".into()))?;
    if siblings.len() > MAX_FILES {
        return Err(bad(format!(
            "{} files, more than {MAX_FILES}",
            siblings.len()
        )));
    }
    let mut files = Vec::with_capacity(siblings.len());
    for s in siblings {
        if !check_file_path(&s.rfilename) {
            return Err(bad(format!("unsafe file name {:?}", s.rfilename)));
        }
        let (size, hash) = match s.lfs {
            Some(lfs) if is_hex(&lfs.sha256, 64) => {
                (Some(lfs.size), Some(FileHash::Sha256(lfs.sha256)))
            }
            Some(lfs) => return Err(bad(format!("{}: bad sha256 {:?}", s.rfilename, lfs.sha256))),
            None => match s.blob_id {
                Some(b) if is_hex(&b, 40) => (s.size, Some(FileHash::GitBlob(b))),
                Some(b) => return Err(bad(format!("{}: bad blob id {b:?}", s.rfilename))),
                None => (s.size, None),
            },
        };
        files.push(RepoFile {
            path: s.rfilename,
            size,
            hash,
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    if let Some(w) = files.windows(2).find(|w| w[0].path == w[1].path) {
        return Err(bad(format!("{} is listed twice", w[0].path)));
    }
    Ok(Listing { commit, files })
}

/// Percent-encodes one URL path segment (everything but unreserved characters).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> RepoId {
        RepoId::parse("o/n").unwrap()
    }

    #[test]
    fn listings_give_sizes_and_checksums() {
        let text = r#"{"id":"o/n","sha":"0123456789abcdef0123456789abcdef01234567","siblings":[
            {"rfilename":"unet/diffusion_pytorch_model.safetensors","size":9,"blobId":"1111111111111111111111111111111111111111",
             "lfs":{"sha256":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","size":9,"pointerSize":130}},
            {"rfilename":"model_index.json","size":3,"blobId":"2222222222222222222222222222222222222222"}]}"#;
        let l = parse_listing(&id(), text).unwrap();
        assert_eq!(l.files[0].path, "model_index.json");
        assert_eq!(l.files[0].size, Some(3));
        assert!(matches!(l.files[0].hash, Some(FileHash::GitBlob(_))));
        assert!(matches!(l.files[1].hash, Some(FileHash::Sha256(_))));
    }

    #[test]
    fn hostile_listings_are_refused() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        for siblings in [
            r#"[{"rfilename":"../../etc/passwd"}]"#,
            r#"[{"rfilename":"/abs"}]"#,
            r#"[{"rfilename":"a","lfs":{"sha256":"../x","size":1}}]"#,
            r#"[{"rfilename":"a","blobId":"zz"}]"#,
            r#"[{"rfilename":"a"},{"rfilename":"a"}]"#,
        ] {
            let text = format!(r#"{{"sha":"{sha}","siblings":{siblings}}}"#);
            let e = parse_listing(&id(), &text).unwrap_err();
            assert!(matches!(e, HubError::BadListing { .. }), "{siblings}: {e}");
        }
        for text in [
            "",
            "[]",
            r#"{"sha":"main","siblings":[]}"#,
            r#"{"sha":"x"}"#,
        ] {
            assert!(parse_listing(&id(), text).is_err(), "{text}");
        }
    }

    #[test]
    fn answers_are_classified_by_error_code_then_status() {
        let mut h = HeaderMap::new();
        let c = |h: &HeaderMap, status: u16, token: bool| {
            classify(
                "http://hub",
                &id(),
                Some("main"),
                "u",
                StatusCode::from_u16(status).unwrap(),
                h,
                r#"{"error":"nope"}"#,
                token,
            )
            .to_string()
        };
        assert!(
            c(&h, 401, false).contains("HF_TOKEN"),
            "{}",
            c(&h, 401, false)
        );
        assert!(c(&h, 401, true).contains("refused"));
        assert!(c(&h, 404, false).contains("no such repository"));
        h.insert("x-error-code", "GatedRepo".parse().unwrap());
        assert!(c(&h, 403, true).contains("gated"));
        h.insert("x-error-code", "RevisionNotFound".parse().unwrap());
        assert!(c(&h, 404, false).contains("no revision `main`"));
        assert!(c(&HeaderMap::new(), 500, false).contains("HTTP 500: nope"));
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("refs/pr/1"), "refs%2Fpr%2F1");
        assert_eq!(encode_segment("a b+c.json"), "a%20b%2Bc.json");
    }
}
