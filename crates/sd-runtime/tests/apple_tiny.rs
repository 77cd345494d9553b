//! Apple's tiny packages against the PyTorch fp32 reference outputs.
//! `cargo test -p sd-runtime --test apple_tiny -- --nocapture` prints the PSNR table.

mod common;
use common::*;
use sd_runtime::{Model, Precision};

fn check(folder: &str, component: &str, io: &str) {
    check_floors::<sd_runtime::Cpu>("", folder, component, io, Default::default());
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
fn unet_split_einsum_v2() {
    check("split_einsum_v2", "unet", "unet");
}

#[test]
fn vae_decoder() {
    check("split_einsum", "vae_decoder", "vae_decoder");
}

#[test]
fn vae_encoder() {
    check("split_einsum", "vae_encoder", "vae_encoder");
}

#[test]
fn chunked_unet_equals_whole() {
    let (ins, outs) = reference("unet");
    for precision in [Precision::Program, Precision::Fp32] {
        let c1 = Model::load_cpu(package("split_einsum_chunk", "unet_chunk1"), precision).unwrap();
        let c2 = Model::load_cpu(package("split_einsum_chunk", "unet_chunk2"), precision).unwrap();
        let mid = c1.predict(&model_inputs(&c1, &ins)).unwrap();
        let mut merged = ins.clone();
        merged.extend(mid);
        let got = c2.predict(&model_inputs(&c2, &merged)).unwrap();
        let rows = report("split_einsum_chunk/unet_chunk1+2", precision, &got, &outs);
        assert_floor(
            &rows,
            if precision == Precision::Fp32 {
                60.0
            } else {
                35.0
            },
            "chunked vs reference",
        );
        // Against the whole (unchunked) split-einsum model in the same precision.
        let whole = Model::load_cpu(package("split_einsum", "unet"), precision).unwrap();
        let w = whole.predict(&model_inputs(&whole, &ins)).unwrap();
        let rows = report("chunked vs whole split_einsum/unet", precision, &got, &w);
        assert_floor(&rows, 60.0, "chunked vs whole");
    }
}

#[test]
fn palettized_q6_psnr_reported() {
    for (component, reference) in [("unet", "unet"), ("text_encoder", "text_encoder")] {
        for precision in [Precision::Program, Precision::Fp32] {
            let rows = run("split_einsum_q6", component, reference, precision);
            // No floor holds for palettized weights; they must still be finite and close.
            assert_floor(&rows, 10.0, "q6 sanity");
        }
    }
}

/// Every Apple package compiled to `.mlmodelc` predicts exactly what the package predicts
/// (the same program and the same weight bytes, so bit for bit), in both precisions.
#[test]
fn compiled_models_predict_exactly_as_their_packages() {
    let scratch = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/test-scratch")
        .join(format!("runtime_compiled-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    for (folder, component, io) in [
        ("split_einsum", "text_encoder", "text_encoder"),
        ("original", "unet", "unet"),
        ("split_einsum_v2", "unet", "unet"),
        ("split_einsum_q6", "unet", "unet"),
        ("split_einsum_chunk", "unet_chunk1", "unet"),
        ("split_einsum", "vae_decoder", "vae_decoder"),
        ("split_einsum", "vae_encoder", "vae_encoder"),
    ] {
        let pkg = package(folder, component);
        let dest = scratch.join(folder).join(format!("{component}.mlmodelc"));
        let model = sd_mil::package::read_package(&pkg).unwrap();
        sd_mil::compiled::write_compiled(&model, &dest, Default::default()).unwrap();
        let (ins, _) = reference(io);
        for precision in [Precision::Program, Precision::Fp32] {
            let a = Model::load_cpu(&pkg, precision).unwrap();
            let b = Model::load_cpu(&dest, precision).unwrap();
            assert_eq!(a.description(), b.description(), "{folder}/{component}");
            let (ya, yb) = (
                a.predict(&model_inputs(&a, &ins)).unwrap(),
                b.predict(&model_inputs(&b, &ins)).unwrap(),
            );
            assert_eq!(ya.len(), yb.len());
            for (name, t) in &ya {
                let u = &yb[name];
                assert_eq!(t.shape, u.shape, "{folder}/{component}: {name}");
                assert!(
                    t.to_f32_vec() == u.to_f32_vec(),
                    "{folder}/{component} {precision:?}: {name} differs"
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
}
