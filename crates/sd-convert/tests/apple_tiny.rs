//! Converting the apple-tiny diffusers folder gives packages with the same signatures as the
//! ones Apple's converter wrote from the same weights.

use sd_convert::{AttentionImpl, Component, ConvertOptions, Pipeline};
use sd_mil::package::{WriteOptions, read_package, write_package};
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/apple-tiny")
}

fn out_dir(test: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/test-packages")
        .join(test)
}

/// Feature name, element type and shape of each input or output.
type Features = Vec<(String, sd_mil::ArrayDType, Vec<usize>)>;

fn signature(m: &sd_mil::Model) -> (Features, Features) {
    let f = |v: &Vec<sd_mil::FeatureDescription>| {
        v.iter()
            .map(|f| (f.name.clone(), f.dtype, f.shape.clone()))
            .collect()
    };
    (f(&m.description.inputs), f(&m.description.outputs))
}

fn convert_and_compare(
    test: &str,
    component: Component,
    attention: AttentionImpl,
    apple_folder: &str,
) {
    let p = Pipeline::open(fixture().join("model")).unwrap();
    let o = ConvertOptions {
        attention,
        model_version: "sd-tiny".into(),
        ..Default::default()
    };
    let model = p.build(&component, &o).unwrap();
    let name = component.package_name("sd-tiny");
    let dest = out_dir(test).join(&name);
    write_package(&model, &dest, WriteOptions { overwrite: true }).unwrap();
    let ours = read_package(&dest).unwrap();
    let apple = read_package(fixture().join("packages").join(apple_folder).join(&name)).unwrap();
    assert_eq!(signature(&ours), signature(&apple), "{name}");
    assert_eq!(ours.spec_version, apple.spec_version);
}

#[test]
fn text_encoder_signature_matches_apple() {
    convert_and_compare(
        "text_encoder_signature_matches_apple",
        Component::TextEncoder,
        AttentionImpl::SplitEinsum,
        "split_einsum",
    );
}

#[test]
fn vae_decoder_signature_matches_apple() {
    convert_and_compare(
        "vae_decoder_signature_matches_apple",
        Component::VaeDecoder,
        AttentionImpl::SplitEinsum,
        "split_einsum",
    );
}

#[test]
fn vae_encoder_signature_matches_apple() {
    convert_and_compare(
        "vae_encoder_signature_matches_apple",
        Component::VaeEncoder,
        AttentionImpl::SplitEinsum,
        "split_einsum",
    );
}

#[test]
fn unet_split_einsum_signature_matches_apple() {
    convert_and_compare(
        "unet_split_einsum_signature_matches_apple",
        Component::Unet,
        AttentionImpl::SplitEinsum,
        "split_einsum",
    );
}

#[test]
fn unet_original_signature_matches_apple() {
    convert_and_compare(
        "unet_original_signature_matches_apple",
        Component::Unet,
        AttentionImpl::Original,
        "original",
    );
}

#[test]
fn unet_split_einsum_v2_signature_matches_apple() {
    convert_and_compare(
        "unet_split_einsum_v2_signature_matches_apple",
        Component::Unet,
        AttentionImpl::SplitEinsumV2,
        "split_einsum_v2",
    );
}
