//! `sd_cli::hub::fetch` against a Hub lookalike on loopback (`hub_support`): only the files a
//! model needs are downloaded, into the Hugging Face cache layout; a second call is a cache
//! hit; a dropped connection resumes (in the same run and in the next); a corrupt or
//! over-long file is refused and nothing of it stays; offline mode and an unreachable Hub use
//! the cache and name what is missing; the Hub's refusals each give their own message.

mod hub_support;

use hub_support::{Fault, HubServer, Repo, root, tiny_file};
use sd_cli::hub::{HubConfig, HubError, HubEvent, HubRequest, RepoKind, fetch};
use std::path::{Path, PathBuf};
use std::time::Duration;

const TINY: &str = "tiny/sd1-tiny";
const UNET: &str = "unet/diffusion_pytorch_model.fp16.safetensors";

fn fresh_cache(name: &str) -> PathBuf {
    let dir = root().join("target/test-hub").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn config(server: &HubServer, cache: &Path) -> HubConfig {
    let mut c = HubConfig::new(&server.url, cache);
    c.retry_delay = Duration::from_millis(10);
    c.read_timeout = Duration::from_secs(10);
    c
}

/// The tiny diffusers model, with a single-file checkpoint and a README beside it that a
/// diffusers download must not fetch.
fn tiny_repo() -> Repo {
    let mut r = Repo::from_folder(&root().join("fixtures/models/sd1-tiny"));
    r.add("README.md", b"# tiny\n");
    r.add("sd1-tiny-pruned.safetensors", &[7u8; 4096]);
    r.add("unet/diffusion_pytorch_model.non_ema.bin", &[1u8; 2048]);
    r
}

fn server_with_tiny() -> HubServer {
    let s = HubServer::start();
    s.add_repo(TINY, tiny_repo());
    s
}

fn quiet(_: &HubEvent) {}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn downloads_only_what_the_model_needs_in_the_shared_layout_then_hits_the_cache() {
    let server = server_with_tiny();
    let cache = fresh_cache("layout");
    let got = fetch(&config(&server, &cache), &HubRequest::new(TINY), &mut quiet).unwrap();
    assert_eq!(got.kind, RepoKind::Diffusers);
    assert_eq!(got.path, got.snapshot);
    assert!(!got.cache_only);
    let repo_dir = cache.join("models--tiny--sd1-tiny");
    assert_eq!(got.snapshot, repo_dir.join("snapshots").join(&got.commit));
    // Exactly the fixture's files: no README, single-file checkpoint or other weights.
    let mut expected = files_under(&root().join("fixtures/models/sd1-tiny"));
    expected.sort();
    assert_eq!(files_under(&got.snapshot), expected);
    assert_eq!(got.downloaded, expected.len());
    for f in &expected {
        let link = got.snapshot.join(f);
        let target = std::fs::read_link(&link).unwrap();
        assert!(
            target.is_relative() && target.starts_with(".."),
            "{f} -> {target:?}"
        );
        assert_eq!(std::fs::read(&link).unwrap(), tiny_file(f), "{f}");
    }
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
        got.commit
    );
    assert!(
        files_under(&repo_dir.join("blobs"))
            .iter()
            .all(|b| b.len() == 40 || b.len() == 64),
        "only complete blobs"
    );
    let log = server.take_log();
    assert!(
        !log.iter().any(|r| r.path.contains("README")
            || r.path.contains("pruned")
            || r.path.contains("non_ema")),
        "{log:?}"
    );

    // Again: one listing request, nothing downloaded.
    let again = fetch(&config(&server, &cache), &HubRequest::new(TINY), &mut quiet).unwrap();
    assert_eq!(again.downloaded, 0);
    assert_eq!(again.snapshot, got.snapshot);
    let log = server.take_log();
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(
        log[0]
            .path
            .starts_with("/api/models/tiny/sd1-tiny/revision/main")
    );

    // By commit, and the weight variant named explicitly: the same snapshot.
    let mut by_commit = HubRequest::new(TINY);
    by_commit.revision = Some(got.commit.clone());
    by_commit.variant = Some("fp16".into());
    let c = fetch(&config(&server, &cache), &by_commit, &mut quiet).unwrap();
    assert_eq!(c.snapshot, got.snapshot);
    assert_eq!(c.weight_variant.as_deref(), Some("fp16"));
    assert_eq!(c.downloaded, 0);
}

#[test]
fn a_dropped_connection_resumes_where_it_stopped() {
    let server = server_with_tiny();
    let cache = fresh_cache("resume");
    let size = tiny_file(UNET).len();
    server.fault(
        TINY,
        UNET,
        Some(Fault::DropAfter {
            after: size / 3,
            times: 2,
        }),
    );
    let mut retries = vec![];
    let mut progress = vec![];
    let got = fetch(
        &config(&server, &cache),
        &HubRequest::new(TINY),
        &mut |e| match e {
            HubEvent::Retry { path, attempt, .. } => retries.push((path.to_string(), *attempt)),
            HubEvent::FileProgress { path, done, .. } if *path == UNET => progress.push(*done),
            _ => {}
        },
    )
    .unwrap();
    assert_eq!(retries, [(UNET.to_string(), 1), (UNET.to_string(), 2)]);
    assert!(
        progress.windows(2).all(|w| w[0] < w[1]),
        "no byte is fetched twice: {progress:?}"
    );
    assert_eq!(progress.last().copied(), Some(size as u64));
    let log = server.take_log();
    let ranges: Vec<_> = log
        .iter()
        .filter(|r| r.path.starts_with("/cdn/"))
        .filter_map(|r| r.range.clone())
        .collect();
    assert!(
        ranges.contains(&format!("bytes={}-", size / 3)),
        "resumed with a range: {ranges:?}"
    );
    assert_eq!(
        std::fs::read(got.snapshot.join(UNET)).unwrap(),
        tiny_file(UNET)
    );
}

#[test]
fn a_run_that_gives_up_keeps_its_part_for_the_next_run_and_nothing_else() {
    let server = server_with_tiny();
    let cache = fresh_cache("next-run");
    let size = tiny_file(UNET).len();
    server.fault(
        TINY,
        UNET,
        Some(Fault::DropAfter {
            after: size / 2,
            times: usize::MAX,
        }),
    );
    let mut c = config(&server, &cache);
    c.retries = 1;
    let e = fetch(&c, &HubRequest::new(TINY), &mut quiet).unwrap_err();
    assert!(
        matches!(e, HubError::Interrupted { attempts: 2, .. }),
        "{e}"
    );
    let msg = e.to_string();
    assert!(msg.contains(UNET) && msg.contains("resumes"), "{msg}");
    let repo_dir = cache.join("models--tiny--sd1-tiny");
    assert!(
        !repo_dir.join("refs/main").exists(),
        "no ref before every file is in"
    );
    let snapshot_files: Vec<String> = files_under(&repo_dir.join("snapshots"));
    assert!(
        !snapshot_files.iter().any(|f| f.ends_with(UNET)),
        "{snapshot_files:?}"
    );
    let parts: Vec<String> = files_under(&repo_dir.join("blobs"))
        .into_iter()
        .filter(|b| b.ends_with(".incomplete"))
        .collect();
    assert_eq!(parts.len(), 1, "{parts:?}");
    let kept = std::fs::metadata(repo_dir.join("blobs").join(&parts[0]))
        .unwrap()
        .len();
    assert_eq!(kept as usize, size / 2);

    server.fault(TINY, UNET, None);
    server.take_log();
    let got = fetch(&config(&server, &cache), &HubRequest::new(TINY), &mut quiet).unwrap();
    let log = server.take_log();
    assert!(
        log.iter()
            .any(|r| r.range.as_deref() == Some(&format!("bytes={kept}-"))),
        "{log:?}"
    );
    assert_eq!(
        std::fs::read(got.snapshot.join(UNET)).unwrap(),
        tiny_file(UNET)
    );
    assert!(
        !files_under(&repo_dir.join("blobs"))
            .iter()
            .any(|b| b.contains('.'))
    );
}

#[test]
fn a_corrupt_or_overlong_file_is_refused_and_nothing_of_it_stays() {
    for (name, path, fault, what) in [
        ("corrupt-lfs", UNET, Fault::Corrupt, "sha256"),
        (
            "corrupt-git",
            "unet/config.json",
            Fault::Corrupt,
            "git blob id",
        ),
        ("longer", "vae/config.json", Fault::Longer, "size"),
    ] {
        let server = server_with_tiny();
        let cache = fresh_cache(name);
        server.fault(TINY, path, Some(fault));
        let e = fetch(&config(&server, &cache), &HubRequest::new(TINY), &mut quiet).unwrap_err();
        assert!(
            matches!(&e, HubError::Mismatch { path: p, what: w, .. } if p == path && *w == what),
            "{name}: {e}"
        );
        assert!(e.to_string().contains("discarded"), "{e}");
        let repo_dir = cache.join("models--tiny--sd1-tiny");
        let blobs = files_under(&repo_dir.join("blobs"));
        assert!(!blobs.iter().any(|b| b.contains('.')), "{name}: {blobs:?}");
        assert!(
            !files_under(&repo_dir.join("snapshots"))
                .iter()
                .any(|f| f.ends_with(path)),
            "{name}"
        );
        assert!(!repo_dir.join("refs/main").exists());
    }
}

#[test]
fn offline_mode_uses_the_cache_alone_and_names_what_it_lacks() {
    let server = server_with_tiny();
    let cache = fresh_cache("offline");
    let mut offline = config(&server, &cache);
    offline.offline = true;
    let e = fetch(&offline, &HubRequest::new(TINY), &mut quiet).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, HubError::NotCached { .. }), "{msg}");
    assert!(
        msg.contains(TINY) && msg.contains("HF_HUB_OFFLINE") && msg.contains("main"),
        "{msg}"
    );

    let online = fetch(&config(&server, &cache), &HubRequest::new(TINY), &mut quiet).unwrap();
    server.take_log();
    let mut said = vec![];
    let got = fetch(&offline, &HubRequest::new(TINY), &mut |e| {
        if let HubEvent::CacheOnly { reason } = e {
            said.push(reason.to_string());
        }
    })
    .unwrap();
    assert!(got.cache_only && got.snapshot == online.snapshot);
    assert_eq!(said.len(), 1);
    assert!(server.take_log().is_empty(), "offline sends nothing");

    // A snapshot missing a weight file: the component is named.
    std::fs::remove_file(got.snapshot.join(UNET)).unwrap();
    let msg = fetch(&offline, &HubRequest::new(TINY), &mut quiet)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("unet has config.json but no weights"), "{msg}");
    let mut other = HubRequest::new(TINY);
    other.revision = Some("v2".into());
    let msg = fetch(&offline, &other, &mut quiet).unwrap_err().to_string();
    assert!(msg.contains("no snapshot for `v2`"), "{msg}");
}

#[test]
fn an_unreachable_hub_falls_back_to_the_cache_or_says_so() {
    let server = server_with_tiny();
    let cache = fresh_cache("unreachable");
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut c = HubConfig::new(&dead, &cache);
    c.retry_delay = Duration::from_millis(10);
    let e = fetch(&c, &HubRequest::new(TINY), &mut quiet).unwrap_err();
    assert!(matches!(e, HubError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains(&dead) && e.to_string().contains("HF_HUB_OFFLINE"));

    fetch(&config(&server, &cache), &HubRequest::new(TINY), &mut quiet).unwrap();
    let mut cache_only = false;
    let got = fetch(&c, &HubRequest::new(TINY), &mut |e| {
        cache_only |= matches!(e, HubEvent::CacheOnly { .. });
    })
    .unwrap();
    assert!(cache_only && got.cache_only);
}

#[test]
fn each_refusal_of_the_hub_has_its_own_message() {
    let server = server_with_tiny();
    let mut gated = tiny_repo();
    gated.gated = true;
    server.add_repo("tiny/gated", gated);
    let mut private = tiny_repo();
    private.token = Some("hf_secret".into());
    server.add_repo("tiny/private", private);
    let cache = fresh_cache("refusals");
    let c = config(&server, &cache);
    let msg = |c: &HubConfig, id: &str, rev: Option<&str>| {
        let mut r = HubRequest::new(id);
        r.revision = rev.map(str::to_string);
        fetch(c, &r, &mut quiet).unwrap_err().to_string()
    };
    let m = msg(&c, "tiny/none", None);
    assert!(
        m.contains("tiny/none") && m.contains("private or gated") && m.contains("HF_TOKEN"),
        "{m}"
    );
    let m = msg(&c, TINY, Some("nope"));
    assert!(m.contains("no revision `nope`"), "{m}");
    let m = msg(&c, "tiny/gated", None);
    assert!(
        m.contains("gated") && m.contains(&format!("{}/tiny/gated", server.url)),
        "{m}"
    );
    let m = msg(&c, "tiny/private", None);
    assert!(m.contains("HF_TOKEN"), "{m}");
    let mut wrong = c.clone();
    wrong.token = Some("hf_wrong".into());
    let m = msg(&wrong, "tiny/private", None);
    assert!(m.contains("refused"), "{m}");
    let mut right = c.clone();
    right.token = Some("hf_secret".into());
    fetch(&right, &HubRequest::new("tiny/private"), &mut quiet).unwrap();
    let m = msg(&c, "../etc", None);
    assert!(m.contains("not a Hugging Face repository id"), "{m}");
    let m = msg(&c, TINY, Some("../../x"));
    assert!(m.contains("not a revision"), "{m}");
    let mut v = HubRequest::new(TINY);
    v.variant = Some("bf16".into());
    let m = fetch(&c, &v, &mut quiet).unwrap_err().to_string();
    assert!(m.contains("no variant `bf16`") && m.contains("fp16"), "{m}");
}

#[test]
fn a_hostile_listing_cannot_write_outside_the_cache() {
    let server = HubServer::start();
    let mut evil = Repo::default();
    evil.add("model_index.json", b"{}");
    evil.listing_override = Some(format!(
        r#"{{"sha":"{}","siblings":[{{"rfilename":"../../../../escape.txt","size":3,"blobId":"{}"}}]}}"#,
        "a".repeat(40),
        "b".repeat(40)
    ));
    server.add_repo("evil/repo", evil);
    let cache = fresh_cache("hostile");
    let e = fetch(
        &config(&server, &cache),
        &HubRequest::new("evil/repo"),
        &mut quiet,
    )
    .unwrap_err();
    assert!(matches!(e, HubError::BadListing { .. }), "{e}");
    assert!(e.to_string().contains("unsafe file name"), "{e}");
    assert!(files_under(&cache).is_empty());
}

#[test]
fn a_component_repository_and_a_checkpoint_file() {
    let server = HubServer::start();
    server.add_repo(
        "tiny/controlnet",
        Repo::from_folder(&root().join("fixtures/models/controlnet-tiny")),
    );
    server.add_repo(
        "tiny/single",
        Repo::from_folder(&root().join("fixtures/models/single-file")),
    );
    let cache = fresh_cache("kinds");
    let c = config(&server, &cache);
    let got = fetch(&c, &HubRequest::new("tiny/controlnet"), &mut quiet).unwrap();
    assert_eq!(got.kind, RepoKind::Component);
    assert!(got.path.join("config.json").is_file());
    let mut r = HubRequest::new("tiny/single");
    r.variant = Some("sd1-micro.safetensors".into());
    let got = fetch(&c, &r, &mut quiet).unwrap();
    assert_eq!(got.kind, RepoKind::Checkpoint);
    assert_eq!(got.path, got.snapshot.join("sd1-micro.safetensors"));
    assert_eq!(files_under(&got.snapshot), ["sd1-micro.safetensors"]);
    let m = fetch(&c, &HubRequest::new("tiny/single"), &mut quiet)
        .unwrap_err()
        .to_string();
    assert!(
        m.contains("sd1-micro.safetensors") && m.contains("--variant"),
        "{m}"
    );
}
