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
