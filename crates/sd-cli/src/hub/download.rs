//! One file into the cache: resumed from its `.incomplete` part, retried when the connection
//! breaks, never longer than the listing says, checked against the listing's size and
//! checksum, and only then renamed into `blobs/`. Two processes fetching the same blob take
//! turns on its lock file.

use super::api::{HubClient, RequestError};
use super::cache::RepoCache;
use super::error::io;
use super::repo::{FileHash, RepoFile, RepoId};
use super::{HubConfig, HubError, HubEvent};
use sha1::Digest;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};

/// The running checksum of a download.
enum Hasher {
    Sha256(sha2::Sha256),
    GitBlob(sha1::Sha1),
}

impl Hasher {
    fn new(hash: &FileHash, size: u64) -> Self {
        match hash {
            FileHash::Sha256(_) => Hasher::Sha256(sha2::Sha256::new()),
            FileHash::GitBlob(_) => {
                let mut h = sha1::Sha1::new();
                h.update(format!("blob {size}\0").as_bytes());
                Hasher::GitBlob(h)
            }
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::GitBlob(h) => h.update(bytes),
        }
    }

    fn hex(self) -> String {
        let bytes = match self {
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::GitBlob(h) => h.finalize().to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// What one attempt ended with.
enum Attempt {
    /// Every byte arrived.
    Complete,
    /// The connection broke or closed early (the bytes so far are kept).
    Broken(String),
}

/// One commit's files going into the cache: where from, where to, how patiently.
pub(crate) struct Transfer<'a> {
    /// The Hub.
    pub client: &'a HubClient,
    /// Retries and delays.
    pub config: &'a HubConfig,
    /// The repository's cache folder.
    pub cache: &'a RepoCache,
    /// The repository.
    pub repo: &'a RepoId,
    /// The commit.
    pub commit: &'a str,
}

impl Transfer<'_> {
    /// Puts `file` into the cache's blobs (downloading it unless already there) and links it into
    /// the commit's snapshot. Returns whether bytes were downloaded.
    pub(crate) fn fetch_file(
        &self,
        file: &RepoFile,
        on_event: &mut dyn FnMut(&HubEvent),
    ) -> Result<bool, HubError> {
        let Transfer {
            cache,
            repo,
            commit,
            ..
        } = *self;
        let (Some(hash), Some(size)) = (&file.hash, file.size) else {
            return Err(HubError::BadListing {
                repo: repo.to_string(),
                reason: format!(
                    "{}: no size or checksum, so it cannot be checked",
                    file.path
                ),
            });
        };
        let blob = cache.blob(hash);
        let mut downloaded = false;
        if !is_blob(&blob, size) {
            let lock_path = cache.lock_file(hash);
            let lock_dir = lock_path.parent().unwrap_or(cache.dir());
            std::fs::create_dir_all(lock_dir).map_err(io("creating", lock_dir))?;
            let lock = File::create(&lock_path).map_err(io("creating", &lock_path))?;
            lock.lock().map_err(io("locking", &lock_path))?;
            if !is_blob(&blob, size) {
                self.download(file, hash, size, on_event)?;
                downloaded = true;
            }
            drop(lock);
        }
        cache.link(commit, &file.path, hash)?;
        on_event(&HubEvent::FileDone {
            path: &file.path,
            size,
            downloaded,
        });
        Ok(downloaded)
    }

    fn download(
        &self,
        file: &RepoFile,
        hash: &FileHash,
        size: u64,
        on_event: &mut dyn FnMut(&HubEvent),
    ) -> Result<(), HubError> {
        let Transfer {
            config,
            cache,
            repo,
            ..
        } = *self;
        let part = cache.incomplete(hash);
        let blobs = part.parent().unwrap_or(cache.dir());
        std::fs::create_dir_all(blobs).map_err(io("creating", blobs))?;
        let mut out = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&part)
            .map_err(io("opening", &part))?;
        let mut have = out.metadata().map_err(io("reading", &part))?.len();
        if have > size {
            out.set_len(0).map_err(io("truncating", &part))?;
            have = 0;
        }
        let mut hasher = Hasher::new(hash, size);
        hash_prefix(&mut out, have, &mut hasher).map_err(io("reading", &part))?;
        on_event(&HubEvent::FileStart {
            path: &file.path,
            size,
            resumed_from: have,
        });
        let mismatch = |what: &'static str, expected: String, actual: String| HubError::Mismatch {
            repo: repo.to_string(),
            path: file.path.clone(),
            what,
            expected,
            actual,
        };
        let mut attempt = 0;
        loop {
            let result = if have == size {
                Ok(Attempt::Complete)
            } else {
                self.one_attempt(file, size, &mut out, &mut have, &mut hasher, on_event)
            };
            match result {
                Ok(Attempt::Complete) => break,
                Ok(Attempt::Broken(cause)) => {
                    if attempt >= config.retries {
                        return Err(HubError::Interrupted {
                            repo: repo.to_string(),
                            path: file.path.clone(),
                            attempts: attempt + 1,
                            cause,
                            done: have,
                            size,
                        });
                    }
                    attempt += 1;
                    on_event(&HubEvent::Retry {
                        path: &file.path,
                        attempt,
                        cause: &cause,
                    });
                    let wait = config.retry_delay * 2u32.saturating_pow(attempt - 1);
                    std::thread::sleep(wait.min(std::time::Duration::from_secs(8)));
                }
                Err(e @ HubError::Mismatch { .. }) => {
                    drop(out);
                    let _ = std::fs::remove_file(&part);
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
        out.sync_all().map_err(io("writing", &part))?;
        drop(out);
        let actual = hasher.hex();
        if actual != hash.hex() {
            let _ = std::fs::remove_file(&part);
            return Err(mismatch(hash.kind(), hash.hex().to_string(), actual));
        }
        let blob = cache.blob(hash);
        std::fs::rename(&part, &blob).map_err(io("renaming into place", &blob))
    }

    /// One request for the bytes from `have` on, appended to `out`.
    fn one_attempt(
        &self,
        file: &RepoFile,
        size: u64,
        out: &mut File,
        have: &mut u64,
        hasher: &mut Hasher,
        on_event: &mut dyn FnMut(&HubEvent),
    ) -> Result<Attempt, HubError> {
        let Transfer {
            client,
            repo,
            commit,
            ..
        } = *self;
        let part_err = |e: std::io::Error| HubError::Io {
            what: "writing the download of",
            path: file.path.clone().into(),
            source: e,
        };
        let mut response = match client.open_file(repo, commit, &file.path, *have) {
            Ok(r) => r,
            Err(RequestError::Transport(cause)) => return Ok(Attempt::Broken(cause)),
            Err(RequestError::Answer(e)) => return Err(e),
        };
        let status = response.status().as_u16();
        match status {
            206 if content_range_start(&response) == Some(*have) => {}
            200 | 206 | 416 => {
                // The server sent the whole file (or refused the range): start over.
                if *have > 0 {
                    out.set_len(0).map_err(part_err)?;
                    out.seek(SeekFrom::Start(0)).map_err(part_err)?;
                    *have = 0;
                    *hasher = Hasher::new(file.hash.as_ref().expect("checked by the caller"), size);
                }
                if status != 200 {
                    return Ok(Attempt::Broken(format!("HTTP {status} to a range request")));
                }
            }
            429 | 500..=599 => return Ok(Attempt::Broken(format!("HTTP {status}"))),
            _ => {
                let url = client.file_url(repo, commit, &file.path);
                return Err(client.status_error(repo, None, &url, &mut response));
            }
        }
        let mut reader = response.into_body().into_reader();
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => return Ok(Attempt::Broken(e.to_string())),
            };
            if *have + n as u64 > size {
                return Err(HubError::Mismatch {
                    repo: repo.to_string(),
                    path: file.path.clone(),
                    what: "size",
                    expected: size.to_string(),
                    actual: format!("more than {size}"),
                });
            }
            out.write_all(&buf[..n]).map_err(part_err)?;
            hasher.update(&buf[..n]);
            *have += n as u64;
            on_event(&HubEvent::FileProgress {
                path: &file.path,
                done: *have,
                size,
            });
        }
        out.flush().map_err(part_err)?;
        if *have < size {
            return Ok(Attempt::Broken(format!(
                "the connection closed after {have} of {size} bytes"
            )));
        }
        Ok(Attempt::Complete)
    }
}

/// Whether `blob` is a complete blob of `size` bytes.
fn is_blob(blob: &std::path::Path, size: u64) -> bool {
    std::fs::metadata(blob).is_ok_and(|m| m.is_file() && m.len() == size)
}

/// Feeds the first `have` bytes already in `out` to the hasher; leaves `out` at their end.
fn hash_prefix(out: &mut File, have: u64, hasher: &mut Hasher) -> std::io::Result<()> {
    out.seek(SeekFrom::Start(0))?;
    let mut left = have;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = out.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::other("the partial download shrank"));
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    out.seek(SeekFrom::Start(have))?;
    Ok(())
}

/// The first byte a 206 answer's `Content-Range: bytes A-B/N` covers.
fn content_range_start(response: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    let v = response.headers().get("content-range")?.to_str().ok()?;
    let range = v.strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}
