//! Minimal conversion driver for benchmarks (no sd-runtime in the build):
//! `cargo run --release -p sd-convert --bin sd-convert-bench -- MODEL_DIR OUT_DIR COMPONENT [ATTENTION]`
//! with COMPONENT one of text_encoder, unet, control-unet, vae_decoder, vae_encoder.

use sd_convert::{Component, ConvertOptions, Pipeline};
use sd_mil::package::{WriteOptions, write_package};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: convert MODEL_DIR OUT_DIR COMPONENT [ATTENTION]".into());
    }
    let component = match args[3].as_str() {
        "text_encoder" => Component::TextEncoder,
        "unet" => Component::Unet,
        "control-unet" => Component::ControlUnet,
        "vae_decoder" => Component::VaeDecoder,
        "vae_encoder" => Component::VaeEncoder,
        other => return Err(format!("unknown component {other}").into()),
    };
    let mut o = ConvertOptions {
        model_version: "bench".into(),
        ..Default::default()
    };
    if let Some(a) = args.get(4) {
        o.attention = a.parse()?;
    }
    let t0 = Instant::now();
    let p = Pipeline::open(&args[1])?;
    let model = p.build(&component, &o)?;
    let t1 = t0.elapsed();
    let dest = std::path::Path::new(&args[2]).join(component.package_name("bench"));
    write_package(&model, &dest, WriteOptions { overwrite: true })?;
    eprintln!(
        "{}: {} ops, build {:.2} s, total {:.2} s",
        component.suffix(),
        model.program.main().map_or(0, |f| f.operations.len()),
        t1.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
