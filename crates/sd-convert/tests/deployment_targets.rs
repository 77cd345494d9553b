//! `--min-deployment-target macOS14 / macOS15`: the packages carry spec 8 / 9 and the iOS17 /
//! iOS18 opset, and still compute what diffusers computes (≥ 35 dB fp16, ≥ 60 dB fp32). The
//! packages land in target/test-packages, where `cargo xtask test` has coremltools check them.

use sd_convert::{AttentionImpl, Component, ConvertOptions, DeploymentTarget, Pipeline};
use sd_mil::Opset;
use sd_mil::package::{WriteOptions, read_package, write_package};

mod common;
use common::root;

/// Converts `component` of sd1-tiny for `target`, checks the written package's spec version and
/// opset, and runs it against `io` (in.* / out.* tensors from the reference script).
fn check(target: DeploymentTarget, component: Component, attention: AttentionImpl, io: &str) {
    let model_dir = root().join("fixtures/models/sd1-tiny");
    let p = Pipeline::open(&model_dir).unwrap();
    // The reference script ran the UNet at a 32×32 latent and the VAE at 16×16.
    let latent = Some(if component == Component::Unet { 32 } else { 16 });
    let o = ConvertOptions {
        attention,
        target,
        latent_h: latent,
        latent_w: latent,
        model_version: "test".into(),
        ..Default::default()
    };
    let model = p.build(&component, &o).unwrap();
    let test = format!("target_{target:?}_{attention}").to_lowercase();
    let dest = root()
        .join("target/test-packages")
        .join(test)
        .join(component.package_name("test"));
    write_package(&model, &dest, WriteOptions { overwrite: true }).unwrap();

    let written = read_package(&dest).unwrap();
    let opset = target.opset();
    assert_eq!(written.spec_version, opset.spec_version(), "{target:?}");
    assert_eq!(written.program.main().unwrap().opset, opset, "{target:?}");

    let io = common::read_io(root().join("fixtures/outputs/sd1-tiny").join(io));
    common::check_package(&format!("{target:?}"), &model, &dest, &io);
}

#[test]
fn macos14_packages_are_spec8_and_match_diffusers() {
    let t = DeploymentTarget::MacOS14;
    assert_eq!(t.opset(), Opset::CoreML7);
    check(
        t,
        Component::TextEncoder,
        AttentionImpl::SplitEinsum,
        "text_encoder.io.safetensors",
    );
    check(
        t,
        Component::Unet,
        AttentionImpl::SplitEinsumV2,
        "unet.io.safetensors",
    );
    check(
        t,
        Component::VaeDecoder,
        AttentionImpl::SplitEinsum,
        "vae_decoder.io.safetensors",
    );
}

#[test]
fn macos15_packages_are_spec9_and_match_diffusers() {
    let t = DeploymentTarget::MacOS15;
    assert_eq!(t.opset(), Opset::CoreML8);
    check(
        t,
        Component::TextEncoder,
        AttentionImpl::SplitEinsum,
        "text_encoder.io.safetensors",
    );
    check(
        t,
        Component::Unet,
        AttentionImpl::Original,
        "unet.io.safetensors",
    );
    check(
        t,
        Component::VaeEncoder,
        AttentionImpl::SplitEinsum,
        "vae_encoder.io.safetensors",
    );
}
