//! Fuses coremltools' group-norm decomposition into one `sdrt_group_norm` op:
//!
//! reshape [N, G, …] → reduce_mean (mean) → sub → square → reduce_mean (variance) → add eps →
//! sqrt → real_div → reshape back, optionally followed by a constant per-channel affine
//! (`batch_norm` with constant statistics, or `mul` then `add`), which is folded into the
//! fused op's gamma/beta.

use super::GROUP_NORM_OP;
use super::common::{Index, const_floats, const_ints, fused_op, name_of};
use sd_mil::{ConstValue, Function};

struct Match {
    x: String,
    groups: usize,
    eps: f32,
    channels: usize,
    gamma: Option<Vec<f32>>,
    beta: Option<Vec<f32>>,
    last: usize,
}

fn only_reader(idx: &Index, name: &str, op_type: &str, f: &Function) -> Option<usize> {
    match idx.readers(name) {
        [r] if *r != usize::MAX && f.operations[*r].op_type == op_type => Some(*r),
        _ => None,
    }
}

fn full_axes(axes: &[i64], rank: usize) -> bool {
    let mut a: Vec<usize> = axes
        .iter()
        .map(|&x| {
            if x < 0 {
                (x + rank as i64) as usize
            } else {
                x as usize
            }
        })
        .collect();
    a.sort_unstable();
    a == (2..rank).collect::<Vec<_>>()
}

fn match_at(f: &Function, idx: &Index, rm1: usize) -> Option<Match> {
    let ops = &f.operations;
    let mean = &ops[rm1];
    let r1_out = name_of(mean, "x")?;
    let (_, r1) = idx.producer_of(f, r1_out, "reshape")?;
    let x = name_of(r1, "x")?.to_string();
    let xt = f.value_type(&x)?;
    let gt = &r1.outputs[0].ty;
    if xt.rank() < 2
        || gt.rank() < 3
        || gt.shape[0] != xt.shape[0]
        || xt.shape[1] % gt.shape[1] != 0
    {
        return None;
    }
    let groups = gt.shape[1];
    let keep = const_ints(f, idx, mean, "keep_dims").is_some_and(|k| k == [1]);
    if !keep || !full_axes(&const_ints(f, idx, mean, "axes")?, gt.rank()) {
        return None;
    }
    // The grouped value feeds exactly the mean and the centring sub.
    let rs = idx.readers(r1_out);
    if rs.len() != 2 {
        return None;
    }
    let sub_i = *rs.iter().find(|&&r| r != rm1 && r != usize::MAX)?;
    let sub = &ops[sub_i];
    if sub.op_type != "sub"
        || name_of(sub, "x")? != r1_out
        || name_of(sub, "y")? != mean.outputs[0].name
    {
        return None;
    }
    let centred = &sub.outputs[0].name;
    let cr = idx.readers(centred);
    if cr.len() != 2 || cr.contains(&usize::MAX) {
        return None;
    }
    let sq_i = *cr.iter().find(|&&r| ops[r].op_type == "square")?;
    let div_i = *cr.iter().find(|&&r| ops[r].op_type == "real_div")?;
    let rm2_i = only_reader(idx, &ops[sq_i].outputs[0].name, "reduce_mean", f)?;
    let rm2 = &ops[rm2_i];
    if const_ints(f, idx, rm2, "keep_dims").is_none_or(|k| k != [1])
        || !full_axes(&const_ints(f, idx, rm2, "axes")?, gt.rank())
    {
        return None;
    }
    let add_i = only_reader(idx, &rm2.outputs[0].name, "add", f)?;
    let add = &ops[add_i];
    let var_name = &rm2.outputs[0].name;
    let eps_param = if name_of(add, "x") == Some(var_name) {
        "y"
    } else {
        "x"
    };
    let eps = match const_floats(f, idx, add, eps_param)?.as_slice() {
        [e] => *e,
        _ => return None,
    };
    let sqrt_i = only_reader(idx, &add.outputs[0].name, "sqrt", f)?;
    let div = &ops[div_i];
    if only_reader(idx, &ops[sqrt_i].outputs[0].name, "real_div", f)? != div_i
        || name_of(div, "x")? != centred
    {
        return None;
    }
    let r2_i = only_reader(idx, &div.outputs[0].name, "reshape", f)?;
    let r2 = &ops[r2_i];
    let ot = &r2.outputs[0].ty;
    if ot.rank() < 2 || ot.shape[0] != xt.shape[0] || ot.shape[1] != xt.shape[1] {
        return None;
    }
    let channels = xt.shape[1];
    let mut m = Match {
        x,
        groups,
        eps,
        channels,
        gamma: None,
        beta: None,
        last: r2_i,
    };
    // Fold a constant per-channel affine that follows.
    let out = &r2.outputs[0].name;
    // A constant with one value per channel that broadcasts (right-aligned) onto axis 1 of
    // the output: [C], [C, 1, 1], [1, C, 1, 1]…
    let rank = ot.rank();
    let per_channel = |v: &Vec<f32>, ty: &sd_mil::TensorType| -> bool {
        let k = ty.rank();
        let mut big = ty.shape.iter().enumerate().filter(|(_, d)| **d != 1);
        let axis_ok = match (big.next(), big.next()) {
            (Some((j, _)), None) => k <= rank && rank - k + j == 1,
            (None, _) => channels == 1,
            _ => false,
        };
        v.len() == channels && axis_ok
    };
    if let Some(bn_i) = only_reader(idx, out, "batch_norm", f) {
        let bn = &ops[bn_i];
        let get = |p: &str| const_floats(f, idx, bn, p);
        let (mean, var) = (get("mean")?, get("variance")?);
        let e = get("epsilon").map(|v| v[0]).unwrap_or(1e-5);
        let gamma = get("gamma").unwrap_or(vec![1.0; channels]);
        let beta = get("beta").unwrap_or(vec![0.0; channels]);
        if [mean.len(), var.len(), gamma.len(), beta.len()]
            .iter()
            .all(|l| *l == channels)
        {
            let scale: Vec<f32> = (0..channels)
                .map(|c| gamma[c] / (var[c] + e).sqrt())
                .collect();
            m.beta = Some(
                (0..channels)
                    .map(|c| beta[c] - mean[c] * scale[c])
                    .collect(),
            );
            m.gamma = Some(scale);
            m.last = bn_i;
        }
    } else if let Some(mul_i) = only_reader(idx, out, "mul", f) {
        let mul = &ops[mul_i];
        let other = if name_of(mul, "x") == Some(out) {
            "y"
        } else {
            "x"
        };
        if let (Some(g), Some(gname)) = (const_floats(f, idx, mul, other), name_of(mul, other))
            && per_channel(&g, f.value_type(gname)?)
        {
            m.gamma = Some(g);
            m.last = mul_i;
            let mo = &mul.outputs[0].name;
            if let Some(add_i) = only_reader(idx, mo, "add", f) {
                let a = &ops[add_i];
                let other = if name_of(a, "x") == Some(mo) {
                    "y"
                } else {
                    "x"
                };
                if let (Some(b), Some(bname)) = (const_floats(f, idx, a, other), name_of(a, other))
                    && per_channel(&b, f.value_type(bname)?)
                {
                    m.beta = Some(b);
                    m.last = add_i;
                }
            }
        }
    }
    Some(m)
}

/// Fuses every group-norm decomposition; returns how many were fused.
pub fn fuse_group_norm(f: &mut Function) -> usize {
    let mut count = 0;
    loop {
        let idx = Index::new(f);
        let found = (0..f.operations.len())
            .filter(|&i| f.operations[i].op_type == "reduce_mean")
            .find_map(|i| match_at(f, &idx, i));
        let Some(m) = found else { break };
        let last = &f.operations[m.last];
        let outputs = last.outputs.clone();
        let name = format!("{}_group_norm", last.name);
        let mut consts = vec![
            ("groups", ConstValue::scalar_i32(m.groups as i32)),
            ("epsilon", ConstValue::scalar_f32(m.eps)),
        ];
        if let Some(g) = m.gamma {
            consts.push((
                "gamma",
                ConstValue::f32([m.channels], &g).expect("sizes match"),
            ));
        }
        if let Some(b) = m.beta {
            consts.push((
                "beta",
                ConstValue::f32([m.channels], &b).expect("sizes match"),
            ));
        }
        f.operations[m.last] = fused_op(GROUP_NORM_OP, &name, &[("x", &m.x)], consts, outputs);
        sd_mil::graph::eliminate_dead_code(f);
        count += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::super::common::test_support::fused_vs_unfused;
    use crate::Precision;

    /// The element-wise affine form (coremltools before its batch-norm fusion): the
    /// decomposition at rank 5, then `mul` by gamma [C, 1, 1] and `add` of beta [C, 1, 1],
    /// then SiLU. The affine folds into the fused op, the SiLU into
    /// its activation, and the result is unchanged.
    #[test]
    fn rank5_decomposition_with_channel_affine_folds_into_one_op() {
        use crate::kernels::Registry;
        use crate::{LoadOptions, Model, Tensor, psnr};
        use sd_mil::builder::FunctionBuilder;
        use sd_mil::{ConstValue, DType, Opset, Program, TensorType};
        use std::collections::HashMap;

        let (n, c, g, h, w) = (2, 6, 3, 4, 5);
        let mut fb = FunctionBuilder::new(Opset::CoreML6);
        let x = fb
            .input("x", TensorType::new(DType::F32, vec![n, c, h, w]))
            .unwrap();
        let per_channel = |v: f32| ConstValue::f32([c, 1, 1], &vec![v; c]).unwrap();
        let gamma = fb.constant("gamma", per_channel(1.5)).unwrap();
        let beta = fb.constant("beta", per_channel(-0.25)).unwrap();
        let shape5 = [n as i32, g as i32, (c / g) as i32, h as i32, w as i32];
        let r = fb
            .op("reshape")
            .input("x", &x)
            .param("shape", shape5)
            .build_one()
            .unwrap();
        let mean = |fb: &mut FunctionBuilder, v: &sd_mil::Var| {
            fb.op("reduce_mean")
                .input("x", v)
                .param("axes", [2, 3, 4])
                .param("keep_dims", true)
                .build_one()
                .unwrap()
        };
        let binary = |fb: &mut FunctionBuilder, op: &str, a: &sd_mil::Var, b: &sd_mil::Var| {
            fb.op(op).input("x", a).input("y", b).build_one().unwrap()
        };
        let m1 = mean(&mut fb, &r);
        let d = binary(&mut fb, "sub", &r, &m1);
        let sq = fb.op("square").input("x", &d).build_one().unwrap();
        let var = mean(&mut fb, &sq);
        let eps = fb
            .op("add")
            .input("x", &var)
            .param("y", 1e-5f32)
            .build_one()
            .unwrap();
        let sd = fb.op("sqrt").input("x", &eps).build_one().unwrap();
        let nd = binary(&mut fb, "real_div", &d, &sd);
        let shape4 = [n as i32, c as i32, h as i32, w as i32];
        let back = fb
            .op("reshape")
            .input("x", &nd)
            .param("shape", shape4)
            .build_one()
            .unwrap();
        let scaled = binary(&mut fb, "mul", &back, &gamma);
        let shifted = binary(&mut fb, "add", &scaled, &beta);
        let y = fb.op("silu").input("x", &shifted).build_one().unwrap();
        let func = fb.finish(&[&y]).unwrap();
        let description = sd_mil::Model::from_program(Program::with_main(func.clone()))
            .unwrap()
            .description;

        let mut fused = func.clone();
        let counts = crate::passes::run_all(&mut fused);
        assert_eq!((counts.group_norms, counts.activations), (1, 1));
        let types: Vec<&str> = fused
            .operations
            .iter()
            .map(|o| o.op_type.as_str())
            .collect();
        assert_eq!(
            types.iter().filter(|t| **t != "const").count(),
            1,
            "{types:?}"
        );

        let x: Vec<f32> = (0..n * c * h * w)
            .map(|i| ((i * 7) % 19) as f32 * 0.3 - 2.0)
            .collect();
        let inputs = HashMap::from([("x".to_string(), Tensor::f32([n, c, h, w], x))]);
        let run = |f: &sd_mil::Function| {
            let options = LoadOptions::<crate::Cpu>::new(Precision::Fp32, Default::default());
            let m = Model::plan(f, description.clone(), options, &Registry::standard()).unwrap();
            m.predict(&inputs)
                .unwrap()
                .into_values()
                .next()
                .unwrap()
                .to_f32_vec()
        };
        let p = psnr(&run(&fused), &run(&func));
        assert!(p > 100.0, "fused vs unfused: {p:.2} dB");
    }

    #[test]
    fn unet_group_norms_fused_outputs_unchanged() {
        let (m, fp32) = fused_vs_unfused("unet", Precision::Fp32);
        // 31 group norms in the tiny UNet (resnets, transformers' input norms, the output
        // norm), each followed by a constant batch_norm affine.
        assert_eq!(m.op_counts().get(super::GROUP_NORM_OP), Some(&31));
        assert!(!m.op_counts().contains_key("reduce_mean"));
        assert!(!m.op_counts().contains_key("batch_norm"));
        assert!(fp32 > 100.0, "fp32 fused vs unfused: {fp32:.2} dB");
        let (_, p16) = fused_vs_unfused("unet", Precision::Program);
        assert!(p16 > 40.0, "fp16 fused vs unfused: {p16:.2} dB");
    }

    #[test]
    fn vae_decoder_group_norms_fused_outputs_unchanged() {
        let (m, fp32) = fused_vs_unfused("vae_decoder", Precision::Fp32);
        // 22 group norms in the tiny VAE decoder (reduce_mean pairs: 44).
        assert_eq!(m.op_counts().get(super::GROUP_NORM_OP), Some(&22));
        assert!(!m.op_counts().contains_key("reduce_mean"));
        assert!(fp32 > 100.0, "fp32 fused vs unfused: {fp32:.2} dB");
        let (_, p16) = fused_vs_unfused("vae_decoder", Precision::Program);
        assert!(p16 > 40.0, "fp16 fused vs unfused: {p16:.2} dB");
    }
}
