//! `sd convert` on the tiny model: Apple's file names, 6-bit palettization, UNet chunks, the
//! Swift resource layout, and existing outputs skipped.

use std::path::Path;
use std::process::Command;

#[test]
fn converts_compresses_chunks_and_bundles_the_tiny_model() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let model = root.join("../shared/fixtures/apple-tiny/model");
    let out = root.join("target/test-packages/cli_convert");
    let _ = std::fs::remove_dir_all(&out);
    let convert = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sd"))
            .arg("convert")
            .arg("--model-version")
            .arg(&model)
            .arg("-o")
            .arg(&out)
            .args([
                "--convert-text-encoder",
                "--convert-unet",
                "--convert-vae-decoder",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = convert(&[
        "--quantize-nbits",
        "6",
        "--chunk-unet",
        "--bundle-resources-for-swift-cli",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let name = |sub: &str| {
        let stem = format!(
            "Stable_Diffusion_version_{}_{sub}.mlpackage",
            model.display().to_string().replace('/', "_")
        );
        out.join(stem)
    };
    let mut found: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    for sub in [
        "text_encoder",
        "unet",
        "unet_chunk1",
        "unet_chunk2",
        "vae_decoder",
    ] {
        let p = name(sub);
        assert!(
            p.exists()
                || found
                    .iter()
                    .any(|f| f.ends_with(&format!("_{sub}.mlpackage"))),
            "{sub} missing in {found:?}"
        );
    }
    let unet = found
        .iter()
        .find(|f| f.ends_with("_unet.mlpackage"))
        .unwrap();
    let m = sd_mil::package::read_package(out.join(unet)).unwrap();
    let ops = &m.program.main().unwrap().operations;
    assert!(
        ops.iter().any(|o| o.op_type == "constexpr_lut_to_dense"),
        "the UNet is not palettized"
    );
    let vae = found
        .iter()
        .find(|f| f.ends_with("_vae_decoder.mlpackage"))
        .unwrap();
    let m = sd_mil::package::read_package(out.join(vae)).unwrap();
    assert!(
        !m.program
            .main()
            .unwrap()
            .operations
            .iter()
            .any(|o| o.op_type.starts_with("constexpr")),
        "the VAE stays uncompressed"
    );
    let again = convert(&[]);
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("skipped"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}
