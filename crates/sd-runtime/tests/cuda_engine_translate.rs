//! The CUDA engine's translation without a GPU (feature `cuda-engine`; runs in CI): every
//! package of Apple's tiny fixtures translates in both precisions with a valid memory plan,
//! only compiled kernels, the attention (every UNet form) on the flash kernel in program
//! precision, and an arena
//! smaller than the unplanned sum of its buffers.
#![cfg(feature = "cuda-engine")]

mod common;
use sd_runtime::Precision;
use sd_runtime::cuda_engine::translate_package;

#[test]
fn every_apple_tiny_package_translates() {
    let packages = common::fixtures().join("packages");
    let mut count = 0;
    for folder in std::fs::read_dir(&packages).unwrap() {
        for entry in std::fs::read_dir(folder.unwrap().path()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "mlpackage") {
                continue;
            }
            for precision in [Precision::Program, Precision::Fp32] {
                let t = translate_package(&path, precision, 132)
                    .unwrap_or_else(|e| panic!("{} {precision:?}: {e}", path.display()));
                assert!(t.launches > 0 && t.weights > 0, "{}", path.display());
                assert!(
                    t.arena <= t.unplanned,
                    "{}: arena {} > {}",
                    path.display(),
                    t.arena,
                    t.unplanned
                );
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let attends = t.op_counts.contains_key("sdrt_attention")
                    || t.op_counts.contains_key("sdrt_matmul_attention");
                if attends {
                    let flash = t.kernels.contains(&"sd_flash_attention_f16");
                    assert_eq!(
                        flash,
                        precision == Precision::Program,
                        "{name} {precision:?}: {:?}",
                        t.kernels
                    );
                }
                if name.contains("unet") && !name.contains("chunk2") {
                    assert!(t.convolutions > 0 && t.gemms > 0, "{name}");
                }
                println!(
                    "{name} {precision:?}: {} launches ({} GEMMs, {} convolutions), arena {:.1} MB of {:.1} MB",
                    t.launches,
                    t.gemms,
                    t.convolutions,
                    t.arena as f64 / 1e6,
                    t.unplanned as f64 / 1e6
                );
            }
            count += 1;
        }
    }
    assert!(
        count >= 9,
        "only {count} packages found under {}",
        packages.display()
    );
}
