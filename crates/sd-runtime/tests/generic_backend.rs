//! Apple's tiny packages on the generic backend (every `RtBackend` hook at its burn-op default,
//! as GPU backends run them) against the PyTorch fp32 references: ≥ 60 dB in fp32, ≥ 35 dB in
//! program precision — the same floors as the CPU kernels.

mod common;
use common::*;
use sd_runtime::generic::GenericCpu;

fn check(folder: &str, component: &str, io: &str) {
    check_floors::<GenericCpu>("generic ", folder, component, io, Default::default());
}

#[test]
fn text_encoder() {
    check("split_einsum", "text_encoder", "text_encoder");
}

#[test]
fn unet_split_einsum() {
    check("split_einsum", "unet", "unet");
}

#[test]
fn unet_original() {
    check("original", "unet", "unet");
}

#[test]
fn vae_decoder() {
    check("split_einsum", "vae_decoder", "vae_decoder");
}
