//! MIL text in the syntax Apple's compiler writes into `model.mil`: hand-written fixtures
//! that use every catalogue op parse to the programs our writer's text gives; every literal
//! kind parses to its bytes; malformed text and malformed `.mlmodelc` folders give typed errors
//! (with a line and column, or naming the file), never a panic, a stack overflow or a hang.
//!
//! `tests/fixtures/mil_text/`:
//!
//! - `apple_ios16.mil`, `apple_ios17.mil`, `apple_ios18.mil`: the `every_op` programs of
//!   `catalogue_round_trip.rs` (spec 7, 8, 9) rewritten by hand into the other forms Apple's
//!   compiler output takes: coremlc `buildInfo` keys, decimal floats beside hexadecimal ones,
//!   attributes and parameters in any order, comments, line breaks and tabs inside ops, nested
//!   list literals, scalars spelled both ways, `BLOBFILE` references (into `weights/`).
//! - `every_op_spec7.mil`, `every_op_spec9.mil`: what our writer prints for those programs
//!   (`target/test-packages/catalogue/every_op_spec{7,9}.mlmodelc/model.mil`, written by
//!   `cargo test -p sd-mil --test catalogue_round_trip`), the reference the fixtures must equal.
//! - `weights/spec7.bin` (spec 7 and 8), `weights/spec9.bin`: those models' `weight.bin`.
//!
//! When `every_op` changes, copy the new `model.mil` and `weight.bin` files over the reference
//! ones and make the same change to the `apple_*` fixtures (the drift test says when).

mod common;

use half::{bf16, f16};
use sd_mil::blob::BlobFile;
use sd_mil::compiled::{read_compiled, write_compiled};
use sd_mil::mil_text::{TextError, parse_program, program_text, stored_offsets};
use sd_mil::package::WriteOptions;
use sd_mil::{ConstValue, Model, Opset, Program, catalogue};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The BLOBFILE path every fixture uses.
const WEIGHT_PATH: &str = "@model_path/weights/weight.bin";

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mil_text")
}

fn read_fixture(name: &str) -> String {
    let p = fixture_dir().join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A resolver that maps [`WEIGHT_PATH`] to `weights` (opened once) and refuses anything else.
fn resolver(weights: &Path) -> impl FnMut(&str) -> Result<Arc<BlobFile>, String> + use<> {
    let weights = weights.to_path_buf();
    let mut opened: Option<Arc<BlobFile>> = None;
    move |path: &str| {
        if path != WEIGHT_PATH {
            return Err(format!("no weight file `{path}` here"));
        }
        if let Some(f) = &opened {
            return Ok(f.clone());
        }
        let f = Arc::new(BlobFile::open(&weights).map_err(|e| e.to_string())?);
        opened = Some(f.clone());
        Ok(f)
    }
}

fn parse_with(text: &str, weights: &str, what: &str) -> Program {
    let mut resolve = resolver(&fixture_dir().join("weights").join(weights));
    parse_program(text, &mut resolve).unwrap_or_else(|e| panic!("{what}:{e}"))
}

/// Parses text that needs no weights.
fn parse(text: &str) -> Result<Program, TextError> {
    parse_program(text, &mut |p: &str| Err(format!("no weights for {p}")))
}

struct Fixture {
    file: &'static str,
    opset: Opset,
    version: &'static str,
    reference: &'static str,
    weights: &'static str,
    /// Surface forms the file must keep using (looked for with all whitespace removed), so
    /// that an edit cannot quietly turn it into our writer's output.
    forms: &'static [&'static str],
}

const FIXTURES: [Fixture; 3] = [
    Fixture {
        file: "apple_ios16.mil",
        opset: Opset::CoreML6,
        version: "program(1.0)",
        reference: "every_op_spec7.mil",
        weights: "spec7.bin",
        forms: &[
            "//",
            "[val=tensor<",
            "([[[[0.4207]],",
            "([[0,1],[0,3]])",
            "tensor<fp16,[]>(0.001)",
            "tensor<fp16,[]>(1e-05)",
            "tensor<fp16,[]>(0x1.5p-17)",
            "tensor<fp32,[]>(2.0)",
            "select(cond=logical_not_0,b=add_0,a=x)",
            "offset=tensor<uint64,[]>(64)",
            "\"coremlc-component-MIL\"",
        ],
    },
    Fixture {
        file: "apple_ios17.mil",
        opset: Opset::CoreML7,
        version: "program(1.0)",
        reference: "every_op_spec7.mil",
        weights: "spec7.bin",
        forms: &[
            "//",
            "[val=tensor<",
            "([[[[4.207E-1]],",
            "tensor<fp16,[]>(1.0E-3)",
            "tensor<fp16,[]>(0x1.064p-10)",
            "funcmain<ios17>(",
            "\"coremlc-version\"",
        ],
    },
    Fixture {
        file: "apple_ios18.mil",
        opset: Opset::CoreML8,
        version: "program(1.3)",
        reference: "every_op_spec9.mil",
        weights: "spec9.bin",
        forms: &[
            "//",
            "[val=fp16(",
            "=fp16(0.25)",
            "=fp16(1e-05)",
            "=fp16(0x1.5p-17)",
            "=fp32(2.0)",
            "val=tensor<int32,[]>(1)",
            "([[0,1],[0,3]])",
            "BLOBFILE(offset=uint64(3968),path=string(",
            "dict<string,string>",
            "\"coremlc-component-MIL\",\"3510.2.1\"",
        ],
    },
];

fn squeezed(text: &str) -> String {
    text.split_whitespace().collect()
}

fn model(mut program: Program, build_info: &Program) -> Model {
    program.build_info = build_info.build_info.clone();
    Model::from_program(program).unwrap()
}

fn set_opset(program: &mut Program, opset: Opset) {
    for f in program.functions.values_mut() {
        f.opset = opset;
    }
}

#[test]
fn apple_syntax_fixtures_cover_the_catalogue_and_equal_the_every_op_programs() {
    for fx in &FIXTURES {
        let text = read_fixture(fx.file);
        let program = parse_with(&text, fx.weights, fx.file);
        sd_mil::graph::check_program(&program).unwrap_or_else(|e| panic!("{}: {e}", fx.file));
        let main = program.main().unwrap();
        assert_eq!(main.opset, fx.opset, "{}", fx.file);
        assert!(
            text.contains(&format!("\n{}\n", fx.version)),
            "{}: not {}",
            fx.file,
            fx.version
        );
        for key in ["coremlc-component-MIL", "coremlc-version"] {
            assert!(program.build_info.contains_key(key), "{}: {key}", fx.file);
        }

        // Every op of the catalogue that exists in the opset appears (so that the fixture's
        // coverage cannot shrink unnoticed), and nothing the opset lacks.
        let used: BTreeSet<&str> = main.operations.iter().map(|o| o.op_type.as_str()).collect();
        let missing: Vec<&str> = catalogue::all()
            .filter(|s| s.exists_in(fx.opset) && !used.contains(s.name))
            .map(|s| s.name)
            .collect();
        assert!(missing.is_empty(), "{}: ops missing: {missing:?}", fx.file);
        for op in &used {
            assert!(
                catalogue::lookup(op, fx.opset).is_some(),
                "{}: `{op}` is not an op of {:?}",
                fx.file,
                fx.opset
            );
        }

        // The same program our writer's text for every_op gives.
        let mut reference = parse_with(&read_fixture(fx.reference), fx.weights, fx.reference);
        set_opset(&mut reference, fx.opset);
        let expected = model(reference, &program);
        let got = Model::from_program(program.clone()).unwrap();
        common::assert_models_equal(&expected, &got);

        // Hand-written, not our writer's output: it prints differently, and keeps its forms.
        let printed = program_text(&program, &mut stored_offsets).unwrap();
        assert_ne!(printed, text, "{}", fx.file);
        let flat = squeezed(&text);
        for form in fx.forms {
            assert!(flat.contains(form), "{}: no longer uses `{form}`", fx.file);
        }

        // Windows line ends change nothing.
        let crlf = parse_with(&text.replace('\n', "\r\n"), fx.weights, fx.file);
        common::assert_models_equal(&got, &Model::from_program(crlf).unwrap());

        // As the model.mil of a compiled model: read_compiled gives the same model.
        let dir = common::scratch_dir(&format!("mil_text_syntax/{}", fx.file));
        let dest = dir.join("Fixture.mlmodelc");
        write_compiled(&expected, &dest, WriteOptions::default()).unwrap();
        assert!(
            std::fs::read(dest.join("weights/weight.bin")).unwrap()
                == std::fs::read(fixture_dir().join("weights").join(fx.weights)).unwrap(),
            "{}: weight.bin not copied as it is",
            fx.file
        );
        std::fs::write(dest.join("model.mil"), &text).unwrap();
        let back = read_compiled(&dest).unwrap_or_else(|e| panic!("{}: {e}", fx.file));
        common::assert_models_equal(&expected, &back);
    }
}

/// The reference files are what `catalogue_round_trip` writes today (checked when it has run:
/// `cargo test -p sd-mil` runs it first).
#[test]
fn reference_texts_match_what_catalogue_round_trip_writes() {
    let out = common::root().join("target/test-packages/catalogue");
    for (spec, reference, weights) in [
        (7, "every_op_spec7.mil", "spec7.bin"),
        (9, "every_op_spec9.mil", "spec9.bin"),
    ] {
        let dir = out.join(format!("every_op_spec{spec}.mlmodelc"));
        let (Ok(text), Ok(bin)) = (
            std::fs::read_to_string(dir.join("model.mil")),
            std::fs::read(dir.join("weights/weight.bin")),
        ) else {
            eprintln!("{}: not written yet, nothing to compare", dir.display());
            continue;
        };
        let hint = "every_op changed: update tests/fixtures/mil_text (see this file's doc)";
        assert!(
            bin == std::fs::read(fixture_dir().join("weights").join(weights)).unwrap(),
            "{reference}: weight.bin differs; {hint}"
        );
        let mut generated = parse_with(&text, weights, "generated");
        let mut ours = parse_with(&read_fixture(reference), weights, reference);
        generated.build_info.clear();
        ours.build_info.clear();
        common::assert_models_equal(
            &Model::from_program(generated).unwrap(),
            &Model::from_program(ours).unwrap(),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Literal kinds.

/// A program of one const whose value is written `literal` with type `ty` (`ty` in MIL 1.3
/// spelling; `tensor<T, []>` for the 1.0 form is made from it).
fn one_const(ty: &str, literal: &str, v13: bool) -> String {
    let (version, opset, string) = if v13 {
        ("1.3", "ios18", "string")
    } else {
        ("1.0", "ios16", "tensor<string, []>")
    };
    let ty = if !v13 && !ty.starts_with("tensor<") {
        format!("tensor<{ty}, []>")
    } else {
        ty.to_string()
    };
    format!(
        "program({version})\n{{\n    func main<{opset}>() {{\n        {ty} v = const()[name = {string}(\"v\"), val = {ty}({literal})];\n    }} -> (v);\n}}\n"
    )
}

fn const_of(text: &str) -> Result<ConstValue, TextError> {
    let p = parse(text)?;
    let op = &p.main().unwrap().operations[0];
    Ok(op.attributes["val"].clone())
}

fn le16(v: &[u16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn h(v: f64) -> u16 {
    f16::from_f64(v).to_bits()
}

#[test]
fn every_literal_kind_parses_to_its_bytes() {
    let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let f64s = |v: &[f64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let ints = |v: &[i64], w: usize| {
        v.iter()
            .flat_map(|x| x.to_le_bytes()[..w].to_vec())
            .collect::<Vec<u8>>()
    };
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        // fp16: hexadecimal (exact), decimal, subnormal, extremes, signed zero, inf.
        ("fp16", "0x1p-1", le16(&[0x3800])),
        ("fp16", "0.5", le16(&[0x3800])),
        ("fp16", "0.125", le16(&[0x3000])),
        ("fp16", "500.0", le16(&[h(500.0)])),
        ("fp16", "-0x1.4p+3", le16(&[0xc900])),
        ("fp16", "0x1.5p-17", le16(&[0x00a8])),
        ("fp16", "1e-05", le16(&[0x00a8])),
        ("fp16", "0x1p-24", le16(&[0x0001])),
        ("fp16", "65504.0", le16(&[0x7bff])),
        ("fp16", "-0x0p+0", le16(&[0x8000])),
        ("fp16", "inf", le16(&[0x7c00])),
        ("fp16", "-inf", le16(&[0xfc00])),
        (
            "tensor<fp16, [3]>",
            "[0x1p+0, -2.0, 0.0010004]",
            le16(&[0x3c00, 0xc000, 0x1419]),
        ),
        // bf16.
        ("bf16", "0x1.8p+0", le16(&[0x3fc0])),
        (
            "bf16",
            "3.140625",
            le16(&[bf16::from_f64(3.140625).to_bits()]),
        ),
        ("bf16", "-inf", le16(&[0xff80])),
        // fp32.
        ("fp32", "0x1.99999ap-4", f32s(&[0.1])),
        ("fp32", "0.1", f32s(&[0.1])),
        ("fp32", "1.5", f32s(&[1.5])),
        ("fp32", "0x1.fffffep+127", f32s(&[f32::MAX])),
        ("fp32", "0x1p-149", f32s(&[f32::from_bits(1)])),
        ("fp32", "-inf", f32s(&[f32::NEG_INFINITY])),
        (
            "tensor<fp32, [2, 2]>",
            "[[1.0, 2.0], [0x1.8p+1, 4e0]]",
            f32s(&[1.0, 2.0, 3.0, 4.0]),
        ),
        // fp64.
        ("fp64", "0x1.999999999999ap-4", f64s(&[0.1])),
        ("fp64", "0.1", f64s(&[0.1])),
        ("fp64", "1e-300", f64s(&[1e-300])),
        ("fp64", "0x1p-1074", f64s(&[f64::from_bits(1)])),
        ("fp64", "inf", f64s(&[f64::INFINITY])),
        // Integers, at the ends of their ranges.
        ("int8", "-128", vec![0x80]),
        ("tensor<int8, [3]>", "[-128, 0, 127]", vec![0x80, 0, 0x7f]),
        ("int16", "-32768", ints(&[-32768], 2)),
        ("tensor<int16, [2]>", "[-1, 32767]", ints(&[-1, 32767], 2)),
        ("int32", "-1", ints(&[-1], 4)),
        (
            "tensor<int32, [2]>",
            "[-2147483648, 2147483647]",
            ints(&[-2147483648, 2147483647], 4),
        ),
        (
            "tensor<int64, [2]>",
            "[-9223372036854775808, 9223372036854775807]",
            ints(&[i64::MIN, i64::MAX], 8),
        ),
        ("int32", "0x7f", ints(&[127], 4)),
        ("uint8", "255", vec![255]),
        ("tensor<uint16, [2]>", "[0, 65535]", vec![0, 0, 0xff, 0xff]),
        ("uint32", "4294967295", vec![0xff; 4]),
        ("uint64", "18446744073709551615", vec![0xff; 8]),
        ("uint64", "64", ints(&[64], 8)),
        // Booleans, one byte each.
        ("bool", "true", vec![1]),
        ("bool", "false", vec![0]),
        ("tensor<bool, [3]>", "[true, false, true]", vec![1, 0, 1]),
        // Sub-byte integers, packed least significant bits first.
        (
            "tensor<uint1, [8]>",
            "[1, 0, 1, 1, 0, 0, 1, 0]",
            vec![0b0100_1101],
        ),
        ("tensor<uint2, [4]>", "[3, 0, 1, 2]", vec![0b1001_0011]),
        ("tensor<uint3, [3]>", "[7, 1, 5]", vec![0b0100_1111, 0b1]),
        ("tensor<uint4, [3]>", "[1, 15, 7]", vec![0xf1, 0x07]),
        ("tensor<uint6, [2]>", "[63, 1]", vec![0b0111_1111, 0]),
        ("tensor<int4, [4]>", "[-8, 7, -1, 0]", vec![0x78, 0x0f]),
        (
            "tensor<int4, [2, 2]>",
            "[[-8, 7], [-1, 0]]",
            vec![0x78, 0x0f],
        ),
    ];
    let mut n = 0;
    for (ty, literal, bytes) in &cases {
        for v13 in [false, true] {
            let text = one_const(ty, literal, v13);
            let v = const_of(&text).unwrap_or_else(|e| panic!("{ty}({literal}): {e}\n{text}"));
            assert_eq!(
                v.bytes().unwrap().as_ref(),
                bytes.as_slice(),
                "{ty}({literal}), MIL {}",
                if v13 { "1.3" } else { "1.0" }
            );
            n += 1;
        }
    }
    // NaN: any quiet NaN of the width.
    for (ty, check) in [
        (
            "fp16",
            (|b: &[u8]| f16::from_le_bytes([b[0], b[1]]).is_nan()) as fn(&[u8]) -> bool,
        ),
        ("bf16", |b| bf16::from_le_bytes([b[0], b[1]]).is_nan()),
        ("fp32", |b| {
            f32::from_le_bytes(b.try_into().unwrap()).is_nan()
        }),
        ("fp64", |b| {
            f64::from_le_bytes(b.try_into().unwrap()).is_nan()
        }),
    ] {
        let v = const_of(&one_const(ty, "nan", true)).unwrap();
        assert!(check(&v.bytes().unwrap()), "{ty}(nan)");
        n += 1;
    }
    // Strings: escapes, `\u{…}`, raw UTF-8, empty, and string tensors.
    for (literal, want) in [
        (r#""plain""#, vec!["plain"]),
        (r#""a\"b\\c\nd\te\rf""#, vec!["a\"b\\c\nd\te\rf"]),
        (r#""caf\u{e9} \u{1F600}""#, vec!["café 😀"]),
        (r#""日本語 ✓""#, vec!["日本語 ✓"]),
        (r#""""#, vec![""]),
        (r#""@model_path/weights/weight.bin""#, vec![WEIGHT_PATH]),
    ] {
        for v13 in [false, true] {
            let v = const_of(&one_const("string", literal, v13)).unwrap();
            assert_eq!(v.strings().unwrap(), want.as_slice(), "{literal}");
            n += 1;
        }
    }
    let v = const_of(&one_const("tensor<string, [2]>", r#"["a", "b\n"]"#, true)).unwrap();
    assert_eq!(v.strings().unwrap(), ["a", "b\n"]);
    n += 1;
    eprintln!("{n} literal cases");
    assert!(n >= 100);
}

// ---------------------------------------------------------------------------------------------
// Malformed text.

/// A small valid program with every kind of token: buildInfo, inputs, a BLOBFILE weight,
/// scalar and list literals, inline values, a tuple, two outputs from one op.
const SMALL: &str = r#"program(1.3)
[buildInfo = dict<string, string>({{"coremlc-component-MIL", "3510.2.1"}, {"coremlc-version", "3505.4.1"}})]
{
    func main<ios18>(tensor<fp16, [1, 4, 8, 8]> x, tensor<int32, [1, 6]> ids) {
        tensor<fp16, [8, 4, 3, 3]> w = const()[name = string("w"), val = tensor<fp16, [8, 4, 3, 3]>(BLOBFILE(path = string("@model_path/weights/weight.bin"), offset = uint64(64)))];
        tensor<int32, [2]> sizes = const()[name = string("sizes"), val = tensor<int32, [2]>([4, 4])];
        tensor<fp16, [1, 8, 8, 8]> c = concat(axis = int32(1), interleave = bool(false), values = (x, x))[name = string("c")];
        tensor<fp16, [1, 4, 8, 8]> a, tensor<fp16, [1, 4, 8, 8]> b = split(axis = int32(1), split_sizes = sizes, x = c)[name = string("split")];
        tensor<fp16, [1, 8, 8, 8]> y = conv(pad_type = string("same"), weight = w, x = a)[name = string("y")];
        fp16 eps = const()[val = fp16(0x1.5p-17), name = string("eps")];
        tensor<fp16, [1, 8, 8, 8]> z = add(x = y, y = eps)[name = string("z")];
    } -> (z);
}"#;

fn parse_small(text: &str) -> Result<Program, TextError> {
    let mut resolve = resolver(&fixture_dir().join("weights/spec9.bin"));
    parse_program(text, &mut resolve)
}

/// Checks that an error points into the text: line 1 … number of lines, column 1 … one past
/// the end of that line.
fn assert_position(text: &str, e: &TextError, what: &str) {
    assert!(e.line >= 1 && e.column >= 1, "{what}: {e}");
    let lines: Vec<&str> = text.split('\n').collect();
    let line = lines
        .get(e.line as usize - 1)
        .unwrap_or_else(|| panic!("{what}: line {} of {}: {e}", e.line, lines.len()));
    assert!(
        e.column as usize <= line.chars().count() + 1,
        "{what}: column {} of a {}-character line: {e}",
        e.column,
        line.chars().count()
    );
}

fn assert_err(text: &str, what: &str, reason: &str) -> TextError {
    let e = match parse_small(text) {
        Ok(_) => panic!("{what}: parsed\n{text}"),
        Err(e) => e,
    };
    assert_position(text, &e, what);
    assert!(
        e.reason.contains(reason),
        "{what}: `{}` does not mention `{reason}`",
        e.reason
    );
    e
}

/// SMALL with `from` replaced by `to` (which must occur).
fn small_with(from: &str, to: &str) -> String {
    assert!(SMALL.contains(from), "{from}");
    SMALL.replacen(from, to, 1)
}

/// A program whose `main` has the one input `x` of type `ty` and returns it through `relu`.
fn with_input(ty: &str) -> String {
    format!(
        "program(1.3)\n{{\n    func main<ios18>({ty} x) {{\n        {ty} y = relu(x = x)[name = string(\"y\")];\n    }} -> (y);\n}}\n"
    )
}

/// A program of one op `line` in `main` (no inputs).
fn with_op(line: &str) -> String {
    format!("program(1.3)\n{{\n    func main<ios18>() {{\n        {line}\n    }} -> (v);\n}}\n")
}

/// A deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn the_small_program_is_valid() {
    let p = parse_small(SMALL).unwrap();
    sd_mil::graph::check_program(&p).unwrap();
    assert_eq!(p.main().unwrap().operations.len(), 7);
}

#[test]
fn every_truncation_of_a_valid_program_is_an_error() {
    let text = SMALL.trim_end();
    for end in 0..text.len() {
        let prefix = &text[..end];
        match parse_small(prefix) {
            Ok(_) => panic!("the first {end} bytes parsed:\n{prefix}"),
            Err(e) => assert_position(prefix, &e, &format!("first {end} bytes")),
        }
    }
    eprintln!("{} truncations", text.len());
}

#[test]
fn malformed_text_gives_errors_at_a_line_and_column() {
    let deep_list = format!("{}1.0{}", "[".repeat(10_000), "]".repeat(10_000));
    let cases: Vec<(&str, String, &str)> = vec![
        ("empty text", String::new(), "expected `program`"),
        (
            "only a comment",
            "// nothing here\n".into(),
            "expected `program`",
        ),
        ("no version", "program\n{\n}\n".into(), "expected `(`"),
        (
            "MIL 2",
            small_with("program(1.3)", "program(2.0)"),
            "MIL version 1.x",
        ),
        ("no body", "program(1.3)\n".into(), "expected `{`"),
        (
            "unknown program attribute",
            small_with("[buildInfo", "[buildInformation"),
            "unknown program attribute",
        ),
        (
            "buildInfo not a dict",
            small_with("dict<string, string>({{", "string(\"x\")]\n//").replace("\n//", "\n"),
            "dict<string, string>",
        ),
        (
            "buildInfo of int32 values",
            small_with("dict<string, string>", "dict<string, int32>"),
            "only dict<string, string>",
        ),
        (
            "dict of dicts",
            small_with("dict<string, string>", "dict<dict<string, string>, string>"),
            "only dict<string, string>",
        ),
        (
            "unknown dtype",
            with_input("tensor<fp12, [1, 4]>"),
            "unknown element type `fp12`",
        ),
        (
            "unknown type",
            with_input("float16"),
            "unknown type `float16`",
        ),
        (
            "dynamic shape",
            with_input("tensor<fp16, [1, ?]>"),
            "unexpected character '?'",
        ),
        (
            "named dimension",
            with_input("tensor<fp16, [1, batch]>"),
            "shapes must be static",
        ),
        (
            "negative dimension",
            with_input("tensor<fp16, [1, -4]>"),
            "shapes must be static",
        ),
        (
            "shape overflow",
            with_input("tensor<fp16, [4294967296, 4294967296, 4294967296]>"),
            "too many elements",
        ),
        (
            "dimension beyond usize",
            with_input("tensor<fp16, [18446744073709551616]>"),
            "shapes must be static",
        ),
        (
            "too many elements",
            with_input("tensor<fp16, [1048576, 1048577]>"),
            "too many elements",
        ),
        (
            "empty dimension",
            with_input("tensor<fp16, [1, , 4]>"),
            "expected a dimension",
        ),
        (
            "list type",
            with_input("list<tensor<fp16, [1]>, 2>"),
            "not supported",
        ),
        (
            "state type",
            with_input("state<tensor<fp16, [1]>>"),
            "not supported",
        ),
        (
            "dict-typed op output",
            with_op("dict<string, string> v = const()[name = string(\"v\")];"),
            "must be a tensor",
        ),
        (
            "more elements than the type holds",
            small_with(
                "tensor<int32, [2]>([4, 4])",
                "tensor<int32, [2]>([4, 4, 4])",
            ),
            "more elements than the type holds",
        ),
        (
            "fewer elements than the type holds",
            small_with("tensor<int32, [2]>([4, 4])", "tensor<int32, [2]>([4])"),
            "1 elements for tensor<int32, [2]>",
        ),
        (
            "a scalar for a tensor",
            small_with("tensor<int32, [2]>([4, 4])", "tensor<int32, [2]>(4)"),
            "1 elements",
        ),
        (
            "string for an integer",
            small_with(
                "axis = int32(1), interleave",
                "axis = int32(\"1\"), interleave",
            ),
            "a string is not a int32 literal",
        ),
        (
            "number for a bool",
            small_with("bool(false)", "bool(0)"),
            "a number is not a bool literal",
        ),
        (
            "bool for a float",
            small_with("fp16(0x1.5p-17)", "fp16(true)"),
            "a bool is not a fp16 literal",
        ),
        (
            "number for a string",
            small_with("string(\"same\")", "string(1)"),
            "non-string element",
        ),
        (
            "float for an integer",
            small_with(
                "axis = int32(1), interleave",
                "axis = int32(1.5), interleave",
            ),
            "not an integer",
        ),
        (
            "float junk",
            small_with("fp16(0x1.5p-17)", "fp16(0x1.5q7)"),
            "is not a number",
        ),
        (
            "hex float without exponent digits",
            small_with("fp16(0x1.5p-17)", "fp16(0x1p)"),
            "is not a number",
        ),
        (
            "two dots",
            small_with("fp16(0x1.5p-17)", "fp16(1..2)"),
            "is not a number",
        ),
        (
            "hex float of 60 mantissa bits",
            small_with("fp16(0x1.5p-17)", "fp16(0x1.23456789abcdefp0)"),
            "is not a number",
        ),
        (
            "fp8 literal",
            small_with(
                "fp16 eps = const()[val = fp16(0x1.5p-17)",
                "fp8e4m3fn eps = const()[val = fp8e4m3fn(0.5)",
            ),
            "literals are not supported",
        ),
        (
            "int8 out of range",
            small_with("bool(false)", "int8(128)"),
            "128 does not fit int8",
        ),
        (
            "uint8 negative",
            small_with("bool(false)", "uint8(-1)"),
            "-1 does not fit uint8",
        ),
        (
            "uint64 out of range",
            small_with("uint64(64)", "uint64(18446744073709551616)"),
            "does not fit uint64",
        ),
        (
            "int64 out of range",
            small_with("bool(false)", "int64(-9223372036854775809)"),
            "does not fit int64",
        ),
        (
            "int4 out of range",
            small_with("bool(false)", "int4(8)"),
            "8 does not fit int4",
        ),
        (
            "uint4 out of range",
            small_with("bool(false)", "uint4(16)"),
            "16 does not fit uint4",
        ),
        (
            "uint1 out of range",
            small_with("bool(false)", "uint1(2)"),
            "2 does not fit uint1",
        ),
        (
            "integer too long for any width",
            small_with("bool(false)", &format!("int32({})", "9".repeat(60))),
            "not an integer",
        ),
        (
            "bad escape",
            small_with("string(\"same\")", "string(\"sa\\qme\")"),
            "unknown escape",
        ),
        (
            "escape at the end of the text",
            format!("{}\\", &SMALL[..SMALL.find("same").unwrap() + 4]),
            "unterminated string",
        ),
        (
            "bad \\u escape",
            small_with("string(\"same\")", "string(\"\\u{110000}\")"),
            "bad \\u{…} escape",
        ),
        (
            "\\u escape without digits",
            small_with("string(\"same\")", "string(\"\\u{}\")"),
            "bad \\u{…} escape",
        ),
        (
            "\\u escape unclosed",
            small_with("string(\"same\")", "string(\"\\u{41\")"),
            "bad \\u{…} escape",
        ),
        (
            "surrogate \\u escape",
            small_with("string(\"same\")", "string(\"\\u{d800}\")"),
            "bad \\u{…} escape",
        ),
        (
            "unterminated string",
            small_with("string(\"same\")", "string(\"same)"),
            "unterminated string",
        ),
        (
            "unexpected character",
            small_with("x = a)", "x = $a)"),
            "unexpected character",
        ),
        (
            "non-ASCII identifier",
            small_with("x = a)", "x = é)"),
            "unexpected character",
        ),
        (
            "duplicate parameter",
            small_with("x = y, y = eps", "x = y, x = eps"),
            "parameter `x` is bound twice",
        ),
        (
            "duplicate attribute",
            small_with(
                "[name = string(\"z\")]",
                "[name = string(\"z\"), keep = bool(true), keep = bool(false)]",
            ),
            "attribute `keep` is given twice",
        ),
        (
            "missing name attribute",
            small_with("[name = string(\"z\")]", ""),
            "`add` op has no `name` attribute",
        ),
        (
            "empty attribute list",
            small_with("[name = string(\"z\")]", "[]"),
            "expected an attribute name",
        ),
        (
            "name not a string",
            small_with("[name = string(\"z\")]", "[name = int32(1)]"),
            "must be a string",
        ),
        (
            "name a string tensor",
            small_with(
                "[name = string(\"z\")]",
                "[name = tensor<string, [1]>([\"z\"])]",
            ),
            "must be a string",
        ),
        (
            "unknown opset",
            small_with("<ios18>", "<ios99>"),
            "unknown opset `ios99`",
        ),
        (
            "no opset",
            small_with("main<ios18>", "main"),
            "has no opset",
        ),
        (
            "opset not a name",
            small_with("<ios18>", "<18>"),
            "expected an opset",
        ),
        (
            "nested block",
            small_with(
                "[name = string(\"z\")];",
                "[name = string(\"z\")] {\n        }\n;",
            ),
            "nested blocks",
        ),
        (
            "block where an op goes",
            small_with("        fp16 eps", "        {\n        }\n        fp16 eps"),
            "expected a type",
        ),
        (
            "missing `;`",
            small_with("[name = string(\"z\")];", "[name = string(\"z\")]"),
            "expected `;`",
        ),
        (
            "missing outputs",
            small_with(" -> (z);", ";"),
            "expected `-> (outputs)`",
        ),
        (
            "output not a name",
            small_with("-> (z)", "-> (1)"),
            "expected an output name",
        ),
        (
            "unclosed function",
            SMALL
                .trim_end()
                .trim_end_matches('}')
                .trim_end()
                .trim_end_matches("-> (z);")
                .trim_end()
                .trim_end_matches('}')
                .to_string(),
            "is not closed",
        ),
        (
            "function defined twice",
            {
                let body = &SMALL[SMALL.find("    func").unwrap()..SMALL.rfind('}').unwrap()];
                small_with(body, &format!("{body}{body}"))
            },
            "function `main` is defined twice",
        ),
        (
            "text after the program",
            format!("{SMALL}\n}}"),
            "expected the end of the text",
        ),
        (
            "output without a name",
            small_with(
                "tensor<fp16, [1, 8, 8, 8]> z = add",
                "tensor<fp16, [1, 8, 8, 8]> = add",
            ),
            "expected an output name",
        ),
        (
            "input without a type",
            small_with("tensor<int32, [1, 6]> ids", "ids"),
            "unknown type `ids`",
        ),
        (
            "parameter without a value",
            small_with("x = y, y = eps", "x = , y = eps"),
            "expected a value name or a literal",
        ),
        (
            "empty tuple",
            small_with("values = (x, x)", "values = ()"),
            "expected a value name or a literal",
        ),
        (
            "BLOBFILE with another path",
            small_with(
                "@model_path/weights/weight.bin",
                "@model_path/weights/other.bin",
            ),
            "no weight file",
        ),
        (
            "BLOBFILE path out of the model",
            small_with(
                "@model_path/weights/weight.bin",
                "@model_path/../../etc/passwd",
            ),
            "no weight file",
        ),
        (
            "BLOBFILE path not a string",
            small_with(
                "path = string(\"@model_path/weights/weight.bin\")",
                "path = int32(1)",
            ),
            "BLOBFILE takes path",
        ),
        (
            "BLOBFILE path a string tensor",
            small_with(
                "path = string(\"@model_path/weights/weight.bin\")",
                "path = tensor<string, [1]>([\"@model_path/weights/weight.bin\"])",
            ),
            "BLOBFILE takes path",
        ),
        (
            "BLOBFILE unknown key",
            small_with(
                "offset = uint64(64)",
                "offset = uint64(64), size = uint64(64)",
            ),
            "not `size`",
        ),
        (
            "BLOBFILE without offset",
            small_with(", offset = uint64(64)", ""),
            "needs both a path and an offset",
        ),
        (
            "BLOBFILE without path",
            small_with("path = string(\"@model_path/weights/weight.bin\"), ", ""),
            "needs both a path and an offset",
        ),
        (
            "BLOBFILE negative offset",
            small_with("uint64(64)", "int64(-64)"),
            "negative BLOBFILE offset -64",
        ),
        (
            "BLOBFILE negative uint64 offset",
            small_with("uint64(64)", "uint64(-64)"),
            "does not fit uint64",
        ),
        (
            "BLOBFILE offset a float",
            small_with("uint64(64)", "fp32(64.0)"),
            "BLOBFILE takes path",
        ),
        (
            "BLOBFILE offset beyond the file",
            small_with("uint64(64)", "uint64(1048576)"),
            "offset 1048576",
        ),
        (
            "BLOBFILE offset at the end of u64",
            small_with("uint64(64)", "uint64(18446744073709551615)"),
            "negative BLOBFILE offset",
        ),
        (
            "BLOBFILE offset not a blob",
            small_with("uint64(64)", "uint64(128)"),
            "sentinel",
        ),
        (
            "BLOBFILE misaligned offset",
            small_with("uint64(64)", "uint64(65)"),
            "offset 65",
        ),
        (
            "BLOBFILE in the header",
            small_with("uint64(64)", "uint64(0)"),
            "offset 0",
        ),
        (
            "BLOBFILE of the wrong dtype",
            small_with(
                "tensor<fp16, [8, 4, 3, 3]>(BLOBFILE",
                "tensor<fp32, [8, 4, 3, 3]>(BLOBFILE",
            ),
            "the value is (8, 4, 3, 3, fp32)",
        ),
        (
            "BLOBFILE of the wrong size",
            small_with(
                "tensor<fp16, [8, 4, 3, 3]>(BLOBFILE",
                "tensor<fp16, [8, 4, 3, 4]>(BLOBFILE",
            ),
            "holds 576 bytes",
        ),
        (
            "BLOBFILE of strings",
            small_with(
                "tensor<fp16, [8, 4, 3, 3]>(BLOBFILE",
                "tensor<string, [8, 4, 3, 3]>(BLOBFILE",
            ),
            "the value is",
        ),
        (
            "BLOBFILE in a BLOBFILE",
            small_with(
                "offset = uint64(64)",
                "offset = uint64(BLOBFILE(path = string(\"p\"), offset = uint64(64)))",
            ),
            "a BLOBFILE inside a BLOBFILE",
        ),
        (
            "BLOBFILE unclosed",
            small_with("offset = uint64(64)))]", "offset = uint64(64))]"),
            "expected `)`",
        ),
        (
            "list nested 10000 deep",
            small_with(
                "fp16(0x1.5p-17)",
                &format!("tensor<fp16, [1]>({deep_list})"),
            ),
            "nested too deeply",
        ),
        (
            "list nested 33 deep",
            small_with(
                "fp16(0x1.5p-17)",
                &format!("tensor<fp16, [1]>({}1.0{})", "[".repeat(33), "]".repeat(33)),
            ),
            "nested too deeply",
        ),
        (
            "`tensor<` 100000 times",
            with_input(&"tensor<".repeat(100_000)),
            "unknown element type `tensor`",
        ),
        (
            "`dict<` 100000 times",
            small_with("dict<string, string>", &"dict<".repeat(100_000)),
            "only dict<string, string>",
        ),
        (
            "`(` 100000 times",
            small_with("x = y, y = eps", &format!("x = {}", "(".repeat(100_000))),
            "expected a value name or a literal",
        ),
        (
            "`[` 100000 times",
            small_with("[name = string(\"z\")]", &"[".repeat(100_000)),
            "expected an attribute name",
        ),
        (
            "`{` 100000 times",
            format!("program(1.3)\n{}", "{".repeat(100_000)),
            "expected `func`",
        ),
        (
            "`-` 100000 times",
            small_with(
                "fp16(0x1.5p-17)",
                &format!("fp16({}1)", "-".repeat(100_000)),
            ),
            "",
        ),
        (
            "a 100000-digit float",
            small_with(
                "fp16(0x1.5p-17)",
                &format!("fp16(0x{})", "1".repeat(100_000)),
            ),
            "is not a number",
        ),
        (
            "a 100000-digit dimension",
            with_input(&format!("tensor<fp16, [{}]>", "9".repeat(100_000))),
            "shapes must be static",
        ),
    ];
    let mut n = 0;
    for (what, text, reason) in &cases {
        assert_err(text, what, reason);
        n += 1;
    }
    // Random bytes (as text, with invalid UTF-8 replaced) and random mutations of the small
    // program: errors point into the text; nothing panics; what parses also goes through the
    // checker without a panic.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let pieces = [
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        "<",
        ">",
        ",",
        "=",
        ";",
        "->",
        "\"",
        "\\",
        "//",
        "\n",
        "tensor<",
        "dict<",
        "BLOBFILE(",
        "fp16(",
        "0x1p",
        "-",
        "1e",
        "99999999999",
        "?",
        "é",
    ];
    for round in 0..3000 {
        let text = match round % 3 {
            0 => {
                let len = rng.below(300);
                let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            }
            _ => {
                let mut t = SMALL.to_string();
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(t.len());
                    let at = (0..=at).rev().find(|&i| t.is_char_boundary(i)).unwrap();
                    match rng.below(3) {
                        0 => {
                            let end = (at + 1 + rng.below(12)).min(t.len());
                            let end = (end..=t.len()).find(|&i| t.is_char_boundary(i)).unwrap();
                            t.replace_range(at..end, "");
                        }
                        1 => t.insert_str(at, pieces[rng.below(pieces.len())]),
                        _ => {
                            let end = (at + 1 + rng.below(40)).min(t.len());
                            let end = (end..=t.len()).find(|&i| t.is_char_boundary(i)).unwrap();
                            let copy = t[at..end].to_string();
                            t.insert_str(end, &copy);
                        }
                    }
                }
                t
            }
        };
        match parse_small(&text) {
            Err(e) => assert_position(&text, &e, &format!("round {round}")),
            Ok(p) => {
                let _ = sd_mil::graph::check_program(&p);
            }
        }
        n += 1;
    }
    eprintln!(
        "{} malformed cases, {} of them from the table",
        n,
        cases.len()
    );
    assert!(cases.len() >= 40);
}

/// Parseable programs at the edges of what the parser accepts go through the checker (which
/// computes with their shapes) without a panic.
#[test]
fn edge_programs_reach_the_checker_without_a_panic() {
    for ty in [
        "tensor<fp16, [0, 1099511627776]>",
        "tensor<fp16, [0, 18446744073709551615, 18446744073709551615]>",
        "tensor<fp16, [1099511627776]>",
        "tensor<fp16, [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]>",
        "tensor<bool, []>",
        "string",
    ] {
        if let Ok(p) = parse(&with_input(ty)) {
            let _ = sd_mil::graph::check_program(&p);
        }
    }
    for line in [
        "tensor<fp16, [0, 18446744073709551615]> v = reshape(x = tensor<fp16, [0]>([]), shape = tensor<int32, [2]>([0, -1]))[name = string(\"v\")];",
        "tensor<fp16, [2]> v = fill(shape = tensor<int64, [3]>([9223372036854775807, 9223372036854775807, 2]), value = fp16(1.0))[name = string(\"v\")];",
        "tensor<fp16, [2]> v = tile(x = tensor<fp16, [2]>([1.0, 2.0]), reps = tensor<int32, [1]>([2147483647]))[name = string(\"v\")];",
        "tensor<fp16, [2]> v = expand_dims(x = tensor<fp16, [2]>([1.0, 2.0]), axes = tensor<int32, [1]>([-2147483648]))[name = string(\"v\")];",
        "tensor<fp16, [2]> v = slice_by_index(x = tensor<fp16, [2]>([1.0, 2.0]), begin = tensor<int32, [1]>([-2147483648]), end = tensor<int32, [1]>([2147483647]), stride = tensor<int32, [1]>([-2147483648]))[name = string(\"v\")];",
        "tensor<fp16, [2]> v = unknown_op(x = tensor<fp16, [2]>([1.0, 2.0]))[name = string(\"v\")];",
        "tensor<fp16, [2]> v = const()[name = string(\"v\")];",
    ] {
        let text = with_op(line);
        let p = parse(&text).unwrap_or_else(|e| panic!("{line}: {e}"));
        let _ = sd_mil::graph::check_program(&p);
    }
}

// ---------------------------------------------------------------------------------------------
// Malformed compiled folders.

/// Runs `f` on another thread and gives its result, failing the test when it takes longer than
/// a generous limit (a read that blocks on a FIFO would).
fn without_hanging<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("{what}: no answer in 30 s (hung or panicked)"))
}

#[cfg(unix)]
fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    assert_eq!(rc, 0, "mkfifo {}", path.display());
}

type Corruption = Box<dyn Fn(&Path)>;

fn edit_text(file: &'static str, f: impl Fn(String) -> String + 'static) -> Corruption {
    Box::new(move |dir: &Path| {
        let p = dir.join(file);
        let t = std::fs::read_to_string(&p).unwrap();
        let new = f(t.clone());
        assert_ne!(new, t, "{file}: the edit changed nothing");
        std::fs::write(&p, new).unwrap();
    })
}

fn edit_bytes(file: &'static str, f: impl Fn(&mut Vec<u8>) + 'static) -> Corruption {
    Box::new(move |dir: &Path| {
        let p = dir.join(file);
        let mut b = std::fs::read(&p).unwrap();
        f(&mut b);
        std::fs::write(&p, b).unwrap();
    })
}

fn replace_with(file: &'static str, f: impl Fn(&Path) + 'static) -> Corruption {
    Box::new(move |dir: &Path| {
        let p = dir.join(file);
        std::fs::remove_file(&p).unwrap();
        f(&p);
    })
}

fn json_edit(f: impl Fn(&mut serde_json::Value) + 'static) -> Corruption {
    edit_text("metadata.json", move |t| {
        let mut v: serde_json::Value = serde_json::from_str(&t).unwrap();
        f(&mut v);
        serde_json::to_string_pretty(&v).unwrap()
    })
}

#[test]
fn malformed_compiled_folders_give_errors_naming_the_file() {
    let scratch = common::scratch_dir("mil_text_syntax/compiled");
    let model = common::linear_model();
    let valid = scratch.join("valid.mlmodelc");
    write_compiled(&model, &valid, WriteOptions::default()).unwrap();
    let back = read_compiled(&valid).unwrap();
    common::assert_models_equal(&model, &back);
    let data_len = std::fs::metadata(valid.join("coremldata.bin"))
        .unwrap()
        .len() as usize;
    assert!(valid.join("weights/weight.bin").is_file());
    let outside = scratch.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::copy(valid.join("model.mil"), outside.join("model.mil")).unwrap();
    std::fs::copy(valid.join("coremldata.bin"), outside.join("coremldata.bin")).unwrap();
    std::fs::copy(valid.join("weights/weight.bin"), outside.join("weight.bin")).unwrap();

    let mut cases: Vec<(String, &str, Corruption)> = Vec::new();
    // coremldata.bin: truncated, bad magic, lengths that do not fit, garbage protobuf.
    for len in [
        0,
        1,
        4,
        8,
        0x2b,
        0x4b,
        0x53,
        0x53 + 15,
        data_len - 17,
        data_len - 16,
        data_len - 1,
    ] {
        cases.push((
            format!("coremldata.bin truncated to {len} bytes"),
            "coremldata.bin",
            edit_bytes("coremldata.bin", move |b| b.truncate(len)),
        ));
    }
    cases.push((
        "coremldata.bin magic flipped".into(),
        "coremldata.bin",
        edit_bytes("coremldata.bin", |b| b[0] ^= 0xff),
    ));
    cases.push((
        "coremldata.bin magic of a protobuf".into(),
        "coremldata.bin",
        edit_bytes("coremldata.bin", |b| {
            b[..4].copy_from_slice(b"\x0a\x04\x08\x01")
        }),
    ));
    for len in [
        u64::MAX,
        u64::MAX / 2,
        1 << 40,
        (data_len - 0x53 - 16 + 1) as u64,
    ] {
        cases.push((
            format!("coremldata.bin description length {len}"),
            "coremldata.bin",
            edit_bytes("coremldata.bin", move |b| {
                b[0x4b..0x53].copy_from_slice(&len.to_le_bytes())
            }),
        ));
    }
    cases.push((
        "coremldata.bin garbage protobuf".into(),
        "coremldata.bin",
        edit_bytes("coremldata.bin", |b| {
            let end = b.len() - 16;
            b[0x53..end].fill(0xff);
        }),
    ));
    cases.push((
        "coremldata.bin protobuf of another message".into(),
        "coremldata.bin",
        edit_bytes("coremldata.bin", |b| {
            let end = b.len() - 16;
            for (i, x) in b[0x53..end].iter_mut().enumerate() {
                *x = if i % 2 == 0 { 0x0a } else { 0x7f };
            }
        }),
    ));
    cases.push((
        "coremldata.bin description of other inputs".into(),
        "coremldata.bin",
        edit_bytes("coremldata.bin", |b| {
            // The input feature's name `x` (field 1 of the first FeatureDescription) becomes `q`.
            let at = b.windows(3).position(|w| w == b"\x0a\x01x").unwrap();
            b[at + 2] = b'q';
        }),
    ));
    cases.push((
        "coremldata.bin missing".into(),
        "coremldata.bin",
        Box::new(|d: &Path| std::fs::remove_file(d.join("coremldata.bin")).unwrap()),
    ));
    cases.push((
        "coremldata.bin a directory".into(),
        "coremldata.bin",
        replace_with("coremldata.bin", |p| std::fs::create_dir(p).unwrap()),
    ));
    // metadata.json.
    cases.push((
        "metadata.json not JSON".into(),
        "metadata.json",
        edit_text("metadata.json", |t| t[..t.len() / 2].to_string()),
    ));
    cases.push((
        "metadata.json empty".into(),
        "metadata.json",
        edit_text("metadata.json", |_| String::new()),
    ));
    cases.push((
        "metadata.json an object".into(),
        "metadata.json",
        json_edit(|v| *v = v[0].clone()),
    ));
    cases.push((
        "metadata.json an empty array".into(),
        "metadata.json",
        json_edit(|v| *v = serde_json::json!([])),
    ));
    cases.push((
        "metadata.json two objects".into(),
        "metadata.json",
        json_edit(|v| *v = serde_json::json!([v[0].clone(), v[0].clone()])),
    ));
    cases.push((
        "metadata.json an array of a number".into(),
        "metadata.json",
        json_edit(|v| *v = serde_json::json!([1])),
    ));
    cases.push((
        "metadata.json wrong spec version".into(),
        "metadata.json",
        json_edit(|v| v[0]["specificationVersion"] = 4.into()),
    ));
    cases.push((
        "metadata.json spec version a string".into(),
        "metadata.json",
        json_edit(|v| v[0]["specificationVersion"] = "8".into()),
    ));
    cases.push((
        "metadata.json wrong input names".into(),
        "metadata.json",
        json_edit(|v| v[0]["inputSchema"][0]["name"] = "input_ids".into()),
    ));
    cases.push((
        "metadata.json an extra output".into(),
        "metadata.json",
        json_edit(|v| {
            let o = v[0]["outputSchema"][0].clone();
            v[0]["outputSchema"].as_array_mut().unwrap().push(o);
        }),
    ));
    cases.push((
        "metadata.json inputs not a list".into(),
        "metadata.json",
        json_edit(|v| v[0]["inputSchema"] = "x".into()),
    ));
    cases.push((
        "metadata.json input without a name".into(),
        "metadata.json",
        json_edit(|v| v[0]["inputSchema"][0] = serde_json::json!({"type": "MultiArray"})),
    ));
    cases.push((
        "metadata.json not UTF-8".into(),
        "metadata.json",
        edit_bytes("metadata.json", |b| b.insert(1, 0xff)),
    ));
    cases.push((
        "metadata.json a directory".into(),
        "metadata.json",
        replace_with("metadata.json", |p| std::fs::create_dir(p).unwrap()),
    ));
    // model.mil.
    cases.push((
        "model.mil syntax error".into(),
        "model.mil",
        edit_text("model.mil", |t| t.replacen(';', ":", 1)),
    ));
    cases.push((
        "model.mil empty".into(),
        "model.mil",
        edit_text("model.mil", |_| String::new()),
    ));
    cases.push((
        "model.mil truncated".into(),
        "model.mil",
        edit_text("model.mil", |t| t[..t.len() / 2].to_string()),
    ));
    cases.push((
        "model.mil not UTF-8".into(),
        "model.mil",
        edit_bytes("model.mil", |b| b.insert(10, 0xc0)),
    ));
    cases.push((
        "model.mil NUL bytes".into(),
        "model.mil",
        edit_bytes("model.mil", |b| b.insert(10, 0)),
    ));
    cases.push((
        "model.mil op of the wrong input type".into(),
        "model.mil",
        edit_text("model.mil", |t| t.replacen("weight = w,", "weight = x,", 1)),
    ));
    cases.push((
        "model.mil unknown op".into(),
        "model.mil",
        edit_text("model.mil", |t| t.replacen("= linear(", "= linear_v2(", 1)),
    ));
    cases.push((
        "model.mil other input names than coremldata.bin".into(),
        "coremldata.bin",
        edit_text("model.mil", |t| {
            t.replace("> x)", "> q)").replace("x = x)", "x = q)")
        }),
    ));
    for (what, path) in [
        ("climbing out", "@model_path/../../etc/passwd"),
        (
            "climbing out of weights",
            "@model_path/weights/../../outside/weight.bin",
        ),
        ("absolute", "/etc/passwd"),
        ("without @model_path", "weights/weight.bin"),
        ("@model_path alone", "@model_path/"),
        ("to a missing file", "@model_path/weights/missing.bin"),
        ("to a directory", "@model_path/weights"),
        ("to model.mil", "@model_path/model.mil"),
        ("with a NUL", "@model_path/weights/weight.bin\\u{0}"),
    ] {
        cases.push((
            format!("model.mil BLOBFILE path {what}"),
            "model.mil",
            edit_text("model.mil", move |t| t.replace(WEIGHT_PATH, path)),
        ));
    }
    cases.push((
        "model.mil BLOBFILE offset beyond weight.bin".into(),
        "model.mil",
        edit_text("model.mil", |t| t.replace("[]>(64)", "[]>(4096)")),
    ));
    cases.push((
        "model.mil missing".into(),
        "model.mil",
        Box::new(|d: &Path| std::fs::remove_file(d.join("model.mil")).unwrap()),
    ));
    cases.push((
        "model.mil a directory".into(),
        "model.mil",
        replace_with("model.mil", |p| std::fs::create_dir(p).unwrap()),
    ));
    // weights.
    cases.push((
        "weight.bin truncated".into(),
        "weight.bin",
        edit_bytes("weights/weight.bin", |b| b.truncate(100)),
    ));
    cases.push((
        "weight.bin header only".into(),
        "weight.bin",
        edit_bytes("weights/weight.bin", |b| b.truncate(64)),
    ));
    cases.push((
        "weight.bin bad version".into(),
        "weight.bin",
        edit_bytes("weights/weight.bin", |b| b[4] = 9),
    ));
    cases.push((
        "weight.bin bad sentinel".into(),
        "weight.bin",
        edit_bytes("weights/weight.bin", |b| b[64] ^= 0xff),
    ));
    cases.push((
        "weight.bin a directory".into(),
        "weight.bin",
        replace_with("weights/weight.bin", |p| std::fs::create_dir(p).unwrap()),
    ));
    cases.push((
        "weights missing".into(),
        "weight",
        Box::new(|d: &Path| std::fs::remove_dir_all(d.join("weights")).unwrap()),
    ));
    #[cfg(unix)]
    {
        use std::os::unix::fs::symlink;
        for (shown, file) in [
            ("model.mil", "model.mil"),
            ("coremldata.bin", "coremldata.bin"),
            ("weight.bin", "weights/weight.bin"),
        ] {
            let target = outside.join(shown);
            cases.push((
                format!("{shown} a link out of the folder"),
                shown,
                replace_with(file, move |p| symlink(&target, p).unwrap()),
            ));
        }
        cases.push((
            "model.mil a dangling link".into(),
            "model.mil",
            replace_with("model.mil", |p| symlink("nowhere.mil", p).unwrap()),
        ));
        cases.push((
            "model.mil a link to itself".into(),
            "model.mil",
            replace_with("model.mil", |p| symlink("model.mil", p).unwrap()),
        ));
        cases.push((
            "model.mil a link to /dev/zero".into(),
            "model.mil",
            replace_with("model.mil", |p| symlink("/dev/zero", p).unwrap()),
        ));
        cases.push((
            "model.mil a FIFO".into(),
            "model.mil",
            replace_with("model.mil", mkfifo),
        ));
        cases.push((
            "coremldata.bin a FIFO".into(),
            "coremldata.bin",
            replace_with("coremldata.bin", mkfifo),
        ));
        cases.push((
            "metadata.json a FIFO".into(),
            "metadata.json",
            replace_with("metadata.json", mkfifo),
        ));
        cases.push((
            "weight.bin a FIFO".into(),
            "weight.bin",
            replace_with("weights/weight.bin", mkfifo),
        ));
    }

    for (i, (what, file, corrupt)) in cases.iter().enumerate() {
        let dir = scratch.join(format!("case{i}.mlmodelc"));
        write_compiled(&model, &dir, WriteOptions::default()).unwrap();
        corrupt(&dir);
        let d = dir.clone();
        let result = without_hanging(what, move || {
            read_compiled(&d).map(drop).map_err(|e| e.to_string())
        });
        let message = match result {
            Ok(()) => panic!("{what}: read without an error"),
            Err(m) => m,
        };
        eprintln!("{what}: {message}");
        assert!(
            message.contains(file),
            "{what}: the error does not name {file}: {message}"
        );
    }
    eprintln!("{} malformed compiled folders", cases.len());
    assert!(cases.len() >= 40);
}
