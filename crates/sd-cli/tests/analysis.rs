//! `sd compress --analyze` on Apple's tiny UNet: the pre-analysis file has the single-layer
//! and cumulative curves and recipes; each recipe applied with `sd compress --recipe …
//! --selected-recipe` gives, in sd-runtime, the PSNR the file promises (within 1 dB);
//! `--target-psnr` picks the smallest recipe that reaches it; bad recipes are refused by name.

use sd_compress::analysis::{PreAnalysis, parse_pre_analysis};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod output_support;
use output_support::{failed, ok};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn unet() -> PathBuf {
    root().join(
        "../shared/fixtures/apple-tiny/packages/split_einsum/Stable_Diffusion_version_sd-tiny_unet.mlpackage",
    )
}

fn sd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sd"))
        .arg("compress")
        .args(args)
        .output()
        .unwrap()
}

/// The PSNR of `package` against the uncompressed UNet in fp32 on the analysis inputs.
fn measured_psnr(package: &Path) -> f64 {
    let reference = sd_mil::package::read_package(unet()).unwrap();
    let inputs = sd_cli::check::random_inputs(&reference, 49408, 93);
    let run = |p: &Path| {
        let m = sd_runtime::Model::load_cpu(p, sd_runtime::Precision::Fp32).unwrap();
        m.predict(&inputs).unwrap()["noise_pred"].to_f32_vec()
    };
    sd_runtime::psnr(&run(package), &run(&unet()))
}

#[test]
fn recipes_from_the_pre_analysis_give_the_psnr_they_promise() {
    let dir = root().join("target/test-analysis");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("unet-recipes.json");
    let log = ok(sd(&[
        unet().to_str().unwrap(),
        "--analyze",
        "-o",
        json.to_str().unwrap(),
        "--analysis-bits",
        "2,8",
        "--min-elements",
        "30000",
        "--num-recipes",
        "5",
    ]));
    assert!(log.contains("candidate weights in"), "{log}");
    let a: PreAnalysis = parse_pre_analysis(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(!a.sizes.is_empty() && a.sizes.values().all(|&n| n > 30000));
    for bits in ["2", "8"] {
        let single = &a.single_layer[bits];
        let c = &a.cumulative[bits];
        assert_eq!(single.len(), a.sizes.len());
        assert_eq!(c.order.len(), a.sizes.len());
        assert!(
            c.order.windows(2).all(|w| single[&w[0]] >= single[&w[1]]),
            "best first"
        );
    }
    // 8-bit palettization hurts less than 2-bit, weight by weight.
    for (w, p8) in &a.single_layer["8"] {
        assert!(*p8 > a.single_layer["2"][w], "{w}");
    }
    assert!(a.baselines["original"] > 40.0 && a.baselines["linear_8bit"] > 30.0);
    assert!(!a.recipes.is_empty());
    for (name, recipe) in &a.recipes {
        let out = dir.join(format!("{name}.mlpackage"));
        ok(sd(&[
            unet().to_str().unwrap(),
            "--recipe",
            json.to_str().unwrap(),
            "--selected-recipe",
            name,
            "-o",
            out.to_str().unwrap(),
        ]));
        let promised = a.recipe_stats[name].psnr_db;
        let got = measured_psnr(&out);
        assert!(
            (got - promised).abs() <= 1.0,
            "{name}: promised {promised:.2} dB, measured {got:.2} dB"
        );
        let palettized = sd_mil::package::read_package(&out)
            .unwrap()
            .program
            .main()
            .unwrap()
            .operations
            .iter()
            .filter(|op| op.op_type == "constexpr_lut_to_dense")
            .count();
        assert_eq!(
            palettized,
            recipe.values().filter(|&&b| b < 16).count(),
            "{name}"
        );
    }
    // --target-psnr: the smallest recipe reaching the target.
    let lowest = a
        .recipe_stats
        .values()
        .map(|s| s.psnr_db)
        .fold(f64::INFINITY, f64::min);
    let out = dir.join("target.mlpackage");
    let log = ok(sd(&[
        unet().to_str().unwrap(),
        "--pre-analysis-json-path",
        json.to_str().unwrap(),
        "--target-psnr",
        &format!("{}", lowest - 0.01),
        "-o",
        out.to_str().unwrap(),
    ]));
    let smallest = a
        .recipe_stats
        .iter()
        .min_by_key(|(_, s)| s.size_bytes)
        .unwrap()
        .0;
    assert!(log.contains(smallest.as_str()), "{log}");
    let e = failed(sd(&[
        unet().to_str().unwrap(),
        "--recipe",
        json.to_str().unwrap(),
        "--target-psnr",
        "500",
        "-o",
        dir.join("none.mlpackage").to_str().unwrap(),
    ]));
    assert!(e.contains("no recipe reaches 500"), "{e}");
}

#[test]
fn bad_recipes_are_refused_by_name() {
    let dir = root().join("target/test-analysis-bad");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out.mlpackage");
    let try_recipe = |text: &str, extra: &[&str]| {
        let r = dir.join("r.json");
        std::fs::write(&r, text).unwrap();
        let mut args = vec![
            unet().to_str().unwrap().to_string(),
            "--recipe".into(),
            r.to_str().unwrap().to_string(),
            "-o".into(),
            out.to_str().unwrap().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        failed(sd(&args))
    };
    let e = try_recipe(r#"{"no_such_layer_weight": 4}"#, &[]);
    assert!(e.contains("no_such_layer_weight"), "{e}");
    let e = try_recipe(r#"{"x": 5}"#, &[]);
    assert!(e.contains("5 is not a supported bit width"), "{e}");
    let e = try_recipe("not json", &[]);
    assert!(e.contains("recipe") && e.contains("r.json"), "{e}");
    let e = try_recipe(r#"{"recipes": {"a": {}}}"#, &["--selected-recipe", "a"]);
    assert!(e.contains("pre-analysis"), "{e}");
    let e = try_recipe(r#"{"x": 4}"#, &["--target-psnr", "30"]);
    assert!(e.contains("single recipe"), "{e}");
    assert!(!out.exists(), "nothing written");
}
