//! Numeric hygiene of `Model::predict` (issue #14): NaN and infinite inputs, token ids outside
//! the embedding table, and NaN made inside the model are errors that say what and where.

use sd_mil::builder::FunctionBuilder;
use sd_mil::{ConstValue, DType, Opset, Program, TensorType};
use sd_runtime::kernels::Registry;
use sd_runtime::{Cpu, LoadOptions, Model, RuntimeError, Tensor};
use std::collections::HashMap;

fn plan(f: sd_mil::Function) -> Model<Cpu> {
    let model = sd_mil::Model::from_program(Program::with_main(f)).unwrap();
    let main = model.program.main().unwrap().clone();
    Model::plan(
        &main,
        model.description,
        LoadOptions::default(),
        &Registry::default(),
    )
    .unwrap()
}

/// `ids` (int32 or fp32, cast to int32 as Apple's text encoders do) → gather from a table of
/// 10 rows.
fn embedding(ids_dtype: DType) -> Model<Cpu> {
    let mut b = FunctionBuilder::new(Opset::CoreML7);
    let ids = b
        .input("input_ids", TensorType::new(ids_dtype, [1, 3]))
        .unwrap();
    let ids = if ids_dtype == DType::I32 {
        ids
    } else {
        b.op("cast")
            .input("x", &ids)
            .param("dtype", "int32")
            .build_one()
            .unwrap()
    };
    let table = b
        .constant("table", ConstValue::f32([10, 4], &[0.25; 40]).unwrap())
        .unwrap();
    let y = b
        .op("gather")
        .input("x", &table)
        .input("indices", &ids)
        .param("axis", 0i32)
        .name("embed")
        .build_one()
        .unwrap();
    plan(b.finish(&[&y]).unwrap())
}

fn ids(dtype: DType, v: [i32; 3]) -> HashMap<String, Tensor> {
    let t = match dtype {
        DType::I32 => Tensor::i32([1, 3], v.to_vec()),
        _ => Tensor::f32([1, 3], v.iter().map(|&x| x as f32).collect()),
    };
    HashMap::from([("input_ids".to_string(), t)])
}

#[test]
fn token_ids_outside_the_table_are_refused() {
    for dtype in [DType::I32, DType::F32] {
        let m = embedding(dtype);
        m.predict(&ids(dtype, [0, 9, -10])).unwrap();
        for (bad, at) in [([0, 10, 1], 1usize), ([-11, 0, 0], 0), ([1, 2, 49407], 2)] {
            let e = m.predict(&ids(dtype, bad)).unwrap_err();
            assert!(
                matches!(&e, RuntimeError::InputValue { name, index, .. } if name == "input_ids" && *index == at),
                "{dtype:?} {bad:?}: {e}"
            );
            assert!(e.to_string().contains("vocabulary"), "{e}");
        }
    }
    let m = embedding(DType::F32);
    let mut half = ids(DType::F32, [0, 0, 0]);
    half.insert("input_ids".into(), Tensor::f32([1, 3], vec![0.0, 1.5, 2.0]));
    assert!(matches!(
        m.predict(&half),
        Err(RuntimeError::InputValue { index: 1, .. })
    ));
}

#[test]
fn non_finite_inputs_are_refused_and_nan_made_inside_is_traced_to_its_op() {
    let mut b = FunctionBuilder::new(Opset::CoreML7);
    let x = b.input("x", TensorType::new(DType::F32, [1, 4])).unwrap();
    let r = b
        .op("relu")
        .input("x", &x)
        .name("relu_0")
        .build_one()
        .unwrap();
    let s = b
        .op("sqrt")
        .input("x", &x)
        .name("root")
        .build_one()
        .unwrap();
    let y = b
        .op("add")
        .input("x", &r)
        .input("y", &s)
        .name("sum")
        .build_one()
        .unwrap();
    let m = plan(b.finish(&[&y]).unwrap());
    let input = |v: Vec<f32>| HashMap::from([("x".to_string(), Tensor::f32([1, 4], v))]);
    m.predict(&input(vec![0.0, 1.0, 4.0, 9.0])).unwrap();
    for (v, at) in [
        (vec![0.0, f32::NAN, 1.0, 1.0], 1usize),
        (vec![0.0, 1.0, 1.0, f32::INFINITY], 3),
        (vec![f32::NEG_INFINITY, 1.0, 1.0, 1.0], 0),
    ] {
        let e = m.predict(&input(v)).unwrap_err();
        assert!(
            matches!(&e, RuntimeError::InputValue { name, index, .. } if name == "x" && *index == at),
            "{e}"
        );
    }
    // sqrt(−1) is NaN: the error names the output and the op that made it.
    let nan_inside = input(vec![1.0, -1.0, 4.0, 9.0]);
    assert!(m.predict(&nan_inside).unwrap()["sum"].to_f32_vec()[1].is_nan());
    let e = m.predict_checked(&nan_inside).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(&e, RuntimeError::NonFiniteOutput { op, what: "NaN", .. } if op == "root"),
        "{msg}"
    );
    assert!(msg.contains("root") && msg.contains("sqrt"), "{msg}");
}
