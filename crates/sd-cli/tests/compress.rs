//! `sd compress` palettizes then chunks a package; the outputs read back with the expected ops.

use std::path::Path;
use std::process::Command;

#[test]
fn palettize_then_chunk() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let pkg = root.join("../shared/fixtures/apple-tiny/packages/split_einsum/Stable_Diffusion_version_sd-tiny_unet.mlpackage");
    let out = root.join("target/test-packages/cli_compress");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sd"))
            .arg("compress")
            .arg(&pkg)
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&[
        "--nbits",
        "6",
        "--chunk",
        "-o",
        out.join("unet.mlpackage").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for chunk in ["unet_chunk1.mlpackage", "unet_chunk2.mlpackage"] {
        let m = sd_mil::package::read_package(out.join(chunk)).unwrap();
        let ops = &m.program.main().unwrap().operations;
        assert!(
            ops.iter().any(|op| op.op_type == "constexpr_lut_to_dense"),
            "{chunk} is not palettized"
        );
    }
    let again = run(&[
        "--nbits",
        "6",
        "--chunk",
        "-o",
        out.join("unet.mlpackage").to_str().unwrap(),
    ]);
    assert!(
        !again.status.success(),
        "existing outputs must not be replaced without --force"
    );
    let nothing = run(&["-o", out.join("x.mlpackage").to_str().unwrap()]);
    assert!(!nothing.status.success());
}
