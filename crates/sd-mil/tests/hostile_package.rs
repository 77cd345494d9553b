//! Hostile packages and output paths (issue #14): FIFOs and devices in place of package
//! files, manifest paths and symbolic links that lead outside the package, misaligned blobs,
//! and outputs that are not the tool's to replace.

mod common;

use sd_mil::MilError;
use sd_mil::blob::BlobError;
use sd_mil::files::FileError;
use sd_mil::package::{
    Destination, WriteOptions, inspect_destination, read_package, write_package,
};
use std::path::{Path, PathBuf};

fn package(dir: &Path) -> PathBuf {
    let p = dir.join("m.mlpackage");
    write_package(&common::linear_model(), &p, WriteOptions::default()).unwrap();
    p
}

const MODEL: &str = "Data/com.apple.CoreML/model.mlmodel";
const WEIGHTS: &str = "Data/com.apple.CoreML/weights/weight.bin";

#[cfg(unix)]
fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Every package file replaced by a FIFO, `/dev/zero`, `/dev/urandom` or a directory: an
/// error naming the file, at once (a blocking read would hang this test).
#[cfg(unix)]
#[test]
fn fifos_and_devices_in_place_of_package_files_are_refused() {
    for rel in ["Manifest.json", MODEL, WEIGHTS] {
        for kind in ["fifo", "/dev/zero", "/dev/urandom", "dir"] {
            let dir = common::scratch_dir(&format!(
                "hostile/special/{}-{}",
                rel.replace('/', "_"),
                kind.replace('/', "_")
            ));
            let p = package(&dir);
            let target = p.join(rel);
            std::fs::remove_file(&target).unwrap();
            match kind {
                "fifo" => mkfifo(&target),
                "dir" => std::fs::create_dir(&target).unwrap(),
                dev => {
                    // A link to a device inside the package resolves outside it; a device
                    // node itself needs root, so the link is the case to cover here.
                    std::os::unix::fs::symlink(dev, &target).unwrap()
                }
            }
            let err = read_package(&p).unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(
                    err,
                    MilError::File(FileError::NotRegular { .. } | FileError::Escapes { .. })
                        | MilError::Blob(BlobError::File(_))
                ),
                "{rel} as {kind}: {msg}"
            );
            assert!(
                msg.contains(rel.rsplit('/').next().unwrap()),
                "{rel} as {kind}: {msg}"
            );
        }
    }
}

/// Manifest item paths that are absolute or climb out, and symbolic links inside the
/// package that lead outside it, are refused; a link that stays inside is followed.
#[test]
fn manifest_paths_and_links_stay_inside_the_package() {
    let dir = common::scratch_dir("hostile/escape");
    let p = package(&dir);
    let manifest = std::fs::read_to_string(p.join("Manifest.json")).unwrap();
    for (bad, why) in [
        ("/etc", "absolute"),
        ("../../outside", "`..`"),
        ("com.apple.CoreML/../../..", "`..`"),
    ] {
        let edited = manifest.replace(
            "\"path\": \"com.apple.CoreML/weights\"",
            &format!("\"path\": \"{bad}\""),
        );
        assert_ne!(edited, manifest);
        std::fs::write(p.join("Manifest.json"), &edited).unwrap();
        let msg = read_package(&p).unwrap_err().to_string();
        assert!(msg.contains(why) && msg.contains(bad), "{bad}: {msg}");
    }
    std::fs::write(p.join("Manifest.json"), &manifest).unwrap();
    #[cfg(unix)]
    {
        // weight.bin as a link to a copy outside the package.
        let outside = dir.join("outside.bin");
        std::fs::copy(p.join(WEIGHTS), &outside).unwrap();
        std::fs::remove_file(p.join(WEIGHTS)).unwrap();
        std::os::unix::fs::symlink(&outside, p.join(WEIGHTS)).unwrap();
        let err = read_package(&p).unwrap_err();
        assert!(
            matches!(err, MilError::File(FileError::Escapes { .. })),
            "{err}"
        );
        // The whole Data folder as a link outside.
        std::fs::remove_file(p.join(WEIGHTS)).unwrap();
        std::fs::copy(&outside, p.join(WEIGHTS)).unwrap();
        std::fs::rename(p.join("Data"), dir.join("Data-outside")).unwrap();
        std::os::unix::fs::symlink(dir.join("Data-outside"), p.join("Data")).unwrap();
        let err = read_package(&p).unwrap_err();
        assert!(
            matches!(err, MilError::File(FileError::Escapes { .. })),
            "{err}"
        );
        // A link that stays inside the package is fine.
        std::fs::remove_file(p.join("Data")).unwrap();
        std::fs::rename(dir.join("Data-outside"), p.join("Data")).unwrap();
        let w = p.join("Data/com.apple.CoreML/weights");
        std::fs::rename(w.join("weight.bin"), w.join("real.bin")).unwrap();
        std::os::unix::fs::symlink("real.bin", w.join("weight.bin")).unwrap();
        read_package(&p).unwrap();
    }
}

/// A blob whose metadata record or data is not 64-byte aligned is refused when read.
#[test]
fn misaligned_blobs_are_refused() {
    let dir = common::scratch_dir("hostile/misaligned");
    let p = package(&dir);
    let wb = p.join(WEIGHTS);
    let mut bytes = std::fs::read(&wb).unwrap();
    bytes.extend([0u8; 64]);
    // The first record's data offset (bytes 16..24 of the record at 64) moved by 4.
    let at = 64 + 16;
    let data_offset = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    bytes[at..at + 8].copy_from_slice(&(data_offset + 4).to_le_bytes());
    std::fs::write(&wb, &bytes).unwrap();
    let file = sd_mil::blob::BlobFile::open(&wb).unwrap();
    let err = file.blob(64).unwrap_err();
    assert!(
        matches!(err, BlobError::Misaligned { field: "data", .. }),
        "{err}"
    );
    let err = file.blob(96).unwrap_err();
    assert!(
        matches!(
            err,
            BlobError::Misaligned {
                field: "metadata",
                ..
            }
        ),
        "{err}"
    );
}

/// Outputs: a symbolic link, FIFO, device node, regular file or foreign directory at the
/// destination is never replaced (`overwrite` or not); an empty directory or an unfinished
/// package is; a complete package needs `overwrite`.
#[test]
fn outputs_replace_only_what_a_tool_made() {
    let dir = common::scratch_dir("hostile/outputs");
    let m = common::linear_model();
    let force = WriteOptions { overwrite: true };
    let file = dir.join("file.mlpackage");
    std::fs::write(&file, b"user data").unwrap();
    let foreign = dir.join("home");
    std::fs::create_dir_all(foreign.join("Documents")).unwrap();
    std::fs::write(foreign.join("notes.txt"), b"keep").unwrap();
    let mut refused = vec![file.clone(), foreign.clone()];
    #[cfg(unix)]
    {
        let link = dir.join("link.mlpackage");
        std::os::unix::fs::symlink(&foreign, &link).unwrap();
        let fifo = dir.join("fifo.mlpackage");
        mkfifo(&fifo);
        refused.extend([link, fifo, PathBuf::from("/dev/null")]);
    }
    for dest in &refused {
        let err = write_package(&m, dest, force).unwrap_err();
        assert!(
            matches!(err, MilError::File(FileError::RefuseToReplace { .. })),
            "{}: {err}",
            dest.display()
        );
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"user data");
    assert_eq!(std::fs::read(foreign.join("notes.txt")).unwrap(), b"keep");
    // Nothing was left beside the destinations either.
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    let empty = dir.join("empty.mlpackage");
    std::fs::create_dir(&empty).unwrap();
    assert_eq!(
        inspect_destination(&empty).unwrap(),
        Destination::Unfinished
    );
    write_package(&m, &empty, WriteOptions::default()).unwrap();
    assert_eq!(inspect_destination(&empty).unwrap(), Destination::Complete);
    read_package(&empty).unwrap();
    let err = write_package(&m, &empty, WriteOptions::default()).unwrap_err();
    assert!(matches!(err, MilError::AlreadyExists { .. }), "{err}");
    write_package(&m, &empty, force).unwrap();

    let unfinished = dir.join("unfinished.mlpackage");
    std::fs::create_dir_all(unfinished.join("Data/com.apple.CoreML")).unwrap();
    assert_eq!(
        inspect_destination(&unfinished).unwrap(),
        Destination::Unfinished
    );
    write_package(&m, &unfinished, WriteOptions::default()).unwrap();
    read_package(&unfinished).unwrap();
}

/// A temporary package left by a killed write (its process gone) is removed by the next
/// write beside it; one of a live process is not.
#[cfg(target_os = "linux")]
#[test]
fn a_killed_writes_temporary_package_is_cleaned_up() {
    let dir = common::scratch_dir("hostile/stale");
    // pid 0 never names a user process; our own pid is alive.
    let stale = dir.join(".m.mlpackage.partial-0-dead");
    let live = dir.join(format!(".m.mlpackage.partial-{}-live", std::process::id()));
    let other = dir.join(".other.mlpackage.partial-0-dead");
    for d in [&stale, &live, &other] {
        std::fs::create_dir_all(d.join("Data")).unwrap();
    }
    package(&dir);
    assert!(!stale.exists());
    assert!(live.exists() && other.exists());
}
