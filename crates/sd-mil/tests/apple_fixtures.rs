//! Every package Apple's converter wrote reads into the IR with no unknown op, checks against
//! the catalogue, and survives a write/read round trip.

mod common;

use sd_mil::package::{WriteOptions, read_package, write_package};

#[test]
fn every_apple_package_reads_and_checks() {
    let packages = common::apple_packages();
    assert!(
        packages.len() >= 10,
        "expected the apple-tiny fixture packages, found {}",
        packages.len()
    );
    for p in &packages {
        let model = read_package(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(model.spec_version, 7, "{}", p.display());
        let main = model.program.main().expect("main");
        assert!(main.operations.len() > 100, "{}", p.display());
        for op in &main.operations {
            assert!(
                sd_mil::catalogue::is_known(&op.op_type),
                "{}: {}",
                p.display(),
                op.op_type
            );
        }
    }
}

#[test]
fn apple_packages_round_trip_through_our_writer() {
    let out = common::out_dir("apple_round_trip");
    for p in common::apple_packages() {
        let model = read_package(&p).unwrap();
        let dest = out
            .join(p.parent().unwrap().file_name().unwrap())
            .join(p.file_name().unwrap());
        write_package(&model, &dest, WriteOptions { overwrite: true }).unwrap();
        let back = read_package(&dest).unwrap();
        common::assert_models_equal(&model, &back);
    }
}

#[test]
fn apple_packages_compile_and_read_back_equal() {
    let out = common::scratch_dir("apple_compiled");
    for p in common::apple_packages() {
        let model = read_package(&p).unwrap();
        let dest = out
            .join(p.parent().unwrap().file_name().unwrap())
            .join(p.with_extension("mlmodelc").file_name().unwrap());
        common::assert_compiles_back(&model, &p, &dest);
        assert!(sd_mil::read_model(&dest).is_ok());
    }
}
