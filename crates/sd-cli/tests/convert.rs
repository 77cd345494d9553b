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

/// The Python of the reference venv (`cargo xtask reference` installs it), if present.
fn reference_python() -> Option<std::path::PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/reference-venv/bin/python");
    p.exists().then_some(p)
}

fn convert_sd1(out: &Path, extra: &[&str]) -> std::process::Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    Command::new(env!("CARGO_BIN_EXE_sd"))
        .arg("convert")
        .arg("--model-version")
        .arg(root.join("fixtures/models/sd1-tiny"))
        .arg("-o")
        .arg(out)
        .args(["--convert-text-encoder", "--convert-vae-decoder", "--force"])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn torch_reference_without_the_python_stack_is_a_clear_error() {
    let out =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-scratch/cli_torch_missing");
    let o = convert_sd1(&out, &["--torch-reference", "/nonexistent/python3"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--torch-reference") && err.contains("/nonexistent/python3"),
        "{err}"
    );
    assert!(!out.exists(), "nothing is written before the probe passes");
}

#[test]
fn torch_reference_checks_against_diffusers() {
    let Some(python) = reference_python() else {
        eprintln!("skipped: no target/reference-venv (cargo xtask reference installs it)");
        return;
    };
    let out = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/test-packages/cli_torch_reference");
    let o = convert_sd1(&out, &["--torch-reference", python.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut rows = 0;
    for line in stdout.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let vs_fp32: f64 = cols[2].parse().unwrap();
        let vs_torch: f64 = cols[3].parse().unwrap();
        assert!(vs_fp32 >= 35.0 && vs_torch >= 35.0, "{line}");
        rows += 1;
    }
    // last_hidden_state, pooled_outputs, image.
    assert_eq!(rows, 3, "{stdout}");
}

#[test]
fn single_file_checkpoint_converts_with_config_and_bundles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let ckpt = root.join("fixtures/models/single-file/sd1-micro.safetensors");
    let config = root.join("fixtures/models/sd1-micro");
    let out = root.join("target/test-packages/cli_single_file");
    let _ = std::fs::remove_dir_all(&out);
    let o = Command::new(env!("CARGO_BIN_EXE_sd"))
        .arg("convert")
        .arg("--model-version")
        .arg(&ckpt)
        .arg("--config")
        .arg(&config)
        .arg("-o")
        .arg(&out)
        .args([
            "--convert-text-encoder",
            "--convert-unet",
            "--convert-vae-decoder",
            "--check-output-correctness",
            "--bundle-resources-for-swift-cli",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    // Compiled under the Swift CLI's names, each equal to the package it came from.
    for (f, part) in [
        ("TextEncoder.mlmodelc", "text_encoder"),
        ("Unet.mlmodelc", "unet"),
        ("VAEDecoder.mlmodelc", "vae_decoder"),
    ] {
        let compiled = out.join("Resources").join(f);
        let model = sd_mil::compiled::read_compiled(&compiled)
            .unwrap_or_else(|e| panic!("{f}: {e}: {stderr}"));
        let package = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(&format!("_{part}.mlpackage")))
            .unwrap();
        let package = sd_mil::package::read_package(package).unwrap();
        assert_eq!(model.description, package.description, "{f}");
        assert_eq!(
            model.program.main().unwrap().operations.len(),
            package.program.main().unwrap().operations.len(),
            "{f}"
        );
    }
    assert!(!out.join("Resources/Unet.mlpackage").exists());
    // sd1-micro has no tokenizer/: the warning says where the BPE files would come from.
    assert!(
        stderr.contains("vocab.json not found") && stderr.contains("--config"),
        "{stderr}"
    );
    // The same file cannot be checked by diffusers, which reads folders.
    let o = Command::new(env!("CARGO_BIN_EXE_sd"))
        .arg("convert")
        .arg("--model-version")
        .arg(&ckpt)
        .args(["--convert-unet", "--torch-reference", "-o"])
        .arg(root.join("target/test-scratch/cli_single_file_torch"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("single file"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
