//! Single-file LDM checkpoints (`fixtures/models/single-file/`, written by
//! `xtask/reference/gen_single_file.py`) convert to the same packages as their diffusers twins
//! (`fixtures/models/sd1-micro`, `sd2-micro`): identical `weight.bin` and `model.mlmodel`
//! (the protobuf, decoded).
//! Bad files fail with errors naming the file and the tensor.

use sd_convert::checkpoint::{Base, Prediction, SingleFile};
use sd_convert::{Component, ConvertError, ConvertOptions, Pipeline, Precision};
use sd_mil::package::{WriteOptions, write_package};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The protobuf of a `model.mlmodel`: compared decoded, since map fields are written in hash
/// order.
fn decode(bytes: &[u8]) -> sd_mil::proto::pb::Model {
    use prost::Message;
    sd_mil::proto::pb::Model::decode(bytes).unwrap()
}

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models")
}

fn single(name: &str) -> PathBuf {
    models().join("single-file").join(name)
}

fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/test-scratch/sd-convert-single-file")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Builds `component` from `p` and writes it to `dir`, returning (model.mlmodel, weight.bin).
fn package(
    p: &Pipeline,
    component: &Component,
    o: &ConvertOptions,
    dir: &Path,
) -> (Vec<u8>, Vec<u8>) {
    let mut model = p
        .build(component, o)
        .unwrap_or_else(|e| panic!("{}: {e}", p.dir.display()));
    // The only difference allowed: where the weights came from.
    model
        .description
        .metadata
        .user_defined
        .insert("sd-convert.source".into(), "test".into());
    let dest = dir.join(component.package_name("test"));
    write_package(&model, &dest, WriteOptions { overwrite: true }).unwrap();
    let data = dest.join("Data/com.apple.CoreML");
    (
        std::fs::read(data.join("model.mlmodel")).unwrap(),
        std::fs::read(data.join("weights/weight.bin")).unwrap(),
    )
}

const ALL: [Component; 4] = [
    Component::TextEncoder,
    Component::Unet,
    Component::VaeDecoder,
    Component::VaeEncoder,
];

/// Every component of `file` (with the twin's configs) equals the twin's, in fp16 and fp32.
fn same_packages(test: &str, file: &str, twin: &str) {
    let twin_dir = models().join(twin);
    let from_file = Pipeline::open_single_file(single(file), Some(&twin_dir)).unwrap();
    let from_dir = Pipeline::open(&twin_dir).unwrap();
    let out = scratch(test);
    for precision in [Precision::Float16, Precision::Float32] {
        let o = ConvertOptions {
            precision,
            latent_h: Some(8),
            latent_w: Some(8),
            model_version: "test".into(),
            ..Default::default()
        };
        for c in ALL {
            let a = package(&from_file, &c, &o, &out.join("file"));
            let b = package(&from_dir, &c, &o, &out.join("dir"));
            assert!(!a.1.is_empty(), "{file} {c:?}: no weights");
            assert!(
                decode(&a.0) == decode(&b.0),
                "{file} {c:?} {precision:?}: model.mlmodel differs"
            );
            assert!(a.1 == b.1, "{file} {c:?} {precision:?}: weight.bin differs");
        }
    }
}

#[test]
fn sd1_safetensors_converts_like_its_diffusers_folder() {
    same_packages("sd1_safetensors", "sd1-micro.safetensors", "sd1-micro");
}

#[test]
fn sd1_ckpt_converts_like_its_diffusers_folder() {
    same_packages("sd1_ckpt", "sd1-micro.ckpt", "sd1-micro");
}

#[test]
fn sd2_safetensors_converts_like_its_diffusers_folder() {
    same_packages("sd2_safetensors", "sd2-micro.safetensors", "sd2-micro");
}

/// The renamed tensors are exactly the twin's (plus CLIP's integer `position_ids` buffer), with
/// the same shapes and values.
fn same_tensors(file: &str, twin: &str) {
    let twin_dir = models().join(twin);
    let s = SingleFile::open(single(file), Some(&twin_dir)).unwrap();
    for (component, variant_dir) in [
        ("unet", "unet"),
        ("vae", "vae"),
        ("text_encoder", "text_encoder"),
    ] {
        let ours = s.weights(component).unwrap();
        let theirs =
            sd_convert::weights::WeightStore::open_component(twin_dir.join(variant_dir), None)
                .unwrap();
        let a: BTreeSet<&str> = ours
            .names()
            .filter(|n| !n.ends_with("position_ids"))
            .collect();
        let b: BTreeSet<&str> = theirs.names().collect();
        assert_eq!(a, b, "{file}: {component} tensor names");
        for n in b {
            let shape = theirs.shape(n).unwrap();
            assert_eq!(ours.shape(n).unwrap(), shape, "{file}: {n}");
            assert_eq!(
                ours.read_f32(n, &shape).unwrap(),
                theirs.read_f32(n, &shape).unwrap(),
                "{file}: {n}"
            );
        }
    }
}

#[test]
fn renamed_tensors_equal_the_twins() {
    same_tensors("sd1-micro.safetensors", "sd1-micro");
    same_tensors("sd1-micro.ckpt", "sd1-micro");
    same_tensors("sd2-micro.safetensors", "sd2-micro");
}

/// What the inferred configurations can know from shapes equals the twins' configurations.
#[test]
fn inferred_configs_match_the_twins_structure() {
    for (file, twin) in [
        ("sd1-micro.safetensors", "sd1-micro"),
        ("sd1-micro.ckpt", "sd1-micro"),
        ("sd2-micro.safetensors", "sd2-micro"),
    ] {
        let s = SingleFile::open(single(file), None).unwrap();
        let read = |part: &str| -> serde_json::Value {
            let text = std::fs::read_to_string(models().join(twin).join(part).join("config.json"))
                .unwrap();
            serde_json::from_str(&text).unwrap()
        };
        let unet = s.inferred_config("unet").unwrap();
        let want = read("unet");
        for key in [
            "in_channels",
            "out_channels",
            "block_out_channels",
            "layers_per_block",
            "down_block_types",
            "up_block_types",
            "cross_attention_dim",
            "use_linear_projection",
            "transformer_layers_per_block",
        ] {
            assert_eq!(unet[key], want[key], "{file}: unet {key}");
        }
        let vae = s.inferred_config("vae").unwrap();
        let want = read("vae");
        for key in [
            "in_channels",
            "out_channels",
            "latent_channels",
            "block_out_channels",
            "layers_per_block",
            "down_block_types",
            "up_block_types",
        ] {
            assert_eq!(vae[key], want[key], "{file}: vae {key}");
        }
        let te = s.inferred_config("text_encoder").unwrap();
        let want = read("text_encoder");
        for key in [
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "max_position_embeddings",
            "hidden_act",
        ] {
            assert_eq!(te[key], want[key], "{file}: text_encoder {key}");
        }
    }
}

/// Writes a safetensors file of zero-filled F16 tensors.
fn synthetic(path: &Path, tensors: &[(&str, Vec<usize>)]) {
    let data: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(n, s)| {
            (
                n.to_string(),
                vec![0u8; 2 * s.iter().product::<usize>()],
                s.clone(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = data
        .iter()
        .map(|(n, b, s)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F16, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

#[test]
fn model_kind_is_inferred_as_diffusers_does() {
    let k = SingleFile::open(single("sd1-micro.safetensors"), None)
        .unwrap()
        .kind()
        .clone();
    assert_eq!(
        (k.base, k.inpainting, k.prediction, k.image_size),
        (Base::Sd1, false, Prediction::Epsilon, 512)
    );
    let k = SingleFile::open(single("sd2-micro.safetensors"), None)
        .unwrap()
        .kind()
        .clone();
    assert_eq!(
        (k.base, k.inpainting, k.prediction, k.image_size),
        (Base::Sd2, false, Prediction::VPrediction, 768)
    );

    // Synthetic files with only the tensors the inference looks at.
    let dir = scratch("kind");
    let conv_in = "model.diffusion_model.input_blocks.0.0.weight";
    let to_k = "model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight";
    let cases = [
        (
            "sd1-inpaint",
            9,
            768,
            (Base::Sd1, true, Prediction::Epsilon, 512),
        ),
        (
            "sd2-inpaint",
            9,
            1024,
            (Base::Sd2, true, Prediction::Epsilon, 512),
        ),
        (
            "sd2-768",
            4,
            1024,
            (Base::Sd2, false, Prediction::VPrediction, 768),
        ),
        ("sd1", 4, 768, (Base::Sd1, false, Prediction::Epsilon, 512)),
    ];
    for (name, cin, ctx, want) in cases {
        let path = dir.join(format!("{name}.safetensors"));
        synthetic(
            &path,
            &[(conv_in, vec![8, cin, 3, 3]), (to_k, vec![8, ctx])],
        );
        let k = SingleFile::open(&path, None).unwrap().kind().clone();
        assert_eq!(
            (k.base, k.inpainting, k.prediction, k.image_size),
            want,
            "{name}"
        );
    }
}

/// The micro models use 4 norm groups and narrow heads, which the standard SD configuration
/// does not fit: without a config folder the conversion fails, naming the file and the key.
#[test]
fn nonstandard_model_without_config_names_the_inferred_key() {
    let p = Pipeline::open(single("sd1-micro.safetensors")).unwrap();
    let e = p
        .build(&Component::VaeDecoder, &ConvertOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("sd1-micro.safetensors (inferred vae/config.json)")
            && e.contains("block_out_channels"),
        "{e}"
    );
    let e = p
        .build(&Component::TextEncoder, &ConvertOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("num_attention_heads") && e.contains("sd1-micro.safetensors"),
        "{e}"
    );
}

fn copy_truncated(src: &Path, dst: &Path, keep: f64) {
    let bytes = std::fs::read(src).unwrap();
    std::fs::write(dst, &bytes[..(bytes.len() as f64 * keep) as usize]).unwrap();
}

#[test]
fn truncated_files_are_errors_naming_the_file() {
    let dir = scratch("truncated");
    for (name, keep) in [
        ("sd1-micro.ckpt", 0.5),
        ("sd1-micro.ckpt", 0.999),
        ("sd1-micro.safetensors", 0.7),
        ("sd2-micro.safetensors", 0.999),
    ] {
        let path = dir.join(format!("cut-{keep}-{name}"));
        copy_truncated(&single(name), &path, keep);
        let e = Pipeline::open(&path).unwrap_err();
        let s = e.to_string();
        assert!(s.contains(&path.display().to_string()), "{s}");
        if name.ends_with(".safetensors") {
            assert!(matches!(e, ConvertError::Truncated { .. }), "{s}");
            assert!(s.contains("tensor `"), "{s}");
        } else {
            assert!(matches!(e, ConvertError::Pickle { .. }), "{s}");
        }
    }
    let path = dir.join("cut.bin");
    copy_truncated(
        &models().join("sd1-micro-bin/text_encoder/pytorch_model.bin"),
        &path,
        0.6,
    );
    let e = sd_convert::weights::WeightFile::open(&path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cut.bin"), "{e}");
}

/// Rewrites `src` (safetensors) with `edit` applied to its tensors.
fn rewrite(
    src: &Path,
    dst: &Path,
    edit: impl FnOnce(&mut BTreeMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)>),
) {
    let bytes = std::fs::read(src).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut t: BTreeMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect();
    edit(&mut t);
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = t
        .iter()
        .map(|(n, (d, s, b))| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, dst).unwrap();
}

#[test]
fn missing_tensor_is_named() {
    let dir = scratch("missing");
    let path = dir.join("no-conv-out.safetensors");
    rewrite(&single("sd1-micro.safetensors"), &path, |t| {
        t.remove("model.diffusion_model.out.2.weight").unwrap();
    });
    let p = Pipeline::open_single_file(&path, Some(&models().join("sd1-micro"))).unwrap();
    let e = p
        .build(&Component::Unet, &ConvertOptions::default())
        .unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, ConvertError::MissingTensor { .. }), "{s}");
    assert!(
        s.contains("no-conv-out.safetensors") && s.contains("conv_out.weight"),
        "{s}"
    );
    // Without a config the UNet's shape cannot even be inferred: the error names the LDM key.
    let e = Pipeline::open(&path)
        .unwrap()
        .unet_config()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model.diffusion_model.out.2.weight") && e.contains("no-conv-out"),
        "{e}"
    );
}

#[test]
fn wrong_shape_is_named_with_the_stored_name() {
    let dir = scratch("shape");
    for (file, twin, key, component) in [
        (
            "sd1-micro.safetensors",
            "sd1-micro",
            "model.diffusion_model.input_blocks.1.0.in_layers.2.weight",
            Component::Unet,
        ),
        (
            "sd1-micro.safetensors",
            "sd1-micro",
            "first_stage_model.decoder.mid.attn_1.q.weight",
            Component::VaeDecoder,
        ),
        (
            "sd2-micro.safetensors",
            "sd2-micro",
            "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight",
            Component::TextEncoder,
        ),
    ] {
        let path = dir.join(format!("bad-{file}"));
        rewrite(&single(file), &path, |t| {
            let (d, s, b) = t.get_mut(key).unwrap();
            // Two axes: the first as stored, one column fewer than the rest holds.
            let n: usize = s.iter().product();
            *s = vec![s[0], n / s[0] - 1];
            b.truncate(s[0] * s[1] * d.bitsize() / 8);
        });
        let p = Pipeline::open_single_file(&path, Some(&models().join(twin))).unwrap();
        let e = p.build(&component, &ConvertOptions::default()).unwrap_err();
        let s = e.to_string();
        assert!(matches!(e, ConvertError::TensorShape { .. }), "{s}");
        assert!(s.contains(&format!("bad-{file}")) && s.contains(key), "{s}");
    }
}

#[test]
fn files_without_sd_networks_are_rejected() {
    let e = Pipeline::open(models().join("projection-tiny/projection.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("projection.safetensors") && e.contains("not a Stable Diffusion"),
        "{e}"
    );
    let path = scratch("sdxl").join("sdxl.safetensors");
    synthetic(
        &path,
        &[
            (
                "model.diffusion_model.input_blocks.0.0.weight",
                vec![8, 4, 3, 3],
            ),
            ("model.diffusion_model.label_emb.0.0.weight", vec![8, 16]),
            (
                "conditioner.embedders.1.model.positional_embedding",
                vec![77, 8],
            ),
        ],
    );
    let e = Pipeline::open(&path).unwrap_err().to_string();
    assert!(e.contains("sdxl.safetensors") && e.contains("SDXL"), "{e}");
    let p = Pipeline::open_single_file(single("sd2-micro.safetensors"), None).unwrap();
    assert!(p.has("unet") && p.has("vae") && p.has("text_encoder"));
    assert!(!p.has("safety_checker"));
}
