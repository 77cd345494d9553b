//! Tests of the graph utilities.

use super::*;
use crate::builder::FunctionBuilder;
use crate::{DType, Opset, TensorType};

/// x → a = relu(x) → b = sigmoid(a) → out = add(a, b); plus an unused `dead = exp(x)`.
fn sample() -> Function {
    let mut f = FunctionBuilder::new(Opset::CoreML7);
    let x = f.input("x", TensorType::new(DType::F32, [2, 3])).unwrap();
    let a = f.op("relu").input("x", &x).name("a").build_one().unwrap();
    let _dead = f.op("exp").input("x", &x).name("dead").build_one().unwrap();
    let b = f
        .op("sigmoid")
        .input("x", &a)
        .name("b")
        .build_one()
        .unwrap();
    let out = f
        .op("add")
        .input("x", &a)
        .input("y", &b)
        .name("out")
        .build_one()
        .unwrap();
    f.finish(&[&out]).unwrap()
}

fn names(f: &Function) -> Vec<&str> {
    f.operations.iter().map(|o| o.name.as_str()).collect()
}

#[test]
fn consumers_and_use_counts() {
    let f = sample();
    let c: Vec<&str> = consumers(&f, "a")
        .into_iter()
        .map(|i| f.operations[i].name.as_str())
        .collect();
    assert_eq!(c, ["b", "out"]);
    let counts = use_counts(&f);
    assert_eq!(counts["a"], 2);
    assert_eq!(counts["out"], 1);
    assert!(!counts.contains_key("dead"));
}

#[test]
fn topological_sort_restores_order_and_finds_cycles() {
    let mut f = sample();
    f.operations.reverse();
    sort_topologically(&mut f).unwrap();
    check_function(&f).unwrap();
    let n = names(&f);
    let pos = |s: &str| n.iter().position(|x| *x == s).unwrap();
    assert!(pos("a") < pos("b") && pos("b") < pos("out"));
    let mut cyclic = sample();
    let a = cyclic
        .operations
        .iter_mut()
        .find(|o| o.name == "a")
        .unwrap();
    a.inputs[0].1 = vec![Binding::Name("b".into())];
    assert!(topological_order(&cyclic).is_err());
}

#[test]
fn dead_code_elimination_removes_unused_ops() {
    let mut f = sample();
    assert_eq!(eliminate_dead_code(&mut f), 1);
    assert_eq!(names(&f), ["a", "b", "out"]);
    check_function(&f).unwrap();
}

#[test]
fn replace_uses_and_rename() {
    let mut f = sample();
    assert_eq!(replace_all_uses(&mut f, "b", "a"), 1);
    assert_eq!(consumers(&f, "b"), Vec::<usize>::new());
    let mut f = sample();
    rename(&mut f, "a", "activated").unwrap();
    assert!(f.value_type("a").is_none());
    assert_eq!(consumers(&f, "activated").len(), 2);
    check_function(&f).unwrap();
    assert!(matches!(
        rename(&mut f, "b", "out"),
        Err(ProgramError::DuplicateValue { .. })
    ));
    assert!(matches!(
        rename(&mut f, "nope", "z"),
        Err(ProgramError::UndefinedValue { .. })
    ));
}

#[test]
fn check_function_catches_mismatched_outputs() {
    let mut f = sample();
    f.operations[0].outputs[0].ty = TensorType::new(DType::F32, [3, 2]);
    assert!(matches!(
        check_function(&f),
        Err(ProgramError::OutputMismatch { .. })
    ));
    let mut f = sample();
    f.outputs.push("missing".into());
    assert!(matches!(
        check_function(&f),
        Err(ProgramError::UndefinedValue { .. })
    ));
}

#[test]
fn mil_text_prints_every_op() {
    let f = sample();
    let text = crate::mil_text::program_text(
        &crate::Program::with_main(f),
        &mut crate::mil_text::stored_offsets,
    )
    .unwrap();
    assert!(
        text.contains("func main<ios17>(tensor<fp32, [2, 3]> x)"),
        "{text}"
    );
    assert!(
        text.contains(
            "tensor<fp32, [2, 3]> out = add(x = a, y = b)[name = tensor<string, []>(\"out\")];"
        ),
        "{text}"
    );
}
