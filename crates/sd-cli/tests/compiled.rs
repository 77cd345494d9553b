//! Compiled models as a user meets them: `sd compile` writes `.mlmodelc` folders, and
//! `sd generate`, `sd inspect` and `sd run` take them wherever they take packages — with the
//! same results. Destinations that are not compiled models are never replaced.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PROMPT: &str = "a lighthouse on a cliff at dusk";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn scratch(name: &str) -> PathBuf {
    let d = root().join("target/test-compiled").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn sd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sd"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn apple_package(folder: &str, component: &str) -> PathBuf {
    root().join(format!(
        "../shared/fixtures/apple-tiny/packages/{folder}/Stable_Diffusion_version_sd-tiny_{component}.mlpackage"
    ))
}

/// The converter's part names and the Swift `Resources/` names they compile to.
const SWIFT_NAMES: [(&str, &str); 4] = [
    ("text_encoder", "TextEncoder"),
    ("unet", "Unet"),
    ("vae_decoder", "VAEDecoder"),
    ("vae_encoder", "VAEEncoder"),
];

#[test]
fn generate_on_compiled_resources_makes_the_same_image() {
    let cache = scratch("cache");
    let options = sd_cli::CacheOptions {
        cache_root: Some(cache),
        ..Default::default()
    };
    let packages = sd_cli::prepare(&root().join("fixtures/models/sd1-tiny"), &options)
        .unwrap()
        .folder;
    // A Swift-style Resources folder: every package compiled under Apple's name.
    let res = scratch("Resources");
    for entry in std::fs::read_dir(&packages).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if let Some((_, swift)) = SWIFT_NAMES
            .iter()
            .find(|(part, _)| name.ends_with(&format!("_{part}.mlpackage")))
        {
            let dest = res.join(format!("{swift}.mlmodelc"));
            let out = ok(&sd(&[
                "compile",
                path.to_str().unwrap(),
                "-o",
                dest.to_str().unwrap(),
            ]));
            assert_eq!(out.trim(), dest.to_str().unwrap());
        }
    }
    let tokenizer = [packages.clone(), packages.join("tokenizer")]
        .into_iter()
        .find(|d| d.join("vocab.json").is_file())
        .expect("the prepared folder has the tokenizer");
    for f in ["vocab.json", "merges.txt"] {
        std::fs::copy(tokenizer.join(f), res.join(f)).unwrap();
    }
    for (_, swift) in SWIFT_NAMES {
        assert!(
            res.join(format!("{swift}.mlmodelc/model.mil")).is_file(),
            "{swift}"
        );
    }
    let image = |folder: &Path, out: &Path, extra: &[&str]| {
        let mut args = vec![
            "generate",
            PROMPT,
            "--resource-path",
            folder.to_str().unwrap(),
            "--output-path",
            out.to_str().unwrap(),
            "--seed",
            "11",
            "--step-count",
            "2",
        ];
        args.extend_from_slice(extra);
        ok(&sd(&args));
        let png = std::fs::read_dir(out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "png"))
            .expect("an image");
        sd_runtime::pipeline::image::load_image(png).unwrap().rgb
    };
    let from_packages = image(&packages, &scratch("out-packages"), &[]);
    let from_compiled = image(&res, &scratch("out-compiled"), &[]);
    assert!(
        from_packages == from_compiled,
        "the compiled models made a different image"
    );
    // Image-to-image runs the compiled VAE encoder too.
    let start = scratch("start").join("start.png");
    sd_runtime::pipeline::image::write_png_atomic(&start, &from_packages, &[]).unwrap();
    let i2i = ["--image", start.to_str().unwrap(), "--strength", "0.6"];
    let a = image(&packages, &scratch("i2i-packages"), &i2i);
    let b = image(&res, &scratch("i2i-compiled"), &i2i);
    assert!(a == b, "image-to-image differs on the compiled models");
}

#[test]
fn inspect_and_run_take_compiled_models() {
    let dir = scratch("inspect");
    let pkg = apple_package("split_einsum", "text_encoder");
    let compiled = dir.join("TextEncoder.mlmodelc");
    ok(&sd(&[
        "compile",
        pkg.to_str().unwrap(),
        "-o",
        compiled.to_str().unwrap(),
    ]));
    let describe = |p: &Path| {
        let out = ok(&sd(&["inspect", p.to_str().unwrap()]));
        // Everything but the first line (the path).
        out.lines().skip(1).collect::<Vec<_>>().join("\n")
    };
    assert_eq!(describe(&pkg), describe(&compiled));
    let mil = ok(&sd(&["inspect", "--mil", compiled.to_str().unwrap()]));
    assert_eq!(
        mil,
        std::fs::read_to_string(compiled.join("model.mil")).unwrap()
    );
    // `sd run` on both, same inputs: the same outputs.
    let input = dir.join("in.safetensors");
    let ids: Vec<f32> = (0..77).map(|i| ((i * 37) % 1000) as f32).collect();
    let ids = sd_runtime::Tensor::f32([1, 77], ids);
    sd_runtime::Tensor::write_safetensors(&input, [("input_ids", &ids)]).unwrap();
    let run = |model: &Path, out: &Path| {
        ok(&sd(&[
            "run",
            model.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ]));
        std::fs::read(out).unwrap()
    };
    assert_eq!(
        run(&pkg, &dir.join("a.safetensors")),
        run(&compiled, &dir.join("b.safetensors"))
    );
}

#[test]
fn compile_destinations_and_bad_models_are_refused_clearly() {
    let dir = scratch("refusals");
    let pkg = apple_package("split_einsum", "vae_decoder");
    let p = pkg.to_str().unwrap();
    // Into a folder: <folder>/<name>.mlmodelc, as xcrun coremlcompiler compile names it.
    let out = ok(&sd(&["compile", p, "-o", dir.to_str().unwrap()]));
    let dest = dir.join("Stable_Diffusion_version_sd-tiny_vae_decoder.mlmodelc");
    assert_eq!(out.trim(), dest.to_str().unwrap());
    // Again: refused without --force, replaced with it.
    let o = sd(&["compile", p, "-o", dir.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    ok(&sd(&["compile", p, "-o", dir.to_str().unwrap(), "--force"]));
    // Never over something that is not a compiled model, --force or not.
    let file = dir.join("file.mlmodelc");
    std::fs::write(&file, b"mine").unwrap();
    let foreign = dir.join("foreign.mlmodelc");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), b"mine").unwrap();
    let link = dir.join("link.mlmodelc");
    std::os::unix::fs::symlink(&foreign, &link).unwrap();
    for target in [&file, &foreign, &link] {
        let o = sd(&["compile", p, "-o", target.to_str().unwrap(), "--force"]);
        assert!(!o.status.success(), "{}", target.display());
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(target.to_str().unwrap()),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"mine");
    assert_eq!(std::fs::read(foreign.join("notes.txt")).unwrap(), b"mine");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // Several models cannot go to one .mlmodelc.
    let o = sd(&[
        "compile",
        p,
        p,
        "-o",
        dir.join("one.mlmodelc").to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("several models"));
    // A broken compiled model is named with the file and line at fault.
    std::fs::write(
        dest.join("model.mil"),
        "program(1.0)\n{\n    func main<ios99>() {\n",
    )
    .unwrap();
    let o = sd(&["inspect", dest.to_str().unwrap()]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        e.contains("model.mil:3:") && e.contains("unknown opset `ios99`"),
        "{e}"
    );
    // No temporary folder left behind by any of this.
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
