//! `sd generate` as a user runs it: the tiny model converted on first use, Apple's file names,
//! the PNG `parameters` chunk, several images, saved latents, intermediate images — and every
//! bad input named in the issue answered with a clear error and nothing half-written.

use sd_runtime::Tensor;
use sd_runtime::pipeline::image::{RgbImage, read_png_text_file, write_png_atomic};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const PROMPT: &str = "a photo of an astronaut riding a horse on mars";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn scratch(name: &str) -> PathBuf {
    let d = root().join("target/test-generate").join(name);
    if d.exists() {
        std::fs::remove_dir_all(&d).unwrap();
    }
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The tiny model converted once for all tests here (with a VAE encoder: image-to-image).
fn resources() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let options = sd_cli::CacheOptions {
            cache_root: Some(scratch("cache")),
            ..Default::default()
        };
        sd_cli::prepare(&root().join("fixtures/models/sd1-tiny"), &options)
            .unwrap()
            .folder
    })
}

fn sd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sd"))
        .arg("generate")
        .args(args)
        .output()
        .unwrap()
}

fn generate(out: &Path, extra: &[&str]) -> Output {
    generate_prompt(PROMPT, out, extra)
}

fn generate_prompt(prompt: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        prompt,
        "--resource-path",
        resources().to_str().unwrap(),
        "--output-path",
        out.to_str().unwrap(),
    ];
    if !extra.contains(&"--step-count") {
        args.extend(["--step-count", "2"]);
    }
    args.extend_from_slice(extra);
    sd(&args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The names in `dir`, hidden ones included (a leftover temporary file would show).
fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn writes_apple_named_pngs_with_a1111_parameters() {
    let out = scratch("basic");
    let latents = out.join("latents.safetensors");
    let o = generate(
        &out,
        &[
            "--seed",
            "93",
            "--negative-prompt",
            "blurry",
            "--scheduler",
            "dpmpp-karras",
            "--guidance-scale",
            "5",
            "--image-count",
            "2",
            "--save-latents",
            latents.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let stem = PROMPT.replace(' ', "_");
    assert_eq!(
        files(&out),
        vec![
            format!("{stem}.0.93.final.png"),
            format!("{stem}.1.93.final.png"),
            "latents.safetensors".to_string(),
        ]
    );
    let text = read_png_text_file(out.join(format!("{stem}.0.93.final.png"))).unwrap();
    assert_eq!(
        text,
        vec![(
            "parameters".to_string(),
            format!(
                "{PROMPT}\nNegative prompt: blurry\nSteps: 2, Sampler: DPM++ 2M Karras, CFG scale: 5.0, Seed: 93, Size: 256x256, Model: sd1-tiny"
            )
        )]
    );
    let t = Tensor::read_safetensors(&latents).unwrap();
    assert_eq!(t[0].0, "latents");
    assert_eq!(t[0].1.shape, vec![2, 4, 32, 32]);
    // Two images from one request differ (one noise draw for both).
    let a = std::fs::read(out.join(format!("{stem}.0.93.final.png"))).unwrap();
    let b = std::fs::read(out.join(format!("{stem}.1.93.final.png"))).unwrap();
    assert_ne!(a, b);
}

#[test]
fn same_seed_same_image_and_intermediate_images() {
    let out = scratch("every");
    let o = generate(
        &out,
        &["--seed", "7", "--step-count", "3", "--save-every", "1"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let stem = PROMPT.replace(' ', "_");
    // PNDM runs 4 UNet calls for 3 steps; intermediates at every call but the last.
    assert_eq!(
        files(&out),
        vec![
            format!("{stem}.7.1.png"),
            format!("{stem}.7.2.png"),
            format!("{stem}.7.3.png"),
            format!("{stem}.7.final.png"),
        ]
    );
    let again = scratch("every-again");
    let o = generate(&again, &["--seed", "7", "--step-count", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let name = format!("{stem}.7.final.png");
    assert_eq!(
        std::fs::read(out.join(&name)).unwrap(),
        std::fs::read(again.join(&name)).unwrap()
    );
}

#[test]
fn image_to_image_names_the_strength_and_checks_the_size() {
    let out = scratch("img2img");
    let start = out.join("start.png");
    write_png_atomic(&start, &RgbImage::filled(256, 256, [200, 30, 90]), &[]).unwrap();
    let o = generate(
        &out,
        &[
            "--image",
            start.to_str().unwrap(),
            "--strength",
            "0.7",
            "--step-count",
            "4",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        files(&out).contains(&format!("{}.str70.93.final.png", PROMPT.replace(' ', "_"))),
        "{:?}",
        files(&out)
    );
    let small = out.join("small.png");
    write_png_atomic(&small, &RgbImage::filled(100, 60, [1, 2, 3]), &[]).unwrap();
    let o = generate(&out, &["--image", small.to_str().unwrap()]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("256x256") && e.contains("100x60"), "{e}");
    // A mask of the wrong size, and a file that is not an image.
    let o = generate(
        &out,
        &[
            "--image",
            start.to_str().unwrap(),
            "--mask",
            small.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("100x60"), "{}", stderr(&o));
    let junk = out.join("junk.png");
    std::fs::write(&junk, b"not a picture").unwrap();
    let o = generate(&out, &["--image", junk.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("junk.png"), "{}", stderr(&o));
    // The folder holds the inputs and the one good image, nothing half-written.
    assert_eq!(files(&out).len(), 4, "{:?}", files(&out));
}

#[test]
fn empty_and_overlong_prompts_are_warned_about() {
    let out = scratch("prompts");
    let o = generate_prompt("", &out, &["--step-count", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("prompt is empty"), "{}", stderr(&o));
    assert_eq!(files(&out), vec!["image.93.final.png".to_string()]);
    let long = format!("{} zebra unicorn", "red ".repeat(80));
    let o = generate_prompt(&long, &out, &["--step-count", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("dropped") && e.contains("zebra unicorn"), "{e}");
}

#[test]
fn bad_requests_fail_before_any_work() {
    let out = scratch("bad");
    let o = generate(&out, &["--scheduler", "heun"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unknown scheduler `heun`"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("dpmpp-karras"), "{}", stderr(&o));
    let o = generate(&out, &["--rng", "mt"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("numpy, torch or nvidia"),
        "{}",
        stderr(&o)
    );
    let o = generate(&out, &["--step-count", "0"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("steps"), "{}", stderr(&o));
    // An output "folder" that is a file, and one that cannot be created.
    let file = out.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let o = generate(&file, &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("a-file"), "{}", stderr(&o));
    let o = generate(&file.join("below"), &[]);
    assert!(!o.status.success());
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
    assert_eq!(files(&out), vec!["a-file".to_string()]);
}

#[test]
fn a_folder_without_the_models_says_what_is_missing() {
    let out = scratch("missing");
    let empty = scratch("missing-models");
    std::fs::copy(
        resources().join("tokenizer/vocab.json"),
        empty.join("vocab.json"),
    )
    .unwrap();
    std::fs::copy(
        resources().join("tokenizer/merges.txt"),
        empty.join("merges.txt"),
    )
    .unwrap();
    let o = sd(&[
        PROMPT,
        "--resource-path",
        empty.to_str().unwrap(),
        "--output-path",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("text encoder") && e.contains("TextEncoder"),
        "{e}"
    );
    // No tokenizer at all.
    let bare = scratch("missing-tokenizer");
    let o = sd(&[PROMPT, "--resource-path", bare.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("vocab.json"), "{}", stderr(&o));
    // A ControlNet the folder does not have.
    let cond = out.join("cond.png");
    write_png_atomic(&cond, &RgbImage::filled(256, 256, [0, 0, 0]), &[]).unwrap();
    let o = generate(
        &out,
        &[
            "--controlnet",
            "canny",
            "--controlnet-inputs",
            cond.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("canny"), "{}", stderr(&o));
    assert_eq!(files(&out), vec!["cond.png".to_string()]);
}

#[test]
fn model_flag_converts_once_then_reuses() {
    let cache = scratch("model-cache");
    let out = scratch("model-out");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_sd"))
            .args(["generate", PROMPT, "--model"])
            .arg(root().join("fixtures/models/sd1-tiny"))
            .arg("--output-path")
            .arg(&out)
            .args(["--step-count", "1"])
            .env("SD_CACHE_DIR", &cache)
            .output()
            .unwrap()
    };
    let first = run();
    assert!(first.status.success(), "{}", stderr(&first));
    // One entry (a hidden lock file beside it is the cache's own).
    let entries: Vec<String> = files(&cache.join("models"))
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let second = run();
    assert!(second.status.success(), "{}", stderr(&second));
    let again: Vec<String> = files(&cache.join("models"))
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(again, entries);
    assert!(
        stderr(&first).contains("converted into"),
        "{}",
        stderr(&first)
    );
    assert!(
        stderr(&second).contains("reusing the conversion"),
        "{}",
        stderr(&second)
    );
}
