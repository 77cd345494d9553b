//! Chunking and palettizing Apple's tiny UNet give what Apple's tools give.

use sd_compress::{PalettizeOptions, chunk, palettize};
use sd_mil::package::{WriteOptions, read_package, write_package};
use sd_mil::{Model, TensorType};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/apple-tiny/packages")
        .join(rel)
}

fn out_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/test-packages")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn histogram(m: &Model) -> BTreeMap<String, usize> {
    let mut h = BTreeMap::new();
    for op in &m.program.main().unwrap().operations {
        *h.entry(op.op_type.clone()).or_insert(0) += 1;
    }
    h
}

fn signature(list: &[sd_mil::FeatureDescription]) -> BTreeMap<String, TensorType> {
    list.iter()
        .map(|f| (f.name.clone(), f.tensor_type()))
        .collect()
}

#[test]
fn chunks_match_apples_chunk_unet() {
    let whole = read_package(shared(
        "split_einsum/Stable_Diffusion_version_sd-tiny_unet.mlpackage",
    ))
    .unwrap();
    let apple1 = read_package(shared(
        "split_einsum_chunk/Stable_Diffusion_version_sd-tiny_unet_chunk1.mlpackage",
    ))
    .unwrap();
    let apple2 = read_package(shared(
        "split_einsum_chunk/Stable_Diffusion_version_sd-tiny_unet_chunk2.mlpackage",
    ))
    .unwrap();
    let chunks = chunk(&whole).unwrap();
    assert_eq!(histogram(&chunks.first), histogram(&apple1));
    assert_eq!(histogram(&chunks.second), histogram(&apple2));
    assert_eq!(
        signature(&chunks.first.description.inputs),
        signature(&apple1.description.inputs)
    );
    assert_eq!(
        signature(&chunks.first.description.outputs),
        signature(&apple1.description.outputs)
    );
    assert_eq!(
        signature(&chunks.second.description.inputs),
        signature(&apple2.description.inputs)
    );
    assert_eq!(
        signature(&chunks.second.description.outputs),
        signature(&apple2.description.outputs)
    );
    let dir = out_dir("chunk");
    write_package(
        &chunks.first,
        dir.join("unet_chunk1.mlpackage"),
        WriteOptions::default(),
    )
    .unwrap();
    write_package(
        &chunks.second,
        dir.join("unet_chunk2.mlpackage"),
        WriteOptions::default(),
    )
    .unwrap();
}

#[test]
fn palettized_unet_matches_apple_6_bit_structure() {
    let mut m = read_package(shared(
        "split_einsum/Stable_Diffusion_version_sd-tiny_unet.mlpackage",
    ))
    .unwrap();
    let apple = read_package(shared(
        "split_einsum_q6/Stable_Diffusion_version_sd-tiny_unet.mlpackage",
    ))
    .unwrap();
    let report = palettize(&mut m.program, &PalettizeOptions::new(6)).unwrap();
    assert_eq!(histogram(&m), histogram(&apple));
    assert!(report.bytes_after * 2 < report.bytes_before, "{report:?}");
    let dir = out_dir("palettize");
    write_package(&m, dir.join("unet_q6.mlpackage"), WriteOptions::default()).unwrap();
    read_package(dir.join("unet_q6.mlpackage")).unwrap();
}

/// Dense values of an iOS16 `constexpr_lut_to_dense` op.
fn decode_lut(op: &sd_mil::Operation) -> Vec<f32> {
    let lut = op.attributes["lut"].to_f32_vec().unwrap();
    let n = op.attributes["shape"]
        .to_i64_vec()
        .unwrap()
        .iter()
        .product::<i64>() as usize;
    let bits = lut.len().trailing_zeros();
    let idx = sd_mil::blob::unpack_bits(&op.attributes["indices"].bytes().unwrap(), bits, n);
    idx.iter().map(|&i| lut[i as usize]).collect()
}

fn sse(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum()
}

#[test]
fn our_kmeans_error_is_never_above_coremltools() {
    let original = read_package(shared(
        "split_einsum/Stable_Diffusion_version_sd-tiny_unet.mlpackage",
    ))
    .unwrap();
    let apple = read_package(shared(
        "split_einsum_q6/Stable_Diffusion_version_sd-tiny_unet.mlpackage",
    ))
    .unwrap();
    let mut ours = original.clone();
    palettize(&mut ours.program, &PalettizeOptions::new(6)).unwrap();
    let (fo, fa, fu) = (
        original.program.main().unwrap(),
        apple.program.main().unwrap(),
        ours.program.main().unwrap(),
    );
    let mut compared = 0;
    let (mut total_ours, mut total_apple) = (0.0, 0.0);
    for ((o, a), u) in fo.operations.iter().zip(&fa.operations).zip(&fu.operations) {
        if a.op_type != "constexpr_lut_to_dense" {
            continue;
        }
        assert_eq!(u.op_type, "constexpr_lut_to_dense", "{}", o.name);
        let w = o.const_value().unwrap().to_f32_vec().unwrap();
        let (e_apple, e_ours) = (sse(&w, &decode_lut(a)), sse(&w, &decode_lut(u)));
        // Equal optimum up to the fp16 rounding of the table.
        assert!(
            e_ours <= e_apple * (1.0 + 1e-3) + 1e-9,
            "{}: ours {e_ours} vs coremltools {e_apple}",
            o.name
        );
        total_ours += e_ours;
        total_apple += e_apple;
        compared += 1;
    }
    assert_eq!(compared, 64);
    println!(
        "6-bit k-means SSE over {compared} weights: ours {total_ours:.6e}, coremltools {total_apple:.6e}"
    );
}

/// Builds a small conv model at `opset` with a weight big enough to compress.
fn conv_model(opset: sd_mil::Opset) -> Model {
    use sd_mil::{ConstValue, DType, Program, builder::FunctionBuilder};
    let mut b = FunctionBuilder::new(opset);
    let x = b
        .input("x", TensorType::new(DType::F16, [1, 32, 8, 8]))
        .unwrap();
    let w: Vec<f32> = (0..64 * 32 * 3 * 3)
        .map(|i| ((i as f32) * 0.731).sin() * 0.1)
        .collect();
    let w = b
        .constant("w", ConstValue::f16_from_f32([64, 32, 3, 3], &w).unwrap())
        .unwrap();
    let y = b
        .op("conv")
        .input("x", &x)
        .input("weight", &w)
        .param("pad_type", "same")
        .name("y")
        .build_one()
        .unwrap();
    Model::from_program(Program::with_main(b.finish(&[&y]).unwrap())).unwrap()
}

#[test]
fn every_compression_form_writes_valid_packages() {
    use sd_compress::{Granularity, quantize_linear8};
    use sd_mil::Opset;
    let dir = out_dir("compress_forms");
    for opset in [Opset::CoreML6, Opset::CoreML7, Opset::CoreML8] {
        for nbits in [1, 2, 4, 6, 8] {
            let mut m = conv_model(opset);
            let r = palettize(&mut m.program, &PalettizeOptions::new(nbits)).unwrap();
            assert_eq!(r.weights, 1);
            write_package(
                &m,
                dir.join(format!("lut{nbits}_spec{}.mlpackage", m.spec_version)),
                WriteOptions::default(),
            )
            .unwrap();
        }
        let mut m = conv_model(opset);
        assert_eq!(quantize_linear8(&mut m.program, 2048).unwrap().weights, 1);
        write_package(
            &m,
            dir.join(format!("linear8_spec{}.mlpackage", m.spec_version)),
            WriteOptions::default(),
        )
        .unwrap();
    }
    let mut m = conv_model(Opset::CoreML8);
    let opts = PalettizeOptions {
        granularity: Granularity::PerGroupedChannel { group_size: 16 },
        ..PalettizeOptions::new(4)
    };
    palettize(&mut m.program, &opts).unwrap();
    let lut = m
        .program
        .main()
        .unwrap()
        .operations
        .iter()
        .find(|o| o.op_type == "constexpr_lut_to_dense")
        .unwrap();
    match lut.input("lut").unwrap() {
        [sd_mil::Binding::Value(v)] => assert_eq!(v.ty.shape, [4, 1, 1, 1, 16, 1]),
        other => panic!("{other:?}"),
    }
    write_package(
        &m,
        dir.join("lut4_grouped16_spec9.mlpackage"),
        WriteOptions::default(),
    )
    .unwrap();
    let mut m = conv_model(Opset::CoreML7);
    let bad = PalettizeOptions {
        granularity: Granularity::PerGroupedChannel { group_size: 16 },
        ..PalettizeOptions::new(4)
    };
    assert!(
        palettize(&mut m.program, &bad).is_err(),
        "grouped tables need iOS18"
    );
    assert!(palettize(&mut m.program, &PalettizeOptions::new(5)).is_err());
    let recipe = sd_compress::recipe::parse_recipe(r#"{"w": 16}"#).unwrap();
    let r = palettize(
        &mut m.program,
        &PalettizeOptions {
            per_weight_bits: recipe,
            ..PalettizeOptions::new(4)
        },
    )
    .unwrap();
    assert_eq!(r.weights, 0, "a recipe entry of 16 bits keeps the weight");
    assert!(sd_compress::recipe::parse_recipe(r#"{"w": 5}"#).is_err());
}
