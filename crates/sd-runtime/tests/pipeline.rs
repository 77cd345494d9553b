//! Whole pipelines on Apple's tiny packages (computed in fp32) against diffusers' float32 runs
//! in `fixtures/pipelines/`: prompt embeddings, initial noise, the latents after every step,
//! the final image. `cargo test -p sd-runtime --test pipeline -- --nocapture` prints the table.

mod common;
use sd_runtime::pipeline::{Control, GenerationRequest, Pipeline, PipelineOptions, SchedulerKind};
use sd_runtime::{Precision, Tensor, psnr};
use sd_sched::{RngKind, SchedulerConfig};
use std::collections::HashMap;
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A pipeline fixture's tensors as f32 values (images are uint8, ids int64 in the file).
fn fixture(name: &str) -> HashMap<String, Vec<f32>> {
    Tensor::read_safetensors(repo().join(format!("fixtures/pipelines/{name}.safetensors")))
        .unwrap()
        .into_iter()
        .map(|(k, t)| (k, t.to_f32_vec()))
        .collect()
}

fn options() -> PipelineOptions {
    let config = std::fs::read_to_string(
        repo().join("fixtures/models/sd1-tiny/scheduler/scheduler_config.json"),
    )
    .unwrap();
    let mut o = PipelineOptions::new(Precision::Fp32, Default::default());
    o.tokenizer = Some(repo().join("fixtures/models/sd1-tiny/tokenizer"));
    o.scheduler_config = Some(SchedulerConfig::from_json(&config).unwrap());
    o
}

fn apple_pipeline() -> Pipeline {
    Pipeline::load(common::fixtures().join("packages/split_einsum"), options()).unwrap()
}

fn request(scheduler: SchedulerKind) -> GenerationRequest {
    let mut r = GenerationRequest::new("a photo of an astronaut riding a horse on mars");
    r.negative_prompt = "blurry, low quality, watermark".into();
    r.seed = 93;
    r.steps = 20;
    r.guidance_scale = 7.5;
    r.scheduler = scheduler;
    r.rng = RngKind::Torch;
    r
}

/// Runs `request` and checks every step's latents (≥ 40 dB) and the image (≥ 35 dB).
fn check(pipe: &mut Pipeline, request: &GenerationRequest, name: &str) {
    let want = fixture(name);
    let mut steps: Vec<Vec<f32>> = Vec::new();
    let out = pipe
        .generate(request, &mut |p| {
            steps.push(p.latents.to_vec());
            Control::Continue
        })
        .unwrap();
    let want_t = want["timesteps"].clone();
    assert_eq!(out.timesteps, want_t, "{name}: timesteps");
    let want_latents = want["latents"].clone();
    let per = want_latents.len() / want_t.len();
    assert_eq!(steps.len(), want_t.len(), "{name}: step count");
    let mut worst = f64::INFINITY;
    for (i, got) in steps.iter().enumerate() {
        let p = psnr(got, &want_latents[i * per..(i + 1) * per]);
        worst = worst.min(p);
        if std::env::var_os("SD_PIPELINE_DEBUG").is_some() {
            let w = &want_latents[i * per..(i + 1) * per];
            let peak = w.iter().fold(0f32, |m, v| m.max(v.abs()));
            let gpeak = got.iter().fold(0f32, |m, v| m.max(v.abs()));
            println!("{name} step {i}: {p:.2} dB (peak {peak} vs {gpeak})");
            continue;
        }
        assert!(p >= 40.0, "{name}: latents after step {i}: {p:.2} dB");
    }
    let image = out.images[0].image.as_ref().unwrap();
    let got: Vec<f32> = image.data.iter().map(|&v| v as f32).collect();
    let want_image = want["image"].clone();
    let p_image = psnr(&got, &want_image);
    let diff = got.iter().zip(&want_image).filter(|(a, b)| a != b).count();
    println!(
        "{name:<22} steps {:>2}  worst step latents {worst:6.2} dB  final latents {:6.2} dB  image {p_image:6.2} dB ({diff} of {} bytes differ)",
        steps.len(),
        psnr(
            steps.last().unwrap(),
            &want_latents[want_latents.len() - per..]
        ),
        got.len()
    );
    assert!(p_image >= 35.0, "{name}: image {p_image:.2} dB");
}

#[test]
fn text_to_image_every_scheduler_equals_diffusers() {
    let mut pipe = apple_pipeline();
    // DDIM is checked step by step below: its trajectory on this random-weight model is chaotic.
    for (kind, name) in [
        (SchedulerKind::Pndm, "pndm"),
        (SchedulerKind::Dpmpp, "dpmsolver_multistep"),
        (SchedulerKind::Euler, "euler"),
        (SchedulerKind::EulerAncestral, "euler_ancestral"),
        (SchedulerKind::Lms, "lms"),
        (SchedulerKind::Lcm, "lcm"),
    ] {
        if std::env::var("SD_PIPELINE_ONLY").is_ok_and(|o| o != name) {
            continue;
        }
        check(&mut pipe, &request(kind), name);
    }
}

#[test]
fn image_to_image_equals_diffusers() {
    let want = fixture("img2img");
    let init = want["init_image"].clone();
    let mut r = request(SchedulerKind::Pndm);
    r.image = Some(sd_runtime::pipeline::image::RgbImage {
        width: 256,
        height: 256,
        data: init.iter().map(|&v| v as u8).collect(),
    });
    r.strength = 0.75;
    let mut pipe = apple_pipeline();
    check(&mut pipe, &r, "img2img");
}

/// DDIM (with diffusers' default `clip_sample`) on the random-weight tiny model amplifies any
/// difference about threefold per step — two builds of the same network that differ only in
/// fp16 vs fp32 constants start 111 dB and 63 dB from diffusers and both end near 10 dB, and so
/// would any second implementation that is not bit-identical. So each step is checked from
/// diffusers' own latents before it (teacher forcing): the UNet call with guidance, then the
/// scheduler step, must give diffusers' next latents.
#[test]
fn ddim_every_step_from_diffusers_latents() {
    use sd_runtime::Model;
    let want = fixture("ddim");
    let embeds = &want["prompt_embeds"]; // (2, 77, 32) unconditional first
    let (seq, ch) = (77, embeds.len() / (2 * 77));
    let mut ehs = vec![0f32; embeds.len()];
    for b in 0..2 {
        for s in 0..seq {
            for c in 0..ch {
                ehs[(b * ch + c) * seq + s] = embeds[(b * seq + s) * ch + c];
            }
        }
    }
    let unet = Model::load_cpu(common::package("split_einsum", "unet"), Precision::Fp32).unwrap();
    let config = options().scheduler_config.unwrap();
    let mut scheduler = SchedulerKind::Ddim.build(&config).unwrap();
    scheduler.set_timesteps(20).unwrap();
    let timesteps = scheduler.timesteps().to_vec();
    assert_eq!(timesteps, want["timesteps"]);
    let latents = &want["latents"];
    let per = latents.len() / timesteps.len();
    let mut worst = f64::INFINITY;
    for (i, &t) in timesteps.iter().enumerate() {
        let x: Vec<f32> = if i == 0 {
            want["noise"].clone()
        } else {
            latents[(i - 1) * per..i * per].to_vec()
        };
        let sample = [x.clone(), x.clone()].concat();
        let inputs = HashMap::from([
            (
                "sample".to_string(),
                sd_runtime::Tensor::f32([2, 4, 32, 32], sample),
            ),
            (
                "timestep".to_string(),
                sd_runtime::Tensor::f32([2], vec![t, t]),
            ),
            (
                "encoder_hidden_states".to_string(),
                sd_runtime::Tensor::f32([2, ch, 1, seq], ehs.clone()),
            ),
        ]);
        let out = unet.predict(&inputs).unwrap()["noise_pred"].to_f32_vec();
        let (u, c) = out.split_at(per);
        let guided: Vec<f32> = u.iter().zip(c).map(|(u, c)| u + 7.5 * (c - u)).collect();
        let next = scheduler
            .step(&guided, t, &x, &mut sd_sched::NoNoise)
            .unwrap()
            .prev_sample;
        let p = psnr(&next, &latents[i * per..(i + 1) * per]);
        worst = worst.min(p);
        assert!(
            p >= 40.0,
            "ddim step {i} from diffusers' latents: {p:.2} dB"
        );
    }
    println!(
        "ddim (teacher-forced)  worst step {worst:6.2} dB over {} steps",
        timesteps.len()
    );
}

/// A folder of links to Apple's packages: `parts` are (source folder, component) pairs.
fn apple_folder(name: &str, parts: &[(&str, &str)]) -> PathBuf {
    let dir = repo().join("target/test-pipeline").join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    for (folder, component) in parts {
        let src = common::package(folder, component);
        let dst = dir.join(src.file_name().unwrap());
        std::os::unix::fs::symlink(std::fs::canonicalize(&src).unwrap(), dst).unwrap();
    }
    dir
}

#[test]
fn apple_chunked_unet_drives_the_pipeline() {
    let dir = apple_folder(
        "apple-chunked",
        &[
            ("split_einsum", "text_encoder"),
            ("split_einsum_chunk", "unet_chunk1"),
            ("split_einsum_chunk", "unet_chunk2"),
            ("split_einsum", "vae_decoder"),
        ],
    );
    let mut pipe = Pipeline::load(&dir, options()).unwrap();
    assert!(matches!(
        pipe.resources().unet,
        Some(sd_runtime::pipeline::UnetFiles::Chunked(..))
    ));
    check(&mut pipe, &request(SchedulerKind::Pndm), "pndm");
}

#[test]
fn apple_palettized_packages_drive_the_pipeline() {
    // 6-bit weights are other weights: no floor against diffusers, only a sane picture.
    let dir = apple_folder(
        "apple-q6",
        &[
            ("split_einsum_q6", "text_encoder"),
            ("split_einsum_q6", "unet"),
            ("split_einsum", "vae_decoder"),
        ],
    );
    let want = fixture("dpmsolver_multistep");
    let mut pipe = Pipeline::load(&dir, options()).unwrap();
    let out = pipe
        .generate(&request(SchedulerKind::Dpmpp), &mut |_| Control::Continue)
        .unwrap();
    let latents = &out.images[0].latents;
    assert!(latents.iter().all(|v| v.is_finite()));
    let per = latents.len();
    let want_final = &want["latents"][want["latents"].len() - per..];
    let p = psnr(latents, want_final);
    println!(
        "apple q6 (DPM++)       final latents {p:6.2} dB against the uncompressed model's diffusers run"
    );
    assert!(p > 30.0, "6-bit run far from the model: {p:.2} dB");
    assert_eq!(
        out.images[0].image.as_ref().unwrap().data.len(),
        256 * 256 * 3
    );
}

#[test]
fn noise_modes_start_from_their_generators_draws() {
    use sd_sched::NoiseSource;
    // One UNet step is enough: the initial latents are the first draw of each generator, in
    // one tensor for all images (diffusers' batch), times the scheduler's initial sigma.
    let mut pipe = apple_pipeline();
    for rng in [RngKind::Numpy, RngKind::Torch, RngKind::Nvidia] {
        for scheduler in [SchedulerKind::Pndm, SchedulerKind::Euler] {
            let mut r = request(scheduler);
            r.rng = rng;
            r.steps = 1;
            r.image_count = 2;
            let out = pipe.generate(&r, &mut |_| Control::Continue).unwrap();
            let mut s = scheduler
                .build(&options().scheduler_config.unwrap())
                .unwrap();
            s.set_timesteps(1).unwrap();
            let sigma = s.init_noise_sigma();
            let want: Vec<f32> = rng
                .source(93)
                .randn(2 * 4 * 32 * 32)
                .into_iter()
                .map(|v| v * sigma)
                .collect();
            assert!(
                out.initial_latents
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{rng:?} / {scheduler}: initial latents are not the generator's draws"
            );
            assert_eq!(out.images.len(), 2);
        }
    }
}

#[test]
fn reduce_memory_gives_the_same_images_and_cancel_stops() {
    let mut r = request(SchedulerKind::EulerAncestral);
    r.steps = 3;
    let mut pipe = apple_pipeline();
    let kept = pipe.generate(&r, &mut |_| Control::Continue).unwrap();
    let mut o = options();
    o.reduce_memory = true;
    let mut lean = Pipeline::load(common::fixtures().join("packages/split_einsum"), o).unwrap();
    let again = lean.generate(&r, &mut |_| Control::Continue).unwrap();
    assert_eq!(kept.images[0].latents, again.images[0].latents);
    assert_eq!(kept.images[0].image, again.images[0].image);
    // The callback cancels after the second step.
    let mut calls = 0;
    let err = pipe
        .generate(&r, &mut |p| {
            calls += 1;
            if p.step == 2 {
                Control::Cancel
            } else {
                Control::Continue
            }
        })
        .unwrap_err();
    assert_eq!(calls, 2);
    assert!(
        matches!(
            err,
            sd_runtime::pipeline::PipelineError::Cancelled { step: 2, total: 3 }
        ),
        "{err}"
    );
    // Requests the models cannot serve are refused with the field named.
    let mut wrong = request(SchedulerKind::Pndm);
    wrong.width = Some(512);
    let e = pipe
        .generate(&wrong, &mut |_| Control::Continue)
        .unwrap_err();
    assert!(
        e.to_string().contains("width") && e.to_string().contains("256"),
        "{e}"
    );
    let mut no_image = request(SchedulerKind::Pndm);
    no_image.mask = Some(sd_runtime::pipeline::image::GrayImage {
        width: 256,
        height: 256,
        data: vec![255; 256 * 256],
    });
    let e = pipe
        .generate(&no_image, &mut |_| Control::Continue)
        .unwrap_err();
    assert!(e.to_string().contains("starting image"), "{e}");
}

#[test]
fn guidance_at_one_runs_the_prompt_branch_alone() {
    // At scale 1 diffusers skips guidance (one UNet branch, no negative prompt); with a scale a
    // hair above 1 guidance runs and `u + s·(t − u)` is the prompt branch to ~1e-6.
    let mut pipe = apple_pipeline();
    let mut plain = request(SchedulerKind::Euler);
    plain.steps = 3;
    plain.guidance_scale = 1.0;
    let mut guided = plain.clone();
    guided.guidance_scale = 1.000001;
    let a = pipe.generate(&plain, &mut |_| Control::Continue).unwrap();
    let b = pipe.generate(&guided, &mut |_| Control::Continue).unwrap();
    let p = psnr(&a.images[0].latents, &b.images[0].latents);
    assert!(p > 70.0, "unguided vs guidance 1.000001: {p:.2} dB");
    let mut strong = plain.clone();
    strong.guidance_scale = 7.5;
    let c = pipe.generate(&strong, &mut |_| Control::Continue).unwrap();
    assert!(psnr(&a.images[0].latents, &c.images[0].latents) < 40.0);
}
