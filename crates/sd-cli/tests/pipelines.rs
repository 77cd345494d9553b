//! Inpainting and ControlNet pipelines on packages sd-convert writes from the fixture models,
//! against diffusers' float32 runs in `fixtures/pipelines/` (latents after every step ≥ 40 dB,
//! image ≥ 35 dB). `cargo test -p sd-cli --test pipelines -- --nocapture` prints the table.

use sd_convert::{Component, ConvertOptions, Pipeline as Diffusers};
use sd_mil::package::{WriteOptions, write_package};
use sd_runtime::pipeline::image::{GrayImage, RgbImage};
use sd_runtime::pipeline::{
    Control, ControlInput, GenerationRequest, Pipeline, PipelineOptions, RngKind, SchedulerKind,
};
use sd_runtime::{Precision, Tensor, psnr};

use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(root().join(format!("fixtures/pipelines/{name}.safetensors")))
        .unwrap()
        .into_iter()
        .collect()
}

fn scratch(name: &str) -> PathBuf {
    let d = root().join(format!("target/test-pipelines/{name}"));
    if d.exists() {
        std::fs::remove_dir_all(&d).unwrap();
    }
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A diffusers folder made of sd1-tiny's parts with `unet` taken from elsewhere.
fn model_with_unet(dir: &Path, unet: &Path) -> PathBuf {
    let sd1 = root().join("fixtures/models/sd1-tiny");
    let m = dir.join("model");
    std::fs::create_dir_all(&m).unwrap();
    for part in [
        "text_encoder",
        "vae",
        "scheduler",
        "tokenizer",
        "model_index.json",
    ] {
        std::os::unix::fs::symlink(std::fs::canonicalize(sd1.join(part)).unwrap(), m.join(part))
            .unwrap();
    }
    std::os::unix::fs::symlink(std::fs::canonicalize(unet).unwrap(), m.join("unet")).unwrap();
    m
}

/// Converts `components` of `model` into `out` (fp16 weights, as `sd convert` writes them) and
/// copies the tokenizer and scheduler config beside them.
fn convert(model: &Path, components: &[Component], out: &Path) {
    convert_with(model, components, out, ConvertOptions::default());
}

fn convert_with(model: &Path, components: &[Component], out: &Path, opts: ConvertOptions) {
    let pipe = Diffusers::open(model).unwrap();
    let opts = ConvertOptions {
        model_version: "tiny".into(),
        ..opts
    };
    for c in components {
        let m = pipe.build(c, &opts).unwrap();
        write_package(
            &m,
            out.join(c.package_name("tiny")),
            WriteOptions::default(),
        )
        .unwrap();
    }
    std::fs::create_dir_all(out.join("tokenizer")).unwrap();
    for f in ["vocab.json", "merges.txt"] {
        std::fs::copy(
            model.join("tokenizer").join(f),
            out.join("tokenizer").join(f),
        )
        .unwrap();
    }
    std::fs::copy(
        model.join("scheduler/scheduler_config.json"),
        out.join("scheduler_config.json"),
    )
    .unwrap();
}

fn request() -> GenerationRequest {
    let mut r = GenerationRequest::new("a photo of an astronaut riding a horse on mars");
    r.negative_prompt = "blurry, low quality, watermark".into();
    r.seed = 93;
    r.steps = 20;
    r.guidance_scale = 7.5;
    r.scheduler = SchedulerKind::Pndm;
    r.rng = RngKind::Torch;
    r
}

fn rgb(t: &Tensor) -> RgbImage {
    let (h, w) = (t.shape[1], t.shape[2]);
    RgbImage {
        width: w,
        height: h,
        data: t.to_f32_vec().iter().map(|&v| v as u8).collect(),
    }
}

fn check(folder: &Path, request: &GenerationRequest, name: &str) {
    let want = fixture(name);
    let mut pipe = Pipeline::load(
        folder,
        PipelineOptions::<sd_runtime::Cpu>::new(Precision::Fp32, Default::default()),
    )
    .unwrap();
    let mut steps: Vec<Vec<f32>> = Vec::new();
    let out = pipe
        .generate(request, &mut |p| {
            steps.push(p.latents.to_vec());
            Control::Continue
        })
        .unwrap();
    let want_t = want["timesteps"].to_f32_vec();
    assert_eq!(out.timesteps, want_t, "{name}: timesteps");
    let want_latents = want["latents"].to_f32_vec();
    let per = want_latents.len() / want_t.len();
    let mut worst = f64::INFINITY;
    for (i, got) in steps.iter().enumerate() {
        let p = psnr(got, &want_latents[i * per..(i + 1) * per]);
        worst = worst.min(p);
        assert!(p >= 40.0, "{name}: latents after step {i}: {p:.2} dB");
    }
    let image = out.images[0].image.as_ref().unwrap();
    let got: Vec<f32> = image.data.iter().map(|&v| v as f32).collect();
    let p_image = psnr(&got, &want["image"].to_f32_vec());
    println!("{name:<12} worst step latents {worst:6.2} dB  image {p_image:6.2} dB");
    assert!(p_image >= 35.0, "{name}: image {p_image:.2} dB");
}

#[test]
fn inpainting_unet_equals_diffusers() {
    let dir = scratch("inpaint");
    let model = model_with_unet(&dir, &root().join("fixtures/models/inpaint-tiny/unet"));
    let out = dir.join("packages");
    std::fs::create_dir_all(&out).unwrap();
    convert(
        &model,
        &[
            Component::TextEncoder,
            Component::Unet,
            Component::VaeDecoder,
            Component::VaeEncoder,
        ],
        &out,
    );
    let want = fixture("inpaint");
    let mut r = request();
    r.image = Some(rgb(&want["init_image"]));
    let m = &want["mask_image"];
    r.mask = Some(GrayImage {
        width: m.shape[2],
        height: m.shape[1],
        data: m.to_f32_vec().iter().map(|&v| v as u8).collect(),
    });
    r.strength = 1.0;
    check(&out, &r, "inpaint");
}

#[test]
fn controlnet_equals_diffusers() {
    let dir = scratch("controlnet");
    let sd1 = root().join("fixtures/models/sd1-tiny");
    let out = dir.join("packages");
    std::fs::create_dir_all(&out).unwrap();
    convert(
        &sd1,
        &[
            Component::TextEncoder,
            Component::ControlUnet,
            Component::VaeDecoder,
            Component::ControlNet(root().join("fixtures/models/controlnet-tiny")),
        ],
        &out,
    );
    let want = fixture("controlnet");
    let mut r = request();
    r.controlnets.push(ControlInput::from_image(
        "controlnet-tiny",
        &rgb(&want["control_image"]),
        1.0,
    ));
    check(&out, &r, "controlnet");
}

/// sd1-tiny plus safety-checker-tiny whose concept thresholds are all `threshold` (−2: every
/// image is flagged; 2: none is), converted with the tokenizer and CLIP preprocessor config.
fn with_safety_checker(name: &str, threshold: f32) -> PathBuf {
    let dir = scratch(name);
    let model = model_with_unet(&dir, &root().join("fixtures/models/sd1-tiny/unet"));
    let checker = root().join("fixtures/models/safety-checker-tiny");
    std::fs::create_dir_all(model.join("safety_checker")).unwrap();
    std::fs::copy(
        checker.join("safety_checker/config.json"),
        model.join("safety_checker/config.json"),
    )
    .unwrap();
    let tensors: Vec<(String, Tensor)> =
        Tensor::read_safetensors(checker.join("safety_checker/model.safetensors"))
            .unwrap()
            .into_iter()
            .map(|(n, t)| {
                if n == "concept_embeds_weights" {
                    let len = t.len();
                    (n, Tensor::f32(t.shape.clone(), vec![threshold; len]))
                } else {
                    (n, t)
                }
            })
            .collect();
    Tensor::write_safetensors(
        model.join("safety_checker/model.safetensors"),
        tensors.iter().map(|(n, t)| (n.as_str(), t)),
    )
    .unwrap();
    let out = dir.join("packages");
    std::fs::create_dir_all(out.join("feature_extractor")).unwrap();
    convert(
        &model,
        &[
            Component::TextEncoder,
            Component::Unet,
            Component::VaeDecoder,
            Component::SafetyChecker,
        ],
        &out,
    );
    std::fs::copy(
        checker.join("feature_extractor/preprocessor_config.json"),
        out.join("feature_extractor/preprocessor_config.json"),
    )
    .unwrap();
    out
}

#[test]
fn safety_checker_withholds_flagged_images() {
    use sd_runtime::pipeline::SafetyVerdict;
    let flagging = with_safety_checker("safety-flagged", -2.0);
    let clean = with_safety_checker("safety-clean", 2.0);
    let mut r = request();
    r.steps = 2;
    for (folder, verdict) in [
        (&flagging, SafetyVerdict::Flagged),
        (&clean, SafetyVerdict::Clean),
    ] {
        let mut pipe = Pipeline::load(
            folder,
            PipelineOptions::<sd_runtime::Cpu>::new(Precision::Program, Default::default()),
        )
        .unwrap();
        let out = pipe.generate(&r, &mut |_| Control::Continue).unwrap();
        assert_eq!(out.images[0].safety, verdict);
        assert_eq!(
            out.images[0].image.is_none(),
            verdict == SafetyVerdict::Flagged
        );
        let mut unchecked = r.clone();
        unchecked.safety_check = false;
        let out = pipe
            .generate(&unchecked, &mut |_| Control::Continue)
            .unwrap();
        assert_eq!(out.images[0].safety, SafetyVerdict::NotChecked);
        assert!(out.images[0].image.is_some());
    }
    // The command line: a flagged image is not written and the user is told.
    let out_dir = scratch("safety-cli");
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sd"))
            .args(["generate", "a cat", "--step-count", "1", "--resource-path"])
            .arg(&flagging)
            .arg("--output-path")
            .arg(&out_dir)
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&[]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("flagged by the safety checker"),
        "{e}"
    );
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0);
    let o = run(&["--disable-safety"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 1);
}

#[test]
fn batch_one_unet_runs_guidance_as_two_calls() {
    let dir = scratch("batch-one");
    let out = dir.join("packages");
    std::fs::create_dir_all(&out).unwrap();
    convert_with(
        &root().join("fixtures/models/sd1-tiny"),
        &[
            Component::TextEncoder,
            Component::Unet,
            Component::VaeDecoder,
        ],
        &out,
        ConvertOptions {
            unet_batch_one: true,
            ..Default::default()
        },
    );
    check(&out, &request(), "pndm");
}
