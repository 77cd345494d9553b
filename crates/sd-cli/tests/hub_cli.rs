//! The `sd` binary with Hub ids, against the Hub lookalike on loopback (`HF_ENDPOINT`):
//! `sd generate --model <diffusers id>` downloads, converts and makes the same pixels as the
//! local folder; `sd generate --model <Core ML id> --variant original/packages` loads the
//! packages with the tokenizer found elsewhere in the repository and makes the same pixels as
//! `--resource-path`; `sd convert --model-version <id>` writes Apple-named packages;
//! `sd download` prints the snapshot, works offline from the cache, and its failures say why.

mod hub_support;

use hub_support::{HubServer, Repo, root, tiny_file};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn scratch(name: &str) -> PathBuf {
    let d = root().join("target/test-hub-cli").join(name);
    if d.exists() {
        std::fs::remove_dir_all(&d).unwrap();
    }
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The tiny model converted once, as the reference.
fn converted() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let options = sd_cli::CacheOptions {
            cache_root: Some(root().join("target/test-hub-cli-reference")),
            ..Default::default()
        };
        sd_cli::prepare(&root().join("fixtures/models/sd1-tiny"), &options)
            .unwrap()
            .folder
    })
}

/// A Core ML repository laid out as Apple's are: `original/packages/*.mlpackage`, and the
/// tokenizer in `original/compiled/`.
fn core_ml_repo_folder() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch("coreml-repo");
        let packages = dir.join("original/packages");
        std::fs::create_dir_all(&packages).unwrap();
        for e in std::fs::read_dir(converted()).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "mlpackage") {
                copy_dir(&p, &packages.join(p.file_name().unwrap()));
            }
        }
        let compiled = dir.join("original/compiled");
        std::fs::create_dir_all(&compiled).unwrap();
        for f in ["vocab.json", "merges.txt"] {
            std::fs::copy(converted().join("tokenizer").join(f), compiled.join(f)).unwrap();
        }
        dir
    })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

fn server() -> HubServer {
    let s = HubServer::start();
    s.add_repo(
        "tiny/sd1-tiny",
        Repo::from_folder(&root().join("fixtures/models/sd1-tiny")),
    );
    s.add_repo(
        "tiny/coreml-sd1-tiny",
        Repo::from_folder(core_ml_repo_folder()),
    );
    let mut gated = Repo::from_folder(&root().join("fixtures/models/sd1-tiny"));
    gated.gated = true;
    s.add_repo("tiny/gated", gated);
    let mut private = Repo::from_folder(&root().join("fixtures/models/sd1-tiny"));
    private.token = Some("hf_secret".into());
    s.add_repo("tiny/private", private);
    s
}

/// `sd ARGS` with the Hub at `server`, its cache and the model cache under `home`.
fn sd(server: &HubServer, home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sd"));
    c.args(args)
        .env("HF_ENDPOINT", &server.url)
        .env("HF_HOME", home.join("hf"))
        .env("SD_CACHE_DIR", home.join("sd"));
    for k in [
        "HF_TOKEN",
        "HF_HUB_OFFLINE",
        "HF_HUB_CACHE",
        "HUGGING_FACE_HUB_TOKEN",
        "TRANSFORMERS_OFFLINE",
    ] {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "sd failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn failed(o: &Output) -> String {
    assert!(!o.status.success(), "sd succeeded");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The pixels of the one PNG in `dir`.
fn pixels(dir: &Path) -> Vec<u8> {
    let pngs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .collect();
    assert_eq!(pngs.len(), 1, "{pngs:?}");
    sd_runtime::pipeline::image::load_image(&pngs[0])
        .unwrap()
        .rgb
        .data
}

const GENERATE: &[&str] = &[
    "generate",
    "a lighthouse at dusk",
    "--step-count",
    "2",
    "--seed",
    "7",
];

fn generate(server: &HubServer, home: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = GENERATE.to_vec();
    args.extend(["--output-path", out.to_str().unwrap()]);
    args.extend_from_slice(extra);
    sd(server, home, &args, &[])
}

#[test]
fn generate_from_a_core_ml_repository_matches_its_local_folder() {
    let server = server();
    let home = scratch("home-coreml");
    let local = core_ml_repo_folder();
    let reference = scratch("out-coreml-local");
    ok(&generate(
        &server,
        &home,
        &reference,
        &[
            "--resource-path",
            local.join("original/packages").to_str().unwrap(),
            "--tokenizer",
            local.join("original/compiled").to_str().unwrap(),
        ],
    ));
    let out = scratch("out-coreml-hub");
    let o = generate(
        &server,
        &home,
        &out,
        &[
            "--model",
            "tiny/coreml-sd1-tiny",
            "--variant",
            "original/packages",
        ],
    );
    ok(&o);
    assert_eq!(pixels(&out), pixels(&reference));
    let snapshot = std::fs::read_dir(home.join("hf/hub/models--tiny--coreml-sd1-tiny/snapshots"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(snapshot.join("original/compiled/vocab.json").is_file());
}

#[test]
fn generate_and_convert_from_a_diffusers_repository() {
    let server = server();
    let home = scratch("home-diffusers");
    let reference = scratch("out-diffusers-local");
    ok(&generate(
        &server,
        &home,
        &reference,
        &["--resource-path", converted().to_str().unwrap()],
    ));
    let out = scratch("out-diffusers-hub");
    let o = generate(&server, &home, &out, &["--model", "tiny/sd1-tiny"]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("tiny/sd1-tiny @ ") && err.contains("files"),
        "{err}"
    );
    assert_eq!(
        pixels(&out),
        pixels(&reference),
        "the same model, the same image"
    );
    // The PNG names the Hub id as its model.
    let png = std::fs::read_dir(&out)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = String::from_utf8_lossy(&std::fs::read(png).unwrap()).into_owned();
    assert!(text.contains("Model: tiny/sd1-tiny"), "parameters chunk");

    let converted_out = scratch("convert-out");
    ok(&sd(
        &server,
        &home,
        &[
            "convert",
            "--model-version",
            "tiny/sd1-tiny",
            "--convert-text-encoder",
            "-o",
            converted_out.to_str().unwrap(),
        ],
        &[],
    ));
    assert!(
        converted_out
            .join("Stable_Diffusion_version_tiny_sd1-tiny_text_encoder.mlpackage/Manifest.json")
            .is_file()
    );
    let e = failed(&sd(
        &server,
        &home,
        &[
            "convert",
            "--model-version",
            "tiny/coreml-sd1-tiny",
            "--convert-unet",
            "-o",
            converted_out.to_str().unwrap(),
        ],
        &[],
    ));
    assert!(e.contains("nothing to convert"), "{e}");
}

#[test]
fn download_prints_the_snapshot_works_offline_and_says_why_it_fails() {
    let server = server();
    let home = scratch("home-download");
    let path = ok(&sd(&server, &home, &["download", "tiny/sd1-tiny"], &[]));
    let path = PathBuf::from(path.trim());
    assert!(
        path.join("model_index.json").is_file(),
        "{}",
        path.display()
    );
    assert!(path.starts_with(home.join("hf/hub/models--tiny--sd1-tiny/snapshots")));

    let offline = [("HF_HUB_OFFLINE", "1")];
    let again = ok(&sd(
        &server,
        &home,
        &["download", "tiny/sd1-tiny"],
        &offline,
    ));
    assert_eq!(PathBuf::from(again.trim()), path);
    let e = failed(&sd(
        &server,
        &home,
        &["download", "tiny/coreml-sd1-tiny"],
        &offline,
    ));
    assert!(
        e.contains("HF_HUB_OFFLINE") && e.contains("tiny/coreml-sd1-tiny"),
        "{e}"
    );

    let e = failed(&sd(&server, &home, &["download", "tiny/gated"], &[]));
    assert!(e.contains("gated"), "{e}");
    let e = failed(&sd(&server, &home, &["download", "tiny/private"], &[]));
    assert!(e.contains("HF_TOKEN"), "{e}");
    ok(&sd(
        &server,
        &home,
        &["download", "tiny/private"],
        &[("HF_TOKEN", "hf_secret")],
    ));
    // The token file `huggingface-cli login` writes.
    std::fs::write(home.join("hf/token"), "hf_secret\n").unwrap();
    ok(&sd(&server, &home, &["download", "tiny/private"], &[]));
    let e = failed(&sd(
        &server,
        &home,
        &["download", "tiny/sd1-tiny", "--revision", "v9"],
        &[],
    ));
    assert!(e.contains("no revision `v9`"), "{e}");
    // Unreachable: what is cached is used, what is not is an error naming the endpoint.
    let dead = [("HF_ENDPOINT", "http://127.0.0.1:9")];
    let o = sd(&server, &home, &["download", "tiny/sd1-tiny"], &dead);
    assert_eq!(PathBuf::from(ok(&o).trim()), path);
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot be reached"));
    let e = failed(&sd(
        &server,
        &home,
        &["download", "tiny/coreml-sd1-tiny"],
        &dead,
    ));
    assert!(e.contains("could not reach http://127.0.0.1:9"), "{e}");
}

#[test]
fn a_download_killed_midway_leaves_no_partial_file_in_the_snapshot_and_the_rerun_finishes() {
    let server = server();
    let home = scratch("home-killed");
    let unet = "unet/diffusion_pytorch_model.fp16.safetensors";
    let size = tiny_file(unet).len();
    server.fault(
        "tiny/sd1-tiny",
        unet,
        Some(hub_support::Fault::StallAfter { after: size / 2 }),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_sd"))
        .args(["download", "tiny/sd1-tiny"])
        .env("HF_ENDPOINT", &server.url)
        .env("HF_HOME", home.join("hf"))
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_HUB_CACHE")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let repo = home.join("hf/hub/models--tiny--sd1-tiny");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let part = loop {
        let found = std::fs::read_dir(repo.join("blobs")).ok().and_then(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with(".incomplete"))
        });
        if let Some(p) = found
            && std::fs::metadata(&p).unwrap().len() as usize == size / 2
        {
            break p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the download never stalled"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !repo.join("refs/main").exists(),
        "no ref for an unfinished snapshot"
    );
    let snapshots = repo.join("snapshots");
    let commit = std::fs::read_dir(&snapshots)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(!commit.join(unet).exists(), "no link to a partial file");
    let blob = part.with_extension("");
    assert!(!blob.exists(), "no blob for a partial file");

    server.fault("tiny/sd1-tiny", unet, None);
    server.take_log();
    let path = ok(&sd(&server, &home, &["download", "tiny/sd1-tiny"], &[]));
    assert!(PathBuf::from(path.trim()).join(unet).is_file());
    assert!(
        server
            .take_log()
            .iter()
            .any(|r| r.range.as_deref() == Some(&format!("bytes={}-", size / 2))),
        "the rerun resumes the part"
    );
    assert!(!part.exists());
}
