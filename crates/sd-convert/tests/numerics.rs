//! Converted packages executed by sd-runtime against the diffusers/transformers reference
//! outputs: ≥ 35 dB with fp16 compute, ≥ 60 dB in fp32 (PSNR as Apple's converter computes it).

use sd_convert::clip::ClipOutputs;
use sd_convert::{AttentionImpl, Component, ConvertOptions, Pipeline};
use sd_mil::package::{WriteOptions, write_package};
use std::path::PathBuf;

mod common;
use common::root;

struct Case<'a> {
    test: &'a str,
    model: PathBuf,
    component: Component,
    attention: AttentionImpl,
    io: PathBuf,
    latent: Option<usize>,
    text_outputs: ClipOutputs,
}

fn run(case: Case<'_>) {
    let p = Pipeline::open(&case.model).unwrap();
    let o = ConvertOptions {
        attention: case.attention,
        latent_h: case.latent,
        latent_w: case.latent,
        text_outputs: case.text_outputs,
        model_version: "test".into(),
        ..Default::default()
    };
    let model = p.build(&case.component, &o).unwrap();
    let dest = root()
        .join("target/test-packages")
        .join(case.test)
        .join(case.component.package_name("test"));
    write_package(&model, &dest, WriteOptions { overwrite: true }).unwrap();

    let io = common::read_io(&case.io);
    common::check_package(case.test, &model, &dest, &io);
}

fn sd1() -> PathBuf {
    root().join("fixtures/models/sd1-tiny")
}
fn sd2() -> PathBuf {
    root().join("fixtures/models/sd2-tiny")
}
fn out(model: &str, file: &str) -> PathBuf {
    root().join("fixtures/outputs").join(model).join(file)
}

#[test]
fn sd1_text_encoder_matches_transformers() {
    run(Case {
        test: "sd1_text_encoder_matches_transformers",
        model: sd1(),
        component: Component::TextEncoder,
        attention: AttentionImpl::SplitEinsum,
        io: out("sd1-tiny", "text_encoder.io.safetensors"),
        latent: None,
        text_outputs: ClipOutputs::All,
    });
}

#[test]
fn sd2_text_encoder_matches_transformers() {
    run(Case {
        test: "sd2_text_encoder_matches_transformers",
        model: sd2(),
        component: Component::TextEncoder,
        attention: AttentionImpl::SplitEinsum,
        io: out("sd2-tiny", "text_encoder.io.safetensors"),
        latent: None,
        text_outputs: ClipOutputs::All,
    });
}

fn unet_case(
    test: &str,
    model: PathBuf,
    io: PathBuf,
    attention: AttentionImpl,
    component: Component,
    latent: Option<usize>,
) {
    run(Case {
        test,
        model,
        component,
        attention,
        io,
        latent,
        text_outputs: ClipOutputs::LastHidden,
    });
}

#[test]
fn sd1_unet_split_einsum_matches_diffusers() {
    unet_case(
        "sd1_unet_split_einsum_matches_diffusers",
        sd1(),
        out("sd1-tiny", "unet.io.safetensors"),
        AttentionImpl::SplitEinsum,
        Component::Unet,
        None,
    );
}

#[test]
fn sd1_unet_original_matches_diffusers() {
    unet_case(
        "sd1_unet_original_matches_diffusers",
        sd1(),
        out("sd1-tiny", "unet.io.safetensors"),
        AttentionImpl::Original,
        Component::Unet,
        None,
    );
}

#[test]
fn sd1_unet_split_einsum_v2_matches_diffusers() {
    unet_case(
        "sd1_unet_split_einsum_v2_matches_diffusers",
        sd1(),
        out("sd1-tiny", "unet.io.safetensors"),
        AttentionImpl::SplitEinsumV2,
        Component::Unet,
        None,
    );
}

#[test]
fn sd2_unet_split_einsum_v2_matches_diffusers() {
    // 40×40 latent: attention sequence 1600 is not a multiple of 512.
    unet_case(
        "sd2_unet_split_einsum_v2_matches_diffusers",
        sd2(),
        out("sd2-tiny", "unet.io.safetensors"),
        AttentionImpl::SplitEinsumV2,
        Component::Unet,
        None,
    );
}

#[test]
fn sd2_unet_original_matches_diffusers() {
    unet_case(
        "sd2_unet_original_matches_diffusers",
        sd2(),
        out("sd2-tiny", "unet.io.safetensors"),
        AttentionImpl::Original,
        Component::Unet,
        None,
    );
}

#[test]
fn sd2_unet_split_einsum_matches_diffusers() {
    unet_case(
        "sd2_unet_split_einsum_matches_diffusers",
        sd2(),
        out("sd2-tiny", "unet.io.safetensors"),
        AttentionImpl::SplitEinsum,
        Component::Unet,
        None,
    );
}

#[test]
fn inpaint_unet_matches_diffusers() {
    let dir = root().join("fixtures/models/inpaint-tiny");
    unet_case(
        "inpaint_unet_matches_diffusers",
        dir,
        out("inpaint-tiny", "unet.io.safetensors"),
        AttentionImpl::SplitEinsum,
        Component::Unet,
        None,
    );
}

#[test]
fn sd1_control_unet_matches_diffusers() {
    unet_case(
        "sd1_control_unet_matches_diffusers",
        sd1(),
        out("sd1-tiny", "control_unet.io.safetensors"),
        AttentionImpl::SplitEinsum,
        Component::ControlUnet,
        Some(16),
    );
}

#[test]
fn controlnet_matches_diffusers() {
    let cn = root().join("fixtures/models/controlnet-tiny");
    unet_case(
        "controlnet_matches_diffusers",
        sd1(),
        out("controlnet-tiny", "controlnet.io.safetensors"),
        AttentionImpl::SplitEinsum,
        Component::ControlNet(cn),
        Some(16),
    );
}

fn vae_case(test: &str, model: PathBuf, io: PathBuf, component: Component) {
    run(Case {
        test,
        model,
        component,
        attention: AttentionImpl::SplitEinsum,
        io,
        latent: Some(16),
        text_outputs: ClipOutputs::LastHidden,
    });
}

#[test]
fn sd1_vae_decoder_matches_diffusers() {
    vae_case(
        "sd1_vae_decoder_matches_diffusers",
        sd1(),
        out("sd1-tiny", "vae_decoder.io.safetensors"),
        Component::VaeDecoder,
    );
}

#[test]
fn sd1_vae_encoder_matches_diffusers() {
    vae_case(
        "sd1_vae_encoder_matches_diffusers",
        sd1(),
        out("sd1-tiny", "vae_encoder.io.safetensors"),
        Component::VaeEncoder,
    );
}

#[test]
fn sd2_vae_decoder_matches_diffusers() {
    vae_case(
        "sd2_vae_decoder_matches_diffusers",
        sd2(),
        out("sd2-tiny", "vae_decoder.io.safetensors"),
        Component::VaeDecoder,
    );
}

#[test]
fn sd2_vae_encoder_matches_diffusers() {
    vae_case(
        "sd2_vae_encoder_matches_diffusers",
        sd2(),
        out("sd2-tiny", "vae_encoder.io.safetensors"),
        Component::VaeEncoder,
    );
}
