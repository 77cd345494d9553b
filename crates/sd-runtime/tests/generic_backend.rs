//! Apple's tiny packages on the generic backend (every `RtBackend` hook at its burn-op default,
//! as GPU backends run them) against the PyTorch fp32 references: ≥ 60 dB in fp32, ≥ 35 dB in
//! program precision — the same floors as the CPU kernels.

mod common;
use common::*;
use sd_runtime::generic::GenericCpu;
use sd_runtime::{LoadOptions, Model, Precision};

fn check(folder: &str, component: &str, io: &str) {
    let (ins, outs) = reference(io);
    for (precision, floor) in [(Precision::Program, 35.0), (Precision::Fp32, 60.0)] {
        let options = LoadOptions::<GenericCpu>::new(precision, Default::default());
        let model = Model::load(package(folder, component), options).unwrap();
        let got = model.predict(&model_inputs(&model, &ins)).unwrap();
        let rows = report(
            &format!("generic {folder}/{component}"),
            precision,
            &got,
            &outs,
        );
        assert_floor(
            &rows,
            floor,
            &format!("generic {folder}/{component} {precision:?}"),
        );
    }
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
