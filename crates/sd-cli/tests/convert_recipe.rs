//! `sd convert --mixed-bit-recipe` on the tiny model: the UNet it writes is the one
//! `sd compress --recipe` makes of the plain conversion (byte for byte), with a plain recipe
//! and with a pre-analysis file chosen by name or by PSNR target, alone or beside
//! `--quantize-nbits`; bad recipes are refused by name and leave no package.

use sd_compress::analysis::{Cumulative, PreAnalysis, RecipeStats};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod output_support;
use output_support::{failed, ok};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model() -> PathBuf {
    root().join("../shared/fixtures/apple-tiny/model")
}

fn sd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sd"))
        .args(args)
        .output()
        .unwrap()
}

/// Converts the tiny UNet into `out` with `extra` flags; returns its package.
fn convert_unet(out: &Path, extra: &[&str]) -> Result<PathBuf, String> {
    let _ = std::fs::remove_dir_all(out);
    let model = model();
    let mut args = vec![
        "convert",
        "--model-version",
        model.to_str().unwrap(),
        "--convert-unet",
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = sd(&args);
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).into_owned());
    }
    let found: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("_unet.mlpackage"))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    Ok(found[0].clone())
}

fn weights(package: &Path) -> Vec<u8> {
    std::fs::read(package.join("Data/com.apple.CoreML/weights/weight.bin")).unwrap()
}

/// Table sizes (entries per table) of the palettized weights, by weight name.
fn palettized(package: &Path) -> BTreeMap<String, usize> {
    let m = sd_mil::package::read_package(package).unwrap();
    let f = m.program.main().unwrap();
    f.operations
        .iter()
        .filter(|op| op.op_type == "constexpr_lut_to_dense")
        .map(|op| {
            // iOS16/17: the table is an attribute; iOS18: an inline input.
            let inline = op
                .inputs
                .iter()
                .find(|(k, _)| k == "lut")
                .and_then(|(_, b)| match b.first() {
                    Some(sd_mil::Binding::Value(c)) => Some(c.ty.element_count()),
                    _ => None,
                });
            let lut = op
                .attributes
                .get("lut")
                .map(|c| c.ty.element_count())
                .or(inline)
                .expect("a lut");
            (op.outputs[0].name.clone(), lut)
        })
        .collect()
}

/// The names of the UNet's consts with more than 2048 elements, in program order.
fn large_weights(package: &Path) -> Vec<String> {
    let m = sd_mil::package::read_package(package).unwrap();
    m.program
        .main()
        .unwrap()
        .operations
        .iter()
        .filter_map(|op| {
            let c = op.const_value()?;
            (c.ty.element_count() > 2048).then(|| op.outputs[0].name.clone())
        })
        .collect()
}

#[test]
fn a_recipe_at_conversion_equals_compressing_the_converted_unet() {
    let dir = root().join("target/test-convert-recipe");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let plain = convert_unet(&dir.join("plain"), &[]).unwrap();
    let names = large_weights(&plain);
    assert!(names.len() >= 4, "{names:?}");
    let recipe: BTreeMap<String, u32> = [
        (names[0].clone(), 2),
        (names[1].clone(), 4),
        (names[2].clone(), 8),
        (names[3].clone(), 16),
    ]
    .into();
    let recipe_json = dir.join("recipe.json");
    std::fs::write(&recipe_json, serde_json::to_string(&recipe).unwrap()).unwrap();
    let r = recipe_json.to_str().unwrap();

    // Alone: the named weights at their widths (16 = kept), the others uncompressed.
    let converted = convert_unet(&dir.join("recipe"), &["--mixed-bit-recipe", r]).unwrap();
    let compressed = dir.join("compressed.mlpackage");
    ok(sd(&[
        "compress",
        plain.to_str().unwrap(),
        "--recipe",
        r,
        "-o",
        compressed.to_str().unwrap(),
    ]));
    assert!(
        weights(&converted) == weights(&compressed),
        "weight.bin differs"
    );
    let tables = palettized(&converted);
    assert_eq!(
        tables,
        BTreeMap::from([
            (names[0].clone(), 4),
            (names[1].clone(), 16),
            (names[2].clone(), 256)
        ])
    );
    assert_eq!(tables, palettized(&compressed));

    // Beside --quantize-nbits: the others at 6 bits.
    let both = convert_unet(
        &dir.join("both"),
        &["--mixed-bit-recipe", r, "--quantize-nbits", "6"],
    )
    .unwrap();
    let compressed6 = dir.join("compressed6.mlpackage");
    ok(sd(&[
        "compress",
        plain.to_str().unwrap(),
        "--recipe",
        r,
        "--nbits",
        "6",
        "-o",
        compressed6.to_str().unwrap(),
    ]));
    assert!(
        weights(&both) == weights(&compressed6),
        "weight.bin differs"
    );
    let tables = palettized(&both);
    assert_eq!(
        tables.len(),
        names.len() - 1,
        "all large weights but the 16-bit one"
    );
    assert_eq!(tables[&names[0]], 4);
    assert_eq!(tables[&names[4]], 64);
    assert!(!tables.contains_key(&names[3]));

    // A pre-analysis file: by name and by target PSNR.
    let stats = |psnr_db: f64, size_bytes: u64| RecipeStats {
        threshold_db: psnr_db,
        psnr_db,
        mean_bits: 4.0,
        size_bytes,
    };
    let low: BTreeMap<String, u32> = [(names[0].clone(), 1)].into();
    let analysis = PreAnalysis {
        model_version: "tiny".into(),
        measured_on: "test".into(),
        sizes: BTreeMap::new(),
        single_layer: BTreeMap::new(),
        cumulative: BTreeMap::<String, Cumulative>::new(),
        baselines: BTreeMap::new(),
        recipes: [
            ("recipe_small".to_string(), low.clone()),
            ("recipe_good".to_string(), recipe.clone()),
        ]
        .into(),
        recipe_stats: [
            ("recipe_small".to_string(), stats(20.0, 10)),
            ("recipe_good".to_string(), stats(40.0, 20)),
        ]
        .into(),
        seconds: 0.0,
    };
    let analysis_json = dir.join("analysis.json");
    std::fs::write(&analysis_json, serde_json::to_string(&analysis).unwrap()).unwrap();
    let a = analysis_json.to_str().unwrap();
    let by_target = convert_unet(
        &dir.join("target"),
        &["--mixed-bit-recipe", a, "--target-psnr", "30"],
    )
    .unwrap();
    assert!(
        weights(&by_target) == weights(&compressed),
        "--target-psnr 30 is recipe_good"
    );
    let by_name = convert_unet(
        &dir.join("name"),
        &["--mixed-bit-recipe", a, "--selected-recipe", "recipe_small"],
    )
    .unwrap();
    assert_eq!(
        palettized(&by_name),
        BTreeMap::from([(names[0].clone(), 2)])
    );

    // Bad recipes and flags: refused by name, nothing written.
    let bad = |json: &str, extra: &[&str], expect: &[&str]| {
        let path = dir.join("bad.json");
        std::fs::write(&path, json).unwrap();
        let out = dir.join("bad");
        let mut args = vec!["--mixed-bit-recipe", path.to_str().unwrap()];
        args.extend_from_slice(extra);
        let err = convert_unet(&out, &args).expect_err("a bad recipe converted");
        for e in expect {
            assert!(err.contains(e), "{json} {extra:?}: no `{e}` in: {err}");
        }
        let left: Vec<_> = std::fs::read_dir(&out)
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{json}: left {left:?}");
    };
    bad(r#"{"no_such_weight": 4}"#, &[], &["no_such_weight"]);
    bad(&format!(r#"{{"{}": 5}}"#, names[0]), &[], &["5"]);
    bad(&format!(r#"{{"{}": "4"}}"#, names[0]), &[], &[&names[0]]);
    bad("not json", &[], &["bad.json"]);
    bad(
        &serde_json::to_string(&recipe).unwrap(),
        &["--target-psnr", "30"],
        &["single recipe"],
    );
    let analysis_text = serde_json::to_string(&analysis).unwrap();
    bad(&analysis_text, &[], &["--selected-recipe", "recipe_good"]);
    bad(
        &analysis_text,
        &["--target-psnr", "90"],
        &["no recipe reaches 90"],
    );
    bad(
        &analysis_text,
        &["--selected-recipe", "nope"],
        &["no recipe `nope`"],
    );
    let err = failed(sd(&[
        "convert",
        "--model-version",
        model().to_str().unwrap(),
        "--convert-text-encoder",
        "--mixed-bit-recipe",
        r,
        "-o",
        dir.join("no-unet").to_str().unwrap(),
    ]));
    assert!(err.contains("--convert-unet"), "{err}");
}
