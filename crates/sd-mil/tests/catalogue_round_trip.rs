//! Programs that use every catalogue op, at specification versions 7, 8 and 9, written as
//! packages and read back equal. CI also checks every package written here with coremltools.

mod common;

use sd_mil::builder::FunctionBuilder;
use sd_mil::package::{WriteOptions, read_package, write_package};
use sd_mil::{ConstValue, DType, Model, Opset, Program, TensorType, Var, catalogue};
use std::collections::BTreeSet;

fn f16(shape: &[usize], seed: f32) -> ConstValue {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| ((i as f32 * 0.37 + seed).sin()) * 0.5)
        .collect();
    ConstValue::f16_from_f32(shape.to_vec(), &v).unwrap()
}

fn h(v: f32) -> ConstValue {
    ConstValue::scalar_f16(v)
}

/// Builds one function that calls every op of the catalogue available in `opset`.
fn every_op(opset: Opset) -> (Program, BTreeSet<String>) {
    let mut b = FunctionBuilder::new(opset);
    let x = b
        .input("x", TensorType::new(DType::F16, [1, 4, 8, 8]))
        .unwrap();
    let ids = b.input("ids", TensorType::new(DType::I32, [1, 6])).unwrap();
    let c = |b: &mut FunctionBuilder, name: &str, v: ConstValue| b.constant(name, v).unwrap();
    let y = c(&mut b, "y", f16(&[1, 4, 1, 1], 1.0));
    let pos = {
        let abs = b.op("abs").input("x", &x).build_one().unwrap();
        b.op("add")
            .input("x", &abs)
            .param("y", h(0.5))
            .build_one()
            .unwrap()
    };
    let mut keep: Vec<Var> = Vec::new();
    for op in [
        "add",
        "sub",
        "mul",
        "real_div",
        "floor_div",
        "mod",
        "maximum",
        "minimum",
    ] {
        keep.push(b.op(op).input("x", &x).input("y", &y).build_one().unwrap());
    }
    keep.push(
        b.op("pow")
            .input("x", &pos)
            .input("y", &y)
            .build_one()
            .unwrap(),
    );
    let mut bools = Vec::new();
    for op in [
        "equal",
        "not_equal",
        "greater",
        "greater_equal",
        "less",
        "less_equal",
    ] {
        bools.push(b.op(op).input("x", &x).input("y", &y).build_one().unwrap());
    }
    let and = b
        .op("logical_and")
        .input("x", &bools[0])
        .input("y", &bools[2])
        .build_one()
        .unwrap();
    let or = b
        .op("logical_or")
        .input("x", &and)
        .input("y", &bools[4])
        .build_one()
        .unwrap();
    let not = b.op("logical_not").input("x", &or).build_one().unwrap();
    keep.push(
        b.op("select")
            .input("cond", &not)
            .input("a", &x)
            .input("b", &pos)
            .build_one()
            .unwrap(),
    );
    for op in [
        "sqrt", "exp", "cos", "sin", "tanh", "erf", "floor", "ceil", "round", "square", "abs",
        "sign",
    ] {
        let src = if op == "sqrt" { &pos } else { &x };
        keep.push(b.op(op).input("x", src).build_one().unwrap());
    }
    keep.push(
        b.op("log")
            .input("x", &pos)
            .param("epsilon", h(1e-3))
            .build_one()
            .unwrap(),
    );
    keep.push(
        b.op("rsqrt")
            .input("x", &pos)
            .param("epsilon", h(1e-3))
            .build_one()
            .unwrap(),
    );
    keep.push(
        b.op("inverse")
            .input("x", &pos)
            .param("epsilon", h(1e-3))
            .build_one()
            .unwrap(),
    );
    keep.push(
        b.op("clip")
            .input("x", &x)
            .param("alpha", h(-0.25))
            .param("beta", h(0.25))
            .build_one()
            .unwrap(),
    );
    keep.push(b.op("identity").input("x", &x).build_one().unwrap());
    let x32 = b
        .op("cast")
        .input("x", &x)
        .param("dtype", "fp32")
        .build_one()
        .unwrap();
    for op in ["silu", "sigmoid", "relu"] {
        keep.push(b.op(op).input("x", &x).build_one().unwrap());
    }
    keep.push(
        b.op("gelu")
            .input("x", &x)
            .param("mode", "TANH_APPROXIMATION")
            .build_one()
            .unwrap(),
    );
    keep.push(
        b.op("softmax")
            .input("x", &x)
            .param("axis", -1)
            .build_one()
            .unwrap(),
    );

    // Spatial ops.
    let w = c(&mut b, "conv_w", f16(&[8, 4, 3, 3], 2.0));
    let bias = c(&mut b, "conv_b", f16(&[8], 3.0));
    let conv = b
        .op("conv")
        .input("x", &x)
        .input("weight", &w)
        .input("bias", &bias)
        .param("strides", [1, 1])
        .param("pad_type", "custom")
        .param("pad", [1, 1, 1, 1])
        .param("dilations", [1, 1])
        .param("groups", 1)
        .build_one()
        .unwrap();
    assert_eq!(conv.ty.shape, [1, 8, 8, 8]);
    let up = b
        .op("upsample_nearest_neighbor")
        .input("x", &x)
        .param("scale_factor_height", 2.0f32)
        .param("scale_factor_width", 2.0f32)
        .build_one()
        .unwrap();
    assert_eq!(up.ty.shape, [1, 4, 16, 16]);
    let padded = b
        .op("pad")
        .input("x", &x)
        .param("pad", [0, 0, 0, 0, 0, 1, 0, 1])
        .param("mode", "constant")
        .param("constant_val", h(0.0))
        .build_one()
        .unwrap();
    assert_eq!(padded.ty.shape, [1, 4, 9, 9]);

    // Normalizations.
    let gamma = c(&mut b, "gamma", f16(&[4], 4.0));
    let beta = c(&mut b, "beta", f16(&[4], 5.0));
    let mean = c(&mut b, "mean", f16(&[4], 6.0));
    let var = b.op("abs").input("x", &mean).build_one().unwrap();
    let ln_g = c(&mut b, "ln_gamma", f16(&[8], 7.0));
    keep.push(
        b.op("layer_norm")
            .input("x", &x)
            .param("axes", [-1])
            .input("gamma", &ln_g)
            .input("beta", &ln_g)
            .param("epsilon", h(1e-5))
            .build_one()
            .unwrap(),
    );
    keep.push(
        b.op("instance_norm")
            .input("x", &x)
            .input("gamma", &gamma)
            .input("beta", &beta)
            .param("epsilon", h(1e-5))
            .build_one()
            .unwrap(),
    );
    keep.push(
        b.op("batch_norm")
            .input("x", &x)
            .input("mean", &mean)
            .input("variance", &var)
            .input("gamma", &gamma)
            .input("beta", &beta)
            .param("epsilon", h(1e-5))
            .build_one()
            .unwrap(),
    );

    // Linear algebra.
    let seq = b
        .op("reshape")
        .input("x", &x)
        .param("shape", [1, 4, 64])
        .build_one()
        .unwrap();
    let lw = c(&mut b, "linear_w", f16(&[16, 64], 8.0));
    let lb = c(&mut b, "linear_b", f16(&[16], 9.0));
    keep.push(
        b.op("linear")
            .input("x", &seq)
            .input("weight", &lw)
            .input("bias", &lb)
            .build_one()
            .unwrap(),
    );
    keep.push(
        b.op("matmul")
            .input("x", &seq)
            .input("y", &seq)
            .param("transpose_x", false)
            .param("transpose_y", true)
            .build_one()
            .unwrap(),
    );
    let k = b
        .op("transpose")
        .input("x", &x)
        .param("perm", [0, 3, 2, 1])
        .build_one()
        .unwrap();
    let e = b
        .op("einsum")
        .inputs("values", &[&x, &k])
        .param("equation", "nchw,nwhu->nchu")
        .build_one()
        .unwrap();
    assert_eq!(e.ty.shape, [1, 4, 8, 4]);
    keep.push(e);

    // Reductions.
    for op in [
        "reduce_mean",
        "reduce_sum",
        "reduce_max",
        "reduce_min",
        "reduce_prod",
    ] {
        keep.push(
            b.op(op)
                .input("x", &x)
                .param("axes", [2, 3])
                .param("keep_dims", true)
                .build_one()
                .unwrap(),
        );
    }
    for op in ["reduce_argmax", "reduce_argmin"] {
        keep.push(
            b.op(op)
                .input("x", &x)
                .param("axis", -1)
                .param("keep_dims", false)
                .build_one()
                .unwrap(),
        );
    }

    // Shape ops.
    let cat = b
        .op("concat")
        .inputs("values", &[&x, &x])
        .param("axis", 1)
        .param("interleave", false)
        .build_one()
        .unwrap();
    assert_eq!(cat.ty.shape, [1, 8, 8, 8]);
    let parts = b
        .op("split")
        .input("x", &cat)
        .param("split_sizes", [3, 5])
        .param("axis", 1)
        .build()
        .unwrap();
    assert_eq!(parts[1].ty.shape, [1, 5, 8, 8]);
    let halves = b
        .op("split")
        .input("x", &cat)
        .param("num_splits", 2)
        .param("axis", 1)
        .build()
        .unwrap();
    assert_eq!(halves.len(), 2);
    let sl = b
        .op("slice_by_index")
        .input("x", &x)
        .param("begin", [0, 1, 0, 2])
        .param("end", [1, 3, 8, 8])
        .param("stride", [1, 1, 2, 1])
        .param("begin_mask", [false, false, true, false])
        .param("end_mask", [false, false, true, false])
        .param("squeeze_mask", [true, false, false, false])
        .build_one()
        .unwrap();
    assert_eq!(sl.ty.shape, [2, 4, 6]);
    keep.push(sl);
    keep.push(
        b.op("slice_by_size")
            .input("x", &x)
            .param("begin", [0, 0, 2, 2])
            .param("size", [1, 2, -1, 3])
            .build_one()
            .unwrap(),
    );
    let ex = b
        .op("expand_dims")
        .input("x", &x)
        .param("axes", [0])
        .build_one()
        .unwrap();
    keep.push(
        b.op("squeeze")
            .input("x", &ex)
            .param("axes", [0])
            .build_one()
            .unwrap(),
    );
    keep.push(
        b.op("stack")
            .inputs("values", &[&x, &x])
            .param("axis", 0)
            .build_one()
            .unwrap(),
    );
    keep.push(
        b.op("fill")
            .param("shape", [2, 3])
            .param("value", 1.5f32)
            .build_one()
            .unwrap(),
    );
    keep.push(
        b.op("tile")
            .input("x", &x)
            .param("reps", [1, 1, 2, 1])
            .build_one()
            .unwrap(),
    );
    keep.push(
        b.op("band_part")
            .input("x", &x)
            .param("lower", -1)
            .param("upper", 0)
            .build_one()
            .unwrap(),
    );

    // Indexing.
    let table = c(&mut b, "table", f16(&[10, 8], 10.0));
    let gathered = b
        .op("gather")
        .input("x", &table)
        .input("indices", &ids)
        .param("axis", 0)
        .param("batch_dims", 0)
        .build_one()
        .unwrap();
    assert_eq!(gathered.ty.shape, [1, 6, 8]);
    let nd_idx = c(
        &mut b,
        "nd_idx",
        ConstValue::i32([2, 2], &[0, 1, 0, 3]).unwrap(),
    );
    keep.push(
        b.op("gather_nd")
            .input("x", &gathered)
            .input("indices", &nd_idx)
            .param("batch_dims", 0)
            .build_one()
            .unwrap(),
    );

    // Compressed weights.
    let lut_out = if opset >= Opset::CoreML8 {
        let idx = ConstValue::from_bytes(
            TensorType::new(DType::U4, [8, 4, 3, 3]),
            sd_mil::blob::pack_bits(&(0..288).map(|i| (i % 16) as u8).collect::<Vec<_>>(), 4),
        )
        .unwrap();
        let lut = f16(&[2, 1, 1, 1, 16, 1], 11.0);
        b.op("constexpr_lut_to_dense")
            .inline("indices", idx)
            .inline("lut", lut)
            .build_one()
            .unwrap()
    } else {
        let idx = ConstValue::from_bytes(
            TensorType::new(DType::U8, [144]),
            sd_mil::blob::pack_bits(&(0..288).map(|i| (i % 16) as u8).collect::<Vec<_>>(), 4),
        )
        .unwrap();
        let shape = ConstValue::from_bytes(
            TensorType::new(DType::U32, [4]),
            [8u32, 4, 3, 3]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        b.op("constexpr_lut_to_dense")
            .attr("lut", f16(&[16], 11.0))
            .attr("indices", idx)
            .attr("shape", shape)
            .build_one()
            .unwrap()
    };
    assert_eq!(lut_out.ty, TensorType::new(DType::F16, [8, 4, 3, 3]));
    keep.push(
        b.op("conv")
            .input("x", &x)
            .input("weight", &lut_out)
            .param("pad_type", "same")
            .build_one()
            .unwrap(),
    );
    let q = ConstValue::from_bytes(
        TensorType::new(DType::I8, [8, 16]),
        (0..128)
            .map(|i| (i as i8).wrapping_mul(3) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let deq = b
        .op("constexpr_affine_dequantize")
        .attr("quantized_data", q)
        .attr(
            "zero_point",
            ConstValue::from_bytes(TensorType::scalar(DType::I8), vec![0u8]).unwrap(),
        )
        .attr("scale", h(0.01))
        .attr("axis", ConstValue::scalar_i32(0))
        .build_one()
        .unwrap();
    assert_eq!(deq.ty, TensorType::new(DType::F16, [8, 16]));
    keep.push(deq);
    if opset >= Opset::CoreML8 {
        let data = ConstValue::from_bytes(
            TensorType::new(DType::I8, [8, 16]),
            (0..128).map(|i| i as u8).collect::<Vec<_>>(),
        )
        .unwrap();
        keep.push(
            b.op("constexpr_blockwise_shift_scale")
                .inline("data", data)
                .inline("scale", f16(&[8, 2], 12.0))
                .build_one()
                .unwrap(),
        );
        let q4 = b
            .op("reshape")
            .input("x", &x)
            .param("shape", [1, 4, 8, 8])
            .build_one()
            .unwrap();
        keep.push(
            b.op("scaled_dot_product_attention")
                .input("query", &q4)
                .input("key", &q4)
                .input("value", &q4)
                .build_one()
                .unwrap(),
        );
    }

    let out = b
        .op("add")
        .input("x", &conv)
        .input("y", &conv)
        .name("out")
        .build_one()
        .unwrap();
    let out32 = b
        .op("cast")
        .input("x", &out)
        .param("dtype", "fp32")
        .name("out32")
        .build_one()
        .unwrap();
    let _ = (x32, keep, parts, halves);
    let f = b.finish(&[&out32]).unwrap();
    let used: BTreeSet<String> = f.operations.iter().map(|o| o.op_type.clone()).collect();
    (Program::with_main(f), used)
}

#[test]
fn every_catalogue_op_round_trips_at_spec_7_8_9() {
    let out = common::out_dir("catalogue");
    for opset in [Opset::CoreML6, Opset::CoreML7, Opset::CoreML8] {
        let (program, used) = every_op(opset);
        let missing: Vec<&str> = catalogue::all()
            .filter(|s| s.exists_in(opset) && !used.contains(s.name))
            .map(|s| s.name)
            .collect();
        assert!(
            missing.is_empty(),
            "{opset:?}: ops not exercised: {missing:?}"
        );
        let mut model = Model::from_program(program).unwrap();
        model.program.build_info.insert(
            "sd-toolkit.version".into(),
            env!("CARGO_PKG_VERSION").into(),
        );
        model
            .description
            .metadata
            .user_defined
            .insert("sd.test".into(), "catalogue".into());
        assert_eq!(model.spec_version, opset.spec_version());
        let dest = out.join(format!("every_op_spec{}.mlpackage", model.spec_version));
        write_package(&model, &dest, WriteOptions::default()).unwrap();
        let back = read_package(&dest).unwrap();
        common::assert_models_equal(&model, &back);
        // Compiled: from the package (weights copied as they are) and from memory (written
        // afresh).
        let compiled = out.join(format!("every_op_spec{}.mlmodelc", model.spec_version));
        common::assert_compiles_back(&back, &dest, &compiled);
        let fresh = out.join(format!(
            "every_op_spec{}_fresh.mlmodelc",
            model.spec_version
        ));
        sd_mil::compiled::write_compiled(&model, &fresh, WriteOptions::default()).unwrap();
        common::assert_models_equal(&model, &sd_mil::compiled::read_compiled(&fresh).unwrap());
    }
}
