//! Outputs of the `sd` binary never replace what it did not make (issue #14): a symbolic
//! link, FIFO, device node, regular file or foreign folder at `-o` stays as it was, with or
//! without `--force`; a conversion killed midway leaves no half package, and the next run
//! finishes the rest.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn scratch(name: &str) -> PathBuf {
    let d = root().join("target/test-scratch/sd-cli-hostile").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn apple_package() -> PathBuf {
    root().join(
        "../shared/fixtures/apple-tiny/packages/split_einsum/Stable_Diffusion_version_sd-tiny_text_encoder.mlpackage",
    )
}

fn sd(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sd"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[cfg(unix)]
#[test]
fn compress_output_never_replaces_links_fifos_devices_files_or_folders() {
    let dir = scratch("compress");
    let target_file = dir.join("precious.txt");
    std::fs::write(&target_file, b"keep me").unwrap();
    let link = dir.join("link.mlpackage");
    std::os::unix::fs::symlink(&target_file, &link).unwrap();
    let dir_link = dir.join("dirlink.mlpackage");
    let folder = dir.join("folder");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("notes"), b"keep").unwrap();
    std::os::unix::fs::symlink(&folder, &dir_link).unwrap();
    let fifo = dir.join("fifo.mlpackage");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let file = dir.join("file.mlpackage");
    std::fs::write(&file, b"a file").unwrap();
    let pkg = apple_package();
    for dest in [
        &link,
        &dir_link,
        &fifo,
        &file,
        &folder,
        &PathBuf::from("/dev/null"),
    ] {
        for force in [false, true] {
            let mut args: Vec<&std::ffi::OsStr> = vec![
                "compress".as_ref(),
                pkg.as_os_str(),
                "--nbits".as_ref(),
                "8".as_ref(),
                "-o".as_ref(),
                dest.as_os_str(),
            ];
            if force {
                args.push("--force".as_ref());
            }
            let o = sd(&args);
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success(), "{}: {err}", dest.display());
            assert!(
                err.contains("refusing to replace") || err.contains("exists"),
                "{} (force {force}): {err}",
                dest.display()
            );
        }
    }
    assert_eq!(std::fs::read(&target_file).unwrap(), b"keep me");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        std::fs::symlink_metadata(&dir_link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read(folder.join("notes")).unwrap(), b"keep");
    assert_eq!(std::fs::read(&file).unwrap(), b"a file");
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert!(
        std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device()
    );
    // Nothing hidden was left beside them.
    let hidden: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
}

#[test]
fn an_empty_output_folder_is_converted_into_not_skipped() {
    let dir = scratch("empty");
    let model = root().join("../shared/fixtures/apple-tiny/model");
    let out = dir.join("out");
    let name = format!(
        "Stable_Diffusion_version_{}_vae_decoder.mlpackage",
        model.display().to_string().replace('/', "_")
    );
    std::fs::create_dir_all(out.join(&name)).unwrap();
    let o = sd(&[
        "convert".as_ref(),
        "--model-version".as_ref(),
        model.as_os_str(),
        "--convert-vae-decoder".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("skipped"), "{err}");
    sd_mil::package::read_package(out.join(&name)).unwrap();
}

/// `sd convert` killed (SIGKILL) while it writes: every package at its final name is
/// complete, and a second run converts what is missing and removes the killed run's
/// temporary folders.
#[cfg(target_os = "linux")]
#[test]
fn a_conversion_killed_midway_leaves_no_half_package_and_the_rerun_completes() {
    let dir = scratch("killed");
    let model = root().join("../shared/fixtures/apple-tiny/model");
    let out = dir.join("out");
    let args = |c: &mut Command| {
        c.arg("convert")
            .arg("--model-version")
            .arg(&model)
            .args([
                "--convert-text-encoder",
                "--convert-unet",
                "--convert-vae-decoder",
                "--convert-vae-encoder",
            ])
            .arg("-o")
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    };
    // Kill as soon as the first temporary package folder appears (the write is under way).
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sd"));
    args(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    let mut saw_partial = false;
    while start.elapsed() < Duration::from_secs(120) {
        if let Ok(entries) = std::fs::read_dir(&out)
            && entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().contains(".partial-"))
        {
            saw_partial = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        saw_partial,
        "the conversion ended before a package was being written"
    );
    let packages = |out: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(out)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "mlpackage"))
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect()
    };
    for p in packages(&out) {
        sd_mil::package::read_package(&p)
            .unwrap_or_else(|e| panic!("half package {}: {e}", p.display()));
    }
    let mut again = Command::new(env!("CARGO_BIN_EXE_sd"));
    args(&mut again);
    let status = again.status().unwrap();
    assert!(status.success());
    let done = packages(&out);
    assert_eq!(done.len(), 4, "{done:?}");
    for p in &done {
        sd_mil::package::read_package(p).unwrap();
    }
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "temporary folders left: {left:?}");
}
