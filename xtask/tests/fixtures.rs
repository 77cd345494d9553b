//! Opens every reference fixture under `fixtures/` (written by `cargo xtask reference`, see
//! fixtures/README.md) and checks names, dtypes and shapes against the tables below, plus a few
//! facts per model config and the tokenizer data. `fixtures/noise` and `fixtures/schedulers`
//! belong to the scheduler/noise generators and are checked by their own tests.

use safetensors::SafeTensors;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type TensorSpec = (&'static str, &'static str, &'static [usize]);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn read(rel: &str) -> Vec<u8> {
    let path = root().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn json(rel: &str) -> Value {
    serde_json::from_slice(&read(rel)).unwrap_or_else(|e| panic!("{rel}: not JSON: {e}"))
}

/// name -> (dtype, shape) of a safetensors file, after checking every F32 value is finite.
fn tensors(rel: &str) -> BTreeMap<String, (String, Vec<usize>)> {
    let bytes = read(rel);
    let st = SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let dtype = format!("{:?}", view.dtype());
        if dtype == "F32" {
            let data = view.data();
            assert_eq!(data.len() % 4, 0);
            let bad = data
                .chunks_exact(4)
                .filter(|c| !f32::from_le_bytes([c[0], c[1], c[2], c[3]]).is_finite())
                .count();
            assert_eq!(bad, 0, "{rel}: {name} has {bad} non-finite values");
        }
        out.insert(name, (dtype, view.shape().to_vec()));
    }
    out
}

fn check_exact(rel: &str, expected: &[(String, &str, Vec<usize>)]) {
    let got = tensors(rel);
    let want: BTreeSet<&str> = expected.iter().map(|(n, _, _)| n.as_str()).collect();
    let have: BTreeSet<&str> = got.keys().map(String::as_str).collect();
    assert_eq!(have, want, "{rel}: tensor names");
    for (name, dtype, shape) in expected {
        let (d, s) = &got[name];
        assert_eq!(d, dtype, "{rel}: {name} dtype");
        assert_eq!(s, shape, "{rel}: {name} shape");
    }
}

fn spec(table: &[TensorSpec]) -> Vec<(String, &'static str, Vec<usize>)> {
    table
        .iter()
        .map(|(n, d, s)| (n.to_string(), *d, s.to_vec()))
        .collect()
}

const UNET_SD1: &[TensorSpec] = &[
    ("in.encoder_hidden_states", "F32", &[2, 32, 1, 77]),
    ("in.sample", "F32", &[2, 4, 32, 32]),
    ("in.timestep", "F32", &[2]),
    (
        "mid.down_blocks.0.attentions.0.transformer_blocks.0",
        "F32",
        &[2, 32, 1, 1024],
    ),
    ("mid.down_blocks.0.resnets.0", "F32", &[2, 32, 32, 32]),
    ("mid.time_embedding", "F32", &[2, 128]),
    ("mid.time_proj", "F32", &[2, 32]),
    ("out.noise_pred", "F32", &[2, 4, 32, 32]),
];

const UNET_SD2: &[TensorSpec] = &[
    ("in.encoder_hidden_states", "F32", &[2, 16, 1, 77]),
    ("in.sample", "F32", &[2, 4, 40, 40]),
    ("in.timestep", "F32", &[2]),
    (
        "mid.down_blocks.0.attentions.0.transformer_blocks.0",
        "F32",
        &[2, 32, 1, 1600],
    ),
    ("mid.down_blocks.0.resnets.0", "F32", &[2, 32, 40, 40]),
    ("mid.time_embedding", "F32", &[2, 128]),
    ("mid.time_proj", "F32", &[2, 32]),
    ("out.noise_pred", "F32", &[2, 4, 40, 40]),
];

const UNET_INPAINT: &[TensorSpec] = &[
    ("in.encoder_hidden_states", "F32", &[2, 32, 1, 77]),
    ("in.sample", "F32", &[2, 9, 32, 32]),
    ("in.timestep", "F32", &[2]),
    ("out.noise_pred", "F32", &[2, 4, 32, 32]),
];

const VAE_DECODER_16: &[TensorSpec] = &[
    ("in.z", "F32", &[1, 4, 16, 16]),
    ("out.image", "F32", &[1, 3, 128, 128]),
];

const VAE_ENCODER_16: &[TensorSpec] = &[
    ("in.x", "F32", &[1, 3, 128, 128]),
    ("out.latent", "F32", &[1, 8, 16, 16]),
];

const PROJECTION: &[TensorSpec] = &[
    ("in.nlcontextualembeddings_output", "F32", &[1, 256, 512]),
    ("out.encoder_hidden_states", "F32", &[1, 32, 1, 256]),
];

const SAFETY: &[TensorSpec] = &[
    ("in.adjustment", "F32", &[1]),
    ("in.clip_input", "F32", &[1, 3, 64, 64]),
    ("in.images", "F32", &[1, 64, 64, 3]),
    ("out.concept_scores", "F32", &[1, 17]),
    ("out.filtered_images", "F32", &[1, 64, 64, 3]),
    ("out.has_nsfw_concepts", "F32", &[1, 1, 1, 1]),
];

fn text_encoder(hidden: usize) -> Vec<(String, &'static str, Vec<usize>)> {
    vec![
        ("in.input_ids".into(), "F32", vec![1, 77]),
        ("out.hidden_embeds".into(), "F32", vec![1, 77, hidden]),
        ("out.last_hidden_state".into(), "F32", vec![1, 77, hidden]),
        ("out.pooled_outputs".into(), "F32", vec![1, hidden]),
    ]
}

/// The residuals of the two-level sd1-tiny UNet at a 16x16 latent: conv_in, 2 resnets,
/// downsampler, 2 resnets, mid block.
fn residuals(prefix: &str) -> Vec<(String, &'static str, Vec<usize>)> {
    let shapes: [[usize; 4]; 7] = [
        [2, 32, 16, 16],
        [2, 32, 16, 16],
        [2, 32, 16, 16],
        [2, 32, 8, 8],
        [2, 64, 8, 8],
        [2, 64, 8, 8],
        [2, 64, 8, 8],
    ];
    shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                format!("{prefix}.additional_residual_{i}"),
                "F32",
                s.to_vec(),
            )
        })
        .collect()
}

/// Expected tensors of one component file: (name, dtype, shape).
type Tensors = Vec<(String, &'static str, Vec<usize>)>;

fn component_outputs() -> Vec<(&'static str, Tensors)> {
    let latent16 = |extra: Vec<(String, &'static str, Vec<usize>)>| {
        let mut v = vec![
            (
                "in.encoder_hidden_states".to_string(),
                "F32",
                vec![2, 32, 1, 77],
            ),
            ("in.sample".to_string(), "F32", vec![2, 4, 16, 16]),
            ("in.timestep".to_string(), "F32", vec![2]),
        ];
        v.extend(extra);
        v
    };
    let mut controlnet = latent16(residuals("out"));
    controlnet.push(("in.controlnet_cond".into(), "F32", vec![2, 3, 128, 128]));
    let mut control_unet = latent16(residuals("in"));
    control_unet.push(("out.noise_pred".into(), "F32", vec![2, 4, 16, 16]));
    vec![
        (
            "outputs/sd1-tiny/text_encoder.io.safetensors",
            text_encoder(32),
        ),
        ("outputs/sd1-tiny/unet.io.safetensors", spec(UNET_SD1)),
        ("outputs/sd1-tiny/control_unet.io.safetensors", control_unet),
        (
            "outputs/sd1-tiny/vae_decoder.io.safetensors",
            spec(VAE_DECODER_16),
        ),
        (
            "outputs/sd1-tiny/vae_encoder.io.safetensors",
            spec(VAE_ENCODER_16),
        ),
        (
            "outputs/sd2-tiny/text_encoder.io.safetensors",
            text_encoder(16),
        ),
        ("outputs/sd2-tiny/unet.io.safetensors", spec(UNET_SD2)),
        (
            "outputs/sd2-tiny/vae_decoder.io.safetensors",
            spec(VAE_DECODER_16),
        ),
        (
            "outputs/sd2-tiny/vae_encoder.io.safetensors",
            spec(VAE_ENCODER_16),
        ),
        (
            "outputs/inpaint-tiny/unet.io.safetensors",
            spec(UNET_INPAINT),
        ),
        (
            "outputs/controlnet-tiny/controlnet.io.safetensors",
            controlnet,
        ),
        (
            "outputs/safety-checker-tiny/safety_checker.io.safetensors",
            spec(SAFETY),
        ),
        (
            "outputs/safety-checker-tiny/safety_checker_clean.io.safetensors",
            spec(SAFETY),
        ),
        (
            "outputs/safety-checker-tiny/safety_checker_adjusted.io.safetensors",
            spec(SAFETY),
        ),
        (
            "outputs/projection-tiny/projection.io.safetensors",
            spec(PROJECTION),
        ),
    ]
}

/// (run, UNet calls = recorded latents = timesteps) of fixtures/pipelines.
const PIPELINE_RUNS: &[(&str, usize)] = &[
    ("pndm", 21), // PLMS repeats its first timestep
    ("ddim", 20),
    ("dpmsolver_multistep", 20),
    ("euler", 20),
    ("euler_ancestral", 20),
    ("lms", 20),
    ("lcm", 20),
    ("img2img", 16), // strength 0.75: the last 15 of 20 steps, plus PLMS's repeat
    ("inpaint", 21),
    ("controlnet", 21),
];

fn pipeline_spec(run: &str, steps: usize) -> Vec<(String, &'static str, Vec<usize>)> {
    let mut v: Vec<(String, &'static str, Vec<usize>)> = vec![
        ("input_ids".into(), "I64", vec![2, 77]),
        ("prompt_embeds".into(), "F32", vec![2, 77, 32]),
        ("timesteps".into(), "F32", vec![steps]),
        ("latents".into(), "F32", vec![steps, 1, 4, 32, 32]),
        ("image".into(), "U8", vec![1, 256, 256, 3]),
        ("noise".into(), "F32", vec![1, 4, 32, 32]),
    ];
    match run {
        "img2img" => v.extend([
            ("init_image".into(), "U8", vec![1, 256, 256, 3]),
            ("image_moments".into(), "F32", vec![1, 8, 32, 32]),
            ("image_latents".into(), "F32", vec![1, 4, 32, 32]),
            ("add_noise_timestep".into(), "F32", vec![1]),
        ]),
        "inpaint" => v.extend([
            ("init_image".into(), "U8", vec![1, 256, 256, 3]),
            ("mask_image".into(), "U8", vec![1, 256, 256, 1]),
            ("unet_input_0".into(), "F32", vec![2, 9, 32, 32]),
            ("masked_image_moments".into(), "F32", vec![1, 8, 32, 32]),
        ]),
        "controlnet" => v.push(("control_image".into(), "U8", vec![1, 256, 256, 3])),
        _ => {}
    }
    v
}

/// (file, dtype of every tensor, tensor count, [(tensor, shape)] spot checks).
/// (model folder, weight file, tensor count, a few (tensor, shape) samples).
type ModelWeights = (
    &'static str,
    &'static str,
    usize,
    &'static [(&'static str, &'static [usize])],
);

const MODEL_WEIGHTS: &[ModelWeights] = &[
    (
        "models/sd1-tiny/text_encoder/model.fp16.safetensors",
        "F16",
        84,
        &[("text_model.embeddings.token_embedding.weight", &[49408, 32])],
    ),
    (
        "models/sd1-tiny/unet/diffusion_pytorch_model.fp16.safetensors",
        "F16",
        304,
        &[("conv_in.weight", &[32, 4, 3, 3])],
    ),
    (
        "models/sd1-tiny/vae/diffusion_pytorch_model.fp16.safetensors",
        "F16",
        180,
        &[
            ("post_quant_conv.weight", &[4, 4, 1, 1]),
            ("quant_conv.weight", &[8, 8, 1, 1]),
        ],
    ),
    (
        "models/sd2-tiny/text_encoder/model.fp16.safetensors",
        "F16",
        68,
        &[("text_model.embeddings.token_embedding.weight", &[49408, 16])],
    ),
    (
        "models/sd2-tiny/unet/diffusion_pytorch_model.fp16.safetensors",
        "F16",
        286,
        &[
            // use_linear_projection: proj_in is a Linear, not a 1x1 conv
            ("down_blocks.0.attentions.0.proj_in.weight", &[32, 32]),
            (
                "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight",
                &[64, 16],
            ),
        ],
    ),
    (
        "models/sd2-tiny/vae/diffusion_pytorch_model.fp16.safetensors",
        "F16",
        180,
        &[("encoder.conv_in.weight", &[16, 3, 3, 3])],
    ),
    (
        "models/inpaint-tiny/unet/diffusion_pytorch_model.fp16.safetensors",
        "F16",
        206,
        &[("conv_in.weight", &[32, 9, 3, 3])],
    ),
    (
        "models/controlnet-tiny/diffusion_pytorch_model.fp16.safetensors",
        "F16",
        178,
        &[
            ("controlnet_cond_embedding.conv_in.weight", &[8, 3, 3, 3]),
            ("controlnet_mid_block.weight", &[64, 64, 1, 1]),
        ],
    ),
    (
        "models/safety-checker-tiny/safety_checker/model.safetensors",
        "F32",
        44,
        &[
            ("concept_embeds", &[17, 32]),
            ("concept_embeds_weights", &[17]),
            ("special_care_embeds", &[3, 32]),
            ("special_care_embeds_weights", &[3]),
        ],
    ),
    (
        "models/projection-tiny/projection.safetensors",
        "F32",
        2,
        &[("weight", &[32, 512]), ("bias", &[32])],
    ),
    (
        "models/sd1-micro/text_encoder/model.fp16.safetensors",
        "F16",
        36,
        &[("text_model.embeddings.token_embedding.weight", &[512, 16])],
    ),
    (
        "models/sd1-micro/unet/diffusion_pytorch_model.fp16.safetensors",
        "F16",
        324,
        &[("up_blocks.1.upsamplers.0.conv.weight", &[8, 8, 3, 3])],
    ),
    (
        "models/sd1-micro/vae/diffusion_pytorch_model.fp16.safetensors",
        "F16",
        124,
        &[("decoder.mid_block.attentions.0.to_q.weight", &[8, 8])],
    ),
    (
        "models/sd2-micro/text_encoder/model.fp16.safetensors",
        "F16",
        36,
        &[("text_model.embeddings.token_embedding.weight", &[512, 8])],
    ),
    (
        "models/sd2-micro/unet/diffusion_pytorch_model.fp16.safetensors",
        "F16",
        208,
        &[("down_blocks.0.attentions.0.proj_in.weight", &[4, 4])],
    ),
    (
        "models/sd2-micro/vae/diffusion_pytorch_model.fp16.safetensors",
        "F16",
        124,
        &[("encoder.conv_in.weight", &[4, 3, 3, 3])],
    ),
];

/// Every other file (configs, tokenizer, docs) that must exist.
const OTHER_FILES: &[&str] = &[
    "README.md",
    "models/sd1-tiny/model_index.json",
    "models/sd1-tiny/scheduler/scheduler_config.json",
    "models/sd1-tiny/text_encoder/config.json",
    "models/sd1-tiny/tokenizer/merges.txt",
    "models/sd1-tiny/tokenizer/special_tokens_map.json",
    "models/sd1-tiny/tokenizer/tokenizer_config.json",
    "models/sd1-tiny/tokenizer/vocab.json",
    "models/sd1-tiny/unet/config.json",
    "models/sd1-tiny/vae/config.json",
    "models/sd2-tiny/model_index.json",
    "models/sd2-tiny/scheduler/scheduler_config.json",
    "models/sd2-tiny/text_encoder/config.json",
    "models/sd2-tiny/tokenizer/merges.txt",
    "models/sd2-tiny/tokenizer/special_tokens_map.json",
    "models/sd2-tiny/tokenizer/tokenizer_config.json",
    "models/sd2-tiny/tokenizer/vocab.json",
    "models/sd2-tiny/unet/config.json",
    "models/sd2-tiny/vae/config.json",
    "models/inpaint-tiny/unet/config.json",
    "models/controlnet-tiny/config.json",
    "models/safety-checker-tiny/safety_checker/config.json",
    "models/safety-checker-tiny/feature_extractor/preprocessor_config.json",
    "models/projection-tiny/config.json",
    // gen_single_file.py: diffusers twins' configs, the single-file checkpoints and a pickle
    // (their tensors are checked against the twins by crates/sd-convert/tests/single_file.rs).
    "models/sd1-micro/model_index.json",
    "models/sd1-micro/text_encoder/config.json",
    "models/sd1-micro/unet/config.json",
    "models/sd1-micro/vae/config.json",
    "models/sd2-micro/model_index.json",
    "models/sd2-micro/text_encoder/config.json",
    "models/sd2-micro/unet/config.json",
    "models/sd2-micro/vae/config.json",
    "models/single-file/sd1-micro.safetensors",
    "models/single-file/sd1-micro.ckpt",
    "models/single-file/sd2-micro.safetensors",
    "models/sd1-micro-bin/text_encoder/config.json",
    "models/sd1-micro-bin/text_encoder/pytorch_model.bin",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "tokenizer/prompts.json",
    "pipelines/pipelines.json",
    "preprocess/clip.safetensors",
];

/// Folders owned by other generators (checked by their own tests).
const NOT_OURS: &[&str] = &["noise", "schedulers"];

fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, u64)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let rel = path
            .strip_prefix(base)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if meta.is_dir() {
            walk(&path, base, out);
        } else {
            out.push((
                rel,
                if meta.file_type().is_symlink() {
                    0
                } else {
                    meta.len()
                },
            ));
        }
    }
}

#[test]
fn component_outputs_have_the_expected_tensors() {
    for (rel, expected) in component_outputs() {
        check_exact(rel, &expected);
    }
}

#[test]
fn pipelines_have_the_expected_tensors() {
    let index = json("pipelines/pipelines.json");
    let runs = index["runs"].as_object().expect("runs");
    let names: BTreeSet<&str> = runs.keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = PIPELINE_RUNS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, want);
    for (run, steps) in PIPELINE_RUNS {
        let rel = format!("pipelines/{run}.safetensors");
        let expected = pipeline_spec(run, *steps);
        check_exact(&rel, &expected);
        let entry = &runs[*run];
        assert_eq!(entry["seed"], 93, "{run}");
        assert_eq!(entry["steps"], 20, "{run}");
        assert_eq!(entry["guidance_scale"], 7.5, "{run}");
        assert_eq!(entry["unet_calls"], *steps as u64, "{run}");
        for (name, _, shape) in &expected {
            let listed: Vec<usize> = entry["tensors"][name]
                .as_array()
                .unwrap_or_else(|| panic!("{run}: {name} not in pipelines.json"))
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(&listed, shape, "{run}: {name} in pipelines.json");
        }
    }
}

#[test]
fn model_weights_and_configs() {
    for (rel, dtype, count, spots) in MODEL_WEIGHTS {
        let got = tensors(rel);
        assert_eq!(got.len(), *count, "{rel}: tensor count");
        for (name, (d, _)) in &got {
            assert_eq!(d, dtype, "{rel}: {name}");
        }
        for (name, shape) in *spots {
            let (_, s) = got
                .get(*name)
                .unwrap_or_else(|| panic!("{rel}: no tensor {name}"));
            assert_eq!(s.as_slice(), *shape, "{rel}: {name}");
        }
    }
    let sd1_te = json("models/sd1-tiny/text_encoder/config.json");
    assert_eq!(sd1_te["hidden_act"], "quick_gelu");
    let sd2_te = json("models/sd2-tiny/text_encoder/config.json");
    assert_eq!(sd2_te["hidden_act"], "gelu");
    assert_eq!(sd2_te["hidden_size"], 16);
    let sd2_unet = json("models/sd2-tiny/unet/config.json");
    assert_eq!(sd2_unet["use_linear_projection"], true);
    assert_eq!(sd2_unet["attention_head_dim"], serde_json::json!([4, 2]));
    assert_eq!(sd2_unet["sample_size"], 40);
    assert_eq!(sd2_unet["cross_attention_dim"], 16);
    let sd2_sched = json("models/sd2-tiny/scheduler/scheduler_config.json");
    assert_eq!(sd2_sched["prediction_type"], "v_prediction");
    assert_eq!(sd2_sched["_class_name"], "DDIMScheduler");
    let sd2_tok = json("models/sd2-tiny/tokenizer/tokenizer_config.json");
    assert_eq!(sd2_tok["pad_token"], "!");
    let sd1_tok = json("models/sd1-tiny/tokenizer/tokenizer_config.json");
    assert_eq!(sd1_tok["pad_token"], "<|endoftext|>");
    let sd1_sched = json("models/sd1-tiny/scheduler/scheduler_config.json");
    assert_eq!(sd1_sched["_class_name"], "PNDMScheduler");
    assert_eq!(
        json("models/inpaint-tiny/unet/config.json")["in_channels"],
        9
    );
    let cn = json("models/controlnet-tiny/config.json");
    assert_eq!(cn["_class_name"], "ControlNetModel");
    assert_eq!(cn["cross_attention_dim"], 32);
    let sc = json("models/safety-checker-tiny/safety_checker/config.json");
    assert_eq!(sc["vision_config"]["image_size"], 64);
    assert_eq!(json("models/projection-tiny/config.json")["embed_dim"], 512);
    for index in [
        "models/sd1-tiny/model_index.json",
        "models/sd2-tiny/model_index.json",
    ] {
        assert_eq!(
            json(index)["_class_name"],
            "StableDiffusionPipeline",
            "{index}"
        );
    }
}

#[test]
fn tokenizer_data() {
    let vocab = json("tokenizer/vocab.json");
    let vocab = vocab.as_object().expect("vocab.json is an object");
    assert_eq!(vocab.len(), 49408);
    let ids: BTreeSet<u64> = vocab.values().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 49408);
    assert_eq!(*ids.last().unwrap(), 49407);
    assert_eq!(vocab["<|startoftext|>"], 49406);
    assert_eq!(vocab["<|endoftext|>"], 49407);
    assert_eq!(vocab["!"], 0);
    let merges = String::from_utf8(read("tokenizer/merges.txt")).unwrap();
    let mut lines = merges.lines();
    assert_eq!(lines.next(), Some("#version: 0.2"));
    assert_eq!(lines.count(), 48894);
    // The model folders' tokenizer files are the same bytes.
    for model in ["sd1-tiny", "sd2-tiny"] {
        for f in ["vocab.json", "merges.txt"] {
            assert_eq!(
                read(&format!("models/{model}/tokenizer/{f}")),
                read(&format!("tokenizer/{f}"))
            );
        }
    }

    let prompts = json("tokenizer/prompts.json");
    let rows = prompts["prompts"].as_array().expect("prompts");
    assert!(rows.len() >= 300, "{} prompts", rows.len());
    let ids_of = |row: &Value, key: &str| -> Vec<u64> {
        row[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect()
    };
    let (mut long, mut empty, mut cjk, mut emoji, mut accents) = (0, 0, 0, 0, 0);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["index"], i as u64);
        let text = row["text"].as_str().unwrap();
        let full = ids_of(row, "ids");
        let sd1 = ids_of(row, "sd1");
        let sd2 = ids_of(row, "sd2");
        assert_eq!((sd1.len(), sd2.len()), (77, 77), "{text:?}");
        assert_eq!((full[0], *full.last().unwrap()), (49406, 49407), "{text:?}");
        assert!(full.iter().all(|&t| t < 49408));
        let n = full.len().min(77);
        assert_eq!(sd1[..n - 1], full[..n - 1], "{text:?}");
        assert_eq!(sd1[n - 1], 49407, "{text:?}");
        assert!(
            sd1[n..].iter().all(|&t| t == 49407),
            "{text:?}: SD1 pads with 49407"
        );
        // SD2's pad token "!" is a special token, so a "!" in the text also becomes id 0
        // (transformers' behaviour, diffusers issue #4153): compare with SD1 only without "!".
        assert_eq!(sd2[0], 49406, "{text:?}");
        let end = sd2
            .iter()
            .rposition(|&t| t == 49407)
            .expect("SD2 ids have an EOS");
        assert!(
            sd2[end + 1..].iter().all(|&t| t == 0),
            "{text:?}: SD2 pads with 0"
        );
        if !text.contains('!') {
            assert_eq!(sd1[..n], sd2[..n], "{text:?}");
            assert_eq!(end, n - 1, "{text:?}");
        }
        long += (full.len() > 77) as usize;
        empty += text.is_empty() as usize;
        cjk += text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)) as usize;
        emoji += text
            .chars()
            .any(|c| ('\u{1f300}'..='\u{1faff}').contains(&c)) as usize;
        accents += text.chars().any(|c| ('\u{00c0}'..='\u{017f}').contains(&c)) as usize;
    }
    assert!(long >= 3 && empty == 1 && cjk >= 2 && emoji >= 3 && accents >= 3);
    let astronaut = rows
        .iter()
        .find(|r| r["text"] == "A photo of an astronaut riding a horse on Mars")
        .expect("astronaut prompt");
    assert_eq!(
        ids_of(astronaut, "ids"),
        [
            49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 525, 7496, 49407
        ]
    );
}

#[test]
fn every_fixture_is_known_and_the_total_is_small() {
    let base = root();
    let mut files = Vec::new();
    walk(&base, &base, &mut files);
    let mut known: BTreeSet<String> = OTHER_FILES.iter().map(|s| s.to_string()).collect();
    known.extend(component_outputs().into_iter().map(|(f, _)| f.to_string()));
    known.extend(MODEL_WEIGHTS.iter().map(|(f, ..)| f.to_string()));
    known.extend(
        PIPELINE_RUNS
            .iter()
            .map(|(r, _)| format!("pipelines/{r}.safetensors")),
    );
    let mut total = 0u64;
    let mut seen = BTreeSet::new();
    for (rel, size) in &files {
        total += size;
        if NOT_OURS.iter().any(|d| rel.starts_with(&format!("{d}/"))) {
            continue;
        }
        assert!(
            known.contains(rel),
            "unexpected fixture {rel} (add it to the tables and README)"
        );
        seen.insert(rel.clone());
    }
    let missing: Vec<_> = known.difference(&seen).collect();
    assert!(missing.is_empty(), "missing fixtures: {missing:?}");
    // Links (the model folders' vocab.json/merges.txt) must resolve.
    for rel in &seen {
        assert!(base.join(rel).exists(), "{rel} does not resolve");
    }
    assert!(
        total < 30_000_000,
        "fixtures take {total} bytes (budget 30 MB)"
    );
}
