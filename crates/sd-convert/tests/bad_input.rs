//! Bad input gives an error that names the file and the key or tensor, and writes nothing.

use sd_convert::{Component, ConvertError, ConvertOptions, Pipeline};
use std::path::{Path, PathBuf};

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/apple-tiny/model")
}

/// A scratch copy of apple-tiny's `vae/` and `unet/config.json` in `target/test-scratch/<name>`.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/test-scratch/sd-convert")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    for part in ["vae", "unet"] {
        std::fs::create_dir_all(dir.join(part)).unwrap();
        std::fs::copy(
            tiny().join(part).join("config.json"),
            dir.join(part).join("config.json"),
        )
        .unwrap();
    }
    std::fs::copy(
        tiny().join("vae/diffusion_pytorch_model.fp16.safetensors"),
        dir.join("vae/diffusion_pytorch_model.fp16.safetensors"),
    )
    .unwrap();
    dir
}

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(v.as_object_mut().unwrap());
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

fn decode(dir: &Path) -> Result<sd_mil::Model, ConvertError> {
    Pipeline::open(dir)
        .unwrap()
        .build(&Component::VaeDecoder, &ConvertOptions::default())
}

#[test]
fn missing_config_key_is_named() {
    let dir = scratch("missing_key");
    edit_json(&dir.join("vae/config.json"), |m| {
        m.remove("latent_channels");
    });
    let e = decode(&dir).unwrap_err().to_string();
    assert!(
        e.contains("latent_channels") && e.contains("vae/config.json"),
        "{e}"
    );
}

#[test]
fn unsupported_option_is_named() {
    let dir = scratch("unsupported");
    edit_json(&dir.join("unet/config.json"), |m| {
        m.insert("resnet_time_scale_shift".into(), "scale_shift".into());
    });
    let e = Pipeline::open(&dir)
        .unwrap()
        .unet_config()
        .unwrap()
        .check(&dir.join("unet/config.json"), false)
        .unwrap_err();
    let s = e.to_string();
    assert!(
        matches!(e, ConvertError::Unsupported { .. })
            && s.contains("resnet_time_scale_shift")
            && s.contains("unet/config.json"),
        "{s}"
    );
}

#[test]
fn wrong_tensor_shape_is_named() {
    let dir = scratch("wrong_shape");
    let file = dir.join("vae/diffusion_pytorch_model.fp16.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors = Vec::new();
    for (name, view) in st.tensors() {
        let mut shape = view.shape().to_vec();
        if name == "decoder.conv_in.weight" {
            shape = vec![shape.iter().product()];
        }
        tensors.push((
            name,
            safetensors::tensor::TensorView::new(view.dtype(), shape, view.data()).unwrap(),
        ));
    }
    let out = safetensors::serialize(tensors, None).unwrap();
    std::fs::write(&file, out).unwrap();
    let e = decode(&dir).unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, ConvertError::TensorShape { .. }), "{s}");
    assert!(
        s.contains("decoder.conv_in.weight")
            && s.contains("diffusion_pytorch_model.fp16.safetensors"),
        "{s}"
    );
}

#[test]
fn truncated_file_is_named() {
    let dir = scratch("truncated");
    let file = dir.join("vae/diffusion_pytorch_model.fp16.safetensors");
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let e = decode(&dir).unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, ConvertError::Truncated { .. }), "{s}");
    assert!(
        s.contains("diffusion_pytorch_model.fp16.safetensors") && s.contains("tensor `"),
        "{s}"
    );
}

#[test]
fn missing_weights_are_reported() {
    let dir = scratch("no_weights");
    std::fs::remove_file(dir.join("vae/diffusion_pytorch_model.fp16.safetensors")).unwrap();
    let e = decode(&dir).unwrap_err().to_string();
    assert!(
        e.contains("no safetensors weights") && e.contains("vae"),
        "{e}"
    );
}

/// Every integer of a config (and every integer element of a list) set to zero, one at a time:
/// the check and the build either succeed or return an error — never panic (zero used to be a
/// divisor: `norm_num_groups: 0`).
#[test]
fn zero_anywhere_in_a_config_is_an_error_not_a_panic() {
    let components = [
        ("unet", Component::Unet),
        ("vae", Component::VaeDecoder),
        ("vae", Component::VaeEncoder),
        ("text_encoder", Component::TextEncoder),
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/test-scratch/sd-convert/zero_config");
    let mut tried = 0;
    for (part, component) in components {
        let original: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(tiny().join(part).join("config.json")).unwrap(),
        )
        .unwrap();
        let mut edits = Vec::new();
        for (key, value) in original.as_object().unwrap() {
            match value {
                serde_json::Value::Number(n) if n.as_u64().is_some_and(|v| v > 0) => {
                    edits.push((key.clone(), None))
                }
                serde_json::Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if item.as_u64().is_some_and(|v| v > 0) {
                            edits.push((key.clone(), Some(i)));
                        }
                    }
                }
                _ => {}
            }
        }
        assert!(!edits.is_empty(), "{part}: no integer keys");
        for (key, index) in edits {
            let _ = std::fs::remove_dir_all(&dir);
            copy_dir(&tiny(), &dir);
            edit_json(&dir.join(part).join("config.json"), |m| match index {
                None => {
                    m.insert(key.clone(), 0.into());
                }
                Some(i) => m.get_mut(&key).unwrap()[i] = 0.into(),
            });
            let built =
                Pipeline::open(&dir).and_then(|p| p.build(&component, &ConvertOptions::default()));
            if let Err(e) = &built {
                assert!(!e.to_string().is_empty());
            }
            tried += 1;
        }
    }
    assert!(tried > 20, "only {tried} edits");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}
