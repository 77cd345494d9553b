//! Helpers shared by the integration tests: fixture paths and model comparison.
#![allow(dead_code)]

use sd_mil::{Binding, ConstValue, Model};
use std::path::{Path, PathBuf};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `../shared/fixtures/apple-tiny/packages/*/*.mlpackage`, sorted.
pub fn apple_packages() -> Vec<PathBuf> {
    let dir = root().join("../shared/fixtures/apple-tiny/packages");
    let mut out = Vec::new();
    for sub in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let sub = sub.unwrap().path();
        for p in std::fs::read_dir(&sub).unwrap() {
            let p = p.unwrap().path();
            if p.extension().is_some_and(|e| e == "mlpackage") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A fresh directory under `target/test-packages/<name>`; CI checks every package written
/// there with `cargo xtask check-mlpackage`.
pub fn out_dir(name: &str) -> PathBuf {
    let d = root().join("target/test-packages").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn same_const(a: &ConstValue, b: &ConstValue, what: &str) {
    assert!(
        a.same_contents(b),
        "{what}: constants differ ({:?} vs {:?})",
        a.ty,
        b.ty
    );
}

/// Asserts two models are equal: description, spec, and every op (type, name, inputs,
/// outputs, attributes with their contents).
pub fn assert_models_equal(a: &Model, b: &Model) {
    assert_eq!(a.spec_version, b.spec_version);
    assert_eq!(a.description, b.description);
    assert_eq!(a.program.build_info, b.program.build_info);
    assert_eq!(a.program.functions.len(), b.program.functions.len());
    for (name, fa) in &a.program.functions {
        let fb = &b.program.functions[name];
        assert_eq!(fa.opset, fb.opset);
        assert_eq!(fa.inputs, fb.inputs);
        assert_eq!(fa.outputs, fb.outputs);
        assert_eq!(fa.operations.len(), fb.operations.len());
        for (oa, ob) in fa.operations.iter().zip(&fb.operations) {
            assert_eq!(oa.op_type, ob.op_type);
            assert_eq!(oa.name, ob.name);
            assert_eq!(oa.outputs, ob.outputs, "op {}", oa.name);
            let mut ia = oa.inputs.clone();
            let mut ib = ob.inputs.clone();
            ia.sort_by(|x, y| x.0.cmp(&y.0));
            ib.sort_by(|x, y| x.0.cmp(&y.0));
            assert_eq!(ia.len(), ib.len(), "op {}", oa.name);
            for ((pa, ba), (pb, bb)) in ia.iter().zip(&ib) {
                assert_eq!(pa, pb, "op {}", oa.name);
                assert_eq!(ba.len(), bb.len(), "op {}.{pa}", oa.name);
                for (x, y) in ba.iter().zip(bb) {
                    match (x, y) {
                        (Binding::Name(x), Binding::Name(y)) => assert_eq!(x, y),
                        (Binding::Value(x), Binding::Value(y)) => {
                            same_const(x, y, &format!("{}.{pa}", oa.name))
                        }
                        _ => panic!("op {}.{pa}: binding kinds differ", oa.name),
                    }
                }
            }
            assert_eq!(oa.attributes.len(), ob.attributes.len(), "op {}", oa.name);
            for (k, va) in &oa.attributes {
                same_const(va, &ob.attributes[k], &format!("{}.{k}", oa.name));
            }
        }
    }
}

/// A fresh scratch directory under `target/test-scratch/<name>` for packages a test corrupts
/// on purpose (not checked by CI).
pub fn scratch_dir(name: &str) -> PathBuf {
    let d = root().join("target/test-scratch").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A small model with one blob-backed weight: `y = linear(x: fp32 (1, 16), w: (8, 16))`.
pub fn linear_model() -> Model {
    use sd_mil::builder::FunctionBuilder;
    use sd_mil::{DType, Opset, Program, TensorType};
    let mut b = FunctionBuilder::new(Opset::CoreML7);
    let x = b.input("x", TensorType::new(DType::F32, [1, 16])).unwrap();
    let w = b
        .constant("w", ConstValue::f32([8, 16], &[0.5; 128]).unwrap())
        .unwrap();
    let y = b
        .op("linear")
        .input("x", &x)
        .input("weight", &w)
        .name("y")
        .build_one()
        .unwrap();
    Model::from_program(Program::with_main(b.finish(&[&y]).unwrap())).unwrap()
}

/// Compiles `model` (read from the package at `package`) into `dest` and checks the round
/// trip: the compiled model reads back equal, its `weight.bin` is the package's byte for
/// byte, and its `model.mil` is exactly what printing the read-back program gives.
pub fn assert_compiles_back(model: &Model, package: &Path, dest: &Path) {
    use sd_mil::compiled::{read_compiled, write_compiled};
    write_compiled(
        model,
        dest,
        sd_mil::package::WriteOptions { overwrite: true },
    )
    .unwrap_or_else(|e| panic!("{}: {e}", dest.display()));
    let back = read_compiled(dest).unwrap_or_else(|e| panic!("{}: {e}", dest.display()));
    assert_models_equal(model, &back);
    let ours = package.join("Data/com.apple.CoreML/weights/weight.bin");
    if ours.exists() {
        assert!(
            std::fs::read(&ours).unwrap()
                == std::fs::read(dest.join("weights/weight.bin")).unwrap(),
            "{}: weight.bin differs from the package's",
            dest.display()
        );
    }
    let text = std::fs::read_to_string(dest.join("model.mil")).unwrap();
    let again =
        sd_mil::mil_text::program_text(&back.program, &mut sd_mil::mil_text::stored_offsets)
            .unwrap();
    assert!(
        text == again,
        "{}: model.mil does not print back identically",
        dest.display()
    );
}
