//! A Hugging Face Hub lookalike on loopback for the Hub tests: it serves repositories made of
//! fixture folders the way the Hub does — the revision listing with sizes and checksums
//! (`/api/models/{id}/revision/{rev}?blobs=true`), files at `/{id}/resolve/{rev}/{path}`
//! with `X-Repo-Commit` and ETags, Git LFS files redirected to a CDN path, byte ranges, and
//! the Hub's error codes (`RepoNotFound`, `RevisionNotFound`, `GatedRepo`, 401 for private
//! repositories) — and can misbehave on request: drop a connection midway, corrupt a file,
//! send more bytes than listed. Every request is logged.

#![allow(dead_code)]

use sha1::Digest;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The bytes of `path` in the tiny diffusers fixture (`fixtures/models/sd1-tiny`).
pub fn tiny_file(path: &str) -> Vec<u8> {
    std::fs::read(root().join("fixtures/models/sd1-tiny").join(path)).unwrap()
}

/// A repository the server holds.
#[derive(Clone, Default)]
pub struct Repo {
    pub commit: String,
    pub files: BTreeMap<String, Vec<u8>>,
    /// Downloads answer 403 GatedRepo.
    pub gated: bool,
    /// Everything answers 401 unless this bearer token is sent.
    pub token: Option<String>,
    /// A listing sent as it is instead of the real one.
    pub listing_override: Option<String>,
}

impl Repo {
    /// A repository of the files under `dir` (paths relative to it, `/`-separated).
    pub fn from_folder(dir: &Path) -> Repo {
        let mut repo = Repo {
            commit: String::new(),
            ..Default::default()
        };
        repo.add_folder(dir, "");
        repo.recommit();
        repo
    }

    /// Adds the files under `dir` at `prefix`.
    pub fn add_folder(&mut self, dir: &Path, prefix: &str) {
        let mut stack = vec![(dir.to_path_buf(), prefix.to_string())];
        while let Some((d, rel)) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                let path = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                if e.path().is_dir() {
                    stack.push((e.path(), path));
                } else {
                    self.files.insert(path, std::fs::read(e.path()).unwrap());
                }
            }
        }
        self.recommit();
    }

    /// Adds one file.
    pub fn add(&mut self, path: &str, bytes: &[u8]) {
        self.files.insert(path.to_string(), bytes.to_vec());
        self.recommit();
    }

    /// A commit hash that changes with the contents.
    fn recommit(&mut self) {
        let mut h = sha1::Sha1::new();
        for (p, b) in &self.files {
            h.update(p.as_bytes());
            h.update(b);
        }
        self.commit = hex(&h.finalize());
    }
}

/// Misbehaviour for one file's downloads.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Send only `after` bytes of the body then close the connection, `times` times.
    DropAfter { after: usize, times: usize },
    /// Flip one byte of the body (same length).
    Corrupt,
    /// Send more bytes than the file has.
    Longer,
    /// Send `after` bytes, then hold the connection silent for a minute.
    StallAfter { after: usize },
}

/// One logged request.
#[derive(Clone, Debug)]
pub struct Logged {
    pub path: String,
    pub range: Option<String>,
}

#[derive(Default)]
struct State {
    repos: HashMap<String, Repo>,
    faults: HashMap<String, Fault>,
    log: Vec<Logged>,
}

/// The server; it stops accepting when dropped.
pub struct HubServer {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl HubServer {
    pub fn start() -> HubServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if Arc::strong_count(&s) == 1 {
                    break;
                }
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = handle(conn, &s);
                });
            }
        });
        HubServer { url, state }
    }

    pub fn add_repo(&self, id: &str, repo: Repo) {
        self.state
            .lock()
            .unwrap()
            .repos
            .insert(id.to_string(), repo);
    }

    /// Sets (or with `None` clears) the fault for `repo`'s `path`.
    pub fn fault(&self, repo: &str, path: &str, fault: Option<Fault>) {
        let key = format!("{repo}/{path}");
        let mut st = self.state.lock().unwrap();
        match fault {
            Some(f) => st.faults.insert(key, f),
            None => st.faults.remove(&key),
        };
    }

    /// The requests so far, and clears the log.
    pub fn take_log(&self) -> Vec<Logged> {
        std::mem::take(&mut self.state.lock().unwrap().log)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether the Hub would store `path` in Git LFS.
fn is_lfs(path: &str) -> bool {
    [".safetensors", ".bin", ".ckpt", ".mlmodel"]
        .iter()
        .any(|e| path.ends_with(e))
}

fn sha256(b: &[u8]) -> String {
    hex(&sha2::Sha256::digest(b))
}

fn git_blob(b: &[u8]) -> String {
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", b.len()).as_bytes());
    h.update(b);
    hex(&h.finalize())
}

fn listing(id: &str, repo: &Repo) -> String {
    let siblings: Vec<serde_json::Value> = repo
        .files
        .iter()
        .map(|(p, b)| {
            let mut v = serde_json::json!({"rfilename": p, "size": b.len(), "blobId": git_blob(b)});
            if is_lfs(p) {
                v["lfs"] =
                    serde_json::json!({"sha256": sha256(b), "size": b.len(), "pointerSize": 134});
            }
            v
        })
        .collect();
    serde_json::json!({
        "_id": "0", "id": id, "modelId": id, "sha": repo.commit, "private": repo.token.is_some(),
        "gated": if repo.gated { serde_json::json!("manual") } else { serde_json::json!(false) },
        "siblings": siblings,
    })
    .to_string()
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Close after this many body bytes.
    cut: Option<usize>,
    /// Stay silent (a minute) before closing after the cut.
    stall: bool,
}

impl Answer {
    fn error(status: u16, code: &str, message: &str) -> Answer {
        Answer {
            status,
            headers: vec![
                ("X-Error-Code".into(), code.into()),
                ("X-Error-Message".into(), message.into()),
                ("Content-Type".into(), "application/json".into()),
            ],
            body: serde_json::json!({ "error": message })
                .to_string()
                .into_bytes(),
            cut: None,
            stall: false,
        }
    }
}

fn handle(conn: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let answer = answer(&target, &headers, state);
    let mut out = conn;
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        answer.status,
        answer.body.len()
    );
    for (k, v) in &answer.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    let end = answer
        .cut
        .unwrap_or(answer.body.len())
        .min(answer.body.len());
    out.write_all(&answer.body[..end])?;
    out.flush()?;
    if answer.stall {
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
    let _ = out.shutdown(std::net::Shutdown::Both);
    let _ = reader.read(&mut [0u8; 1]);
    Ok(())
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn answer(target: &str, headers: &HashMap<String, String>, state: &Mutex<State>) -> Answer {
    let mut st = state.lock().unwrap();
    let path = target.split('?').next().unwrap_or("").to_string();
    st.log.push(Logged {
        path: decode(&path),
        range: headers.get("range").cloned(),
    });
    let auth = headers.get("authorization").cloned();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // /cdn/<owner>/<name>/<sha256>: an LFS file's bytes (no credentials needed).
    if parts.len() == 4 && parts[0] == "cdn" {
        let id = format!("{}/{}", parts[1], parts[2]);
        let Some(repo) = st.repos.get(&id) else {
            return Answer::error(404, "", "no such blob");
        };
        let Some((p, bytes)) = repo.files.iter().find(|(_, b)| sha256(b) == parts[3]) else {
            return Answer::error(404, "", "no such blob");
        };
        let fault = st.faults.get(&format!("{id}/{p}")).cloned();
        let bytes = bytes.clone();
        let key = format!("{id}/{p}");
        return serve_bytes(&mut st, &key, bytes, headers, fault, vec![]);
    }
    let (id, rest) = if parts.len() >= 2 && parts[0] == "api" {
        // api/models/<owner>/<name>/revision/<rev>
        if parts.len() != 6 || parts[1] != "models" || parts[4] != "revision" {
            return Answer::error(404, "", "unknown API");
        }
        (format!("{}/{}", parts[2], parts[3]), None)
    } else if parts.len() >= 5 && parts[2] == "resolve" {
        (
            format!("{}/{}", parts[0], parts[1]),
            Some(parts[3..].to_vec()),
        )
    } else {
        return Answer::error(404, "", "unknown path");
    };
    let Some(repo) = st.repos.get(&id).cloned() else {
        return if auth.is_some() {
            Answer::error(404, "RepoNotFound", "Repository not found")
        } else {
            Answer::error(401, "RepoNotFound", "Repository not found")
        };
    };
    if let Some(t) = &repo.token
        && auth.as_deref() != Some(&format!("Bearer {t}"))
    {
        return Answer::error(
            401,
            "RepoNotFound",
            "Invalid credentials in Authorization header",
        );
    }
    match rest {
        None => {
            let rev = decode(parts[5]);
            if rev != "main" && rev != repo.commit {
                return Answer::error(404, "RevisionNotFound", &format!("Invalid rev id: {rev}"));
            }
            let body = repo
                .listing_override
                .clone()
                .unwrap_or_else(|| listing(&id, &repo));
            Answer {
                status: 200,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: body.into_bytes(),
                cut: None,
                stall: false,
            }
        }
        Some(rest) => {
            let rev = decode(rest[0]);
            if rev != "main" && rev != repo.commit {
                return Answer::error(404, "RevisionNotFound", &format!("Invalid rev id: {rev}"));
            }
            let file = rest[1..]
                .iter()
                .map(|s| decode(s))
                .collect::<Vec<_>>()
                .join("/");
            if repo.gated {
                return Answer::error(
                    403,
                    "GatedRepo",
                    &format!(
                        "Access to model {id} is restricted and you are not in the authorized list."
                    ),
                );
            }
            let Some(bytes) = repo.files.get(&file).cloned() else {
                return Answer::error(404, "EntryNotFound", "Entry not found");
            };
            let mut extra = vec![
                ("X-Repo-Commit".to_string(), repo.commit.clone()),
                ("ETag".to_string(), format!("\"{}\"", git_blob(&bytes))),
            ];
            if is_lfs(&file) {
                extra.push(("X-Linked-Etag".into(), format!("\"{}\"", sha256(&bytes))));
                extra.push(("X-Linked-Size".into(), bytes.len().to_string()));
                extra.push(("Location".into(), format!("/cdn/{id}/{}", sha256(&bytes))));
                return Answer {
                    status: 302,
                    headers: extra,
                    body: vec![],
                    cut: None,
                    stall: false,
                };
            }
            let fault = st.faults.get(&format!("{id}/{file}")).cloned();
            let key = format!("{id}/{file}");
            serve_bytes(&mut st, &key, bytes, headers, fault, extra)
        }
    }
}

fn serve_bytes(
    st: &mut State,
    key: &str,
    mut bytes: Vec<u8>,
    headers: &HashMap<String, String>,
    fault: Option<Fault>,
    mut extra: Vec<(String, String)>,
) -> Answer {
    let total = bytes.len();
    let mut cut = None;
    let mut stall = false;
    match fault {
        Some(Fault::Corrupt) => {
            let i = total / 2;
            bytes[i] ^= 0x5a;
        }
        Some(Fault::Longer) => bytes.extend_from_slice(b"and some more"),
        Some(Fault::StallAfter { after }) => {
            cut = Some(after);
            stall = true;
        }
        Some(Fault::DropAfter { after, times }) if times > 0 => {
            cut = Some(after);
            if times == 1 {
                st.faults.remove(key);
            } else if times != usize::MAX {
                st.faults.insert(
                    key.to_string(),
                    Fault::DropAfter {
                        after,
                        times: times - 1,
                    },
                );
            }
        }
        _ => {}
    }
    let start = headers
        .get("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|s| s.parse::<usize>().ok());
    extra.push(("Accept-Ranges".into(), "bytes".into()));
    match start {
        Some(s) if s >= total => Answer {
            status: 416,
            headers: extra,
            body: vec![],
            cut: None,
            stall: false,
        },
        Some(s) => {
            extra.push((
                "Content-Range".into(),
                format!("bytes {s}-{}/{total}", total - 1),
            ));
            let body = bytes[s..].to_vec();
            Answer {
                status: 206,
                headers: extra,
                cut: cut.map(|c| c.saturating_sub(s).min(body.len())),
                body,
                stall,
            }
        }
        None => Answer {
            status: 200,
            headers: extra,
            body: bytes,
            cut,
            stall,
        },
    }
}
