//! Per-op tests: one-op programs built with sd-mil's builder, run through the planner, and
//! compared with values derived by hand or by straightforward loops (numpy semantics).

use crate::{LoadOptions, Model, Precision, RuntimeError, Tensor};
use sd_mil::builder::FunctionBuilder;
use sd_mil::{ConstValue, DType, Opset, Program, TensorType, Var};
use std::collections::HashMap;

fn seq(n: usize, scale: f32, offset: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7 + 3) % 11) as f32 * scale + offset)
        .collect()
}

struct One {
    model: Model,
}

impl One {
    fn build(
        opset: Opset,
        inputs: &[(&str, TensorType)],
        body: impl FnOnce(&mut FunctionBuilder, &[Var]) -> Vec<Var>,
        precision: Precision,
    ) -> One {
        let mut f = FunctionBuilder::new(opset);
        let vars: Vec<Var> = inputs
            .iter()
            .map(|(n, t)| f.input(n, t.clone()).unwrap())
            .collect();
        let outs = body(&mut f, &vars);
        let refs: Vec<&Var> = outs.iter().collect();
        let func = f.finish(&refs).unwrap();
        let m = sd_mil::Model::from_program(Program::with_main(func.clone())).unwrap();
        let opts = LoadOptions {
            compute: precision,
            ..Default::default()
        };
        let model = Model::plan(
            &func,
            m.description,
            opts,
            &crate::kernels::Registry::standard(),
        )
        .unwrap();
        One { model }
    }

    fn run(&self, inputs: &[(&str, Tensor)]) -> Vec<Tensor> {
        let map: HashMap<String, Tensor> = inputs
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect();
        let out = self.model.predict(&map).unwrap();
        self.model
            .description()
            .outputs
            .iter()
            .map(|f| out[&f.name].clone())
            .collect()
    }
}

fn f32t(shape: &[usize]) -> TensorType {
    TensorType::new(DType::F32, shape.to_vec())
}

fn close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "lengths");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= tol * (1.0 + b.abs()),
            "element {i}: got {a}, want {b}\n got {got:?}\nwant {want:?}"
        );
    }
}

/// Unary op on an f32 input with optional literal params.
fn unary(op: &str, x: &[f32], shape: &[usize], params: Vec<(&str, ConstValue)>) -> Vec<f32> {
    let m = One::build(
        Opset::CoreML7,
        &[("x", f32t(shape))],
        |f, v| {
            let mut b = f.op(op).input("x", &v[0]);
            for (p, c) in params {
                b = b.param(p, c);
            }
            vec![b.build_one().unwrap()]
        },
        Precision::Fp32,
    );
    m.run(&[("x", Tensor::f32(shape.to_vec(), x.to_vec()))])[0].to_f32_vec()
}

fn binary(op: &str, xs: &[usize], ys: &[usize], x: &[f32], y: &[f32]) -> Tensor {
    let m = One::build(
        Opset::CoreML7,
        &[("x", f32t(xs)), ("y", f32t(ys))],
        |f, v| {
            vec![
                f.op(op)
                    .input("x", &v[0])
                    .input("y", &v[1])
                    .build_one()
                    .unwrap(),
            ]
        },
        Precision::Fp32,
    );
    m.run(&[
        ("x", Tensor::f32(xs.to_vec(), x.to_vec())),
        ("y", Tensor::f32(ys.to_vec(), y.to_vec())),
    ])
    .remove(0)
}

#[test]
fn every_catalogue_op_has_a_kernel() {
    let r = crate::kernels::Registry::<crate::Cpu>::standard();
    let missing: Vec<_> = crate::kernels::catalogue_ops()
        .into_iter()
        .filter(|o| !r.handles(o))
        .collect();
    assert!(missing.is_empty(), "ops without kernels: {missing:?}");
}

#[test]
fn binary_broadcasting_both_ways() {
    // [2,1,3] − [4,1] → [2,4,3]; out[a,b,c] = x[a,0,c] − y[b,0].
    let x = seq(6, 1.0, -2.0);
    let y = seq(4, 0.5, 0.0);
    let out = binary("sub", &[2, 1, 3], &[4, 1], &x, &y);
    assert_eq!(out.shape, vec![2, 4, 3]);
    let mut want = Vec::new();
    for a in 0..2 {
        for yb in &y {
            for c in 0..3 {
                want.push(x[a * 3 + c] - yb);
            }
        }
    }
    close(&out.to_f32_vec(), &want, 0.0);
    let out = binary("maximum", &[3], &[2, 1], &[1.0, -1.0, 5.0], &[0.0, 2.0]);
    close(&out.to_f32_vec(), &[1.0, 0.0, 5.0, 2.0, 2.0, 5.0], 0.0);
    let out = binary("real_div", &[2], &[1], &[1.0, -3.0], &[2.0]);
    close(&out.to_f32_vec(), &[0.5, -1.5], 0.0);
    // numpy: np.mod(-7, 3) = 2, np.floor_divide(-7, 3) = -3
    close(
        &binary("mod", &[1], &[1], &[-7.0], &[3.0]).to_f32_vec(),
        &[2.0],
        0.0,
    );
    close(
        &binary("floor_div", &[1], &[1], &[-7.0], &[3.0]).to_f32_vec(),
        &[-3.0],
        0.0,
    );
    close(
        &binary("pow", &[2], &[2], &[2.0, 9.0], &[3.0, 0.5]).to_f32_vec(),
        &[8.0, 3.0],
        1e-6,
    );
}

#[test]
fn unary_math() {
    close(
        &unary("square", &[-3.0, 0.5], &[2], vec![]),
        &[9.0, 0.25],
        0.0,
    );
    close(
        &unary("rsqrt", &[4.0, 0.25], &[2], vec![]),
        &[0.5, 2.0],
        1e-6,
    );
    close(&unary("sigmoid", &[0.0], &[1], vec![]), &[0.5], 1e-7);
    // silu(1) = 1/(1+e^-1) = 0.7310586
    close(
        &unary("silu", &[1.0, 0.0], &[2], vec![]),
        &[0.7310586, 0.0],
        1e-6,
    );
    close(&unary("relu", &[-1.0, 2.0], &[2], vec![]), &[0.0, 2.0], 0.0);
    close(
        &unary(
            "clip",
            &[-1.0, 0.5, 9.0],
            &[3],
            vec![("alpha", 0.0f32.into()), ("beta", 1.0f32.into())],
        ),
        &[0.0, 0.5, 1.0],
        0.0,
    );
    // gelu(1): exact 0.8413447, tanh 0.8411920, sigmoid 1·σ(1.702) = 0.8457957
    close(&unary("gelu", &[1.0], &[1], vec![]), &[0.841_344_7], 1e-6);
    close(
        &unary(
            "gelu",
            &[1.0],
            &[1],
            vec![("mode", "TANH_APPROXIMATION".into())],
        ),
        &[0.841_192],
        1e-6,
    );
    close(
        &unary(
            "gelu",
            &[1.0],
            &[1],
            vec![("mode", "SIGMOID_APPROXIMATION".into())],
        ),
        &[0.845_795_7],
        1e-6,
    );
    close(
        &unary("log", &[1.0, std::f32::consts::E], &[2], vec![]),
        &[0.0, 1.0],
        1e-6,
    );
    close(
        &unary("round", &[0.5, 1.5, -2.5], &[3], vec![]),
        &[0.0, 2.0, -2.0],
        0.0,
    );
}

#[test]
fn softmax_negative_axis() {
    // x [2,3,2]; softmax over axis −2 (size 3).
    let x = seq(12, 0.3, -1.0);
    let got = unary("softmax", &x, &[2, 3, 2], vec![("axis", (-2i32).into())]);
    let mut want = vec![0.0; 12];
    for a in 0..2 {
        for c in 0..2 {
            let idx = |b: usize| a * 6 + b * 2 + c;
            let m = (0..3).map(|b| x[idx(b)]).fold(f32::MIN, f32::max);
            let s: f32 = (0..3).map(|b| (x[idx(b)] - m).exp()).sum();
            for b in 0..3 {
                want[idx(b)] = (x[idx(b)] - m).exp() / s;
            }
        }
    }
    close(&got, &want, 1e-6);
}

#[test]
fn matmul_transpose_and_batch_broadcast() {
    // x [2,3,4] · yᵀ with y [5,4] → [2,3,5]
    let x = seq(24, 0.1, -0.5);
    let y = seq(20, 0.2, -1.0);
    let m = One::build(
        Opset::CoreML7,
        &[("x", f32t(&[2, 3, 4])), ("y", f32t(&[5, 4]))],
        |f, v| {
            vec![
                f.op("matmul")
                    .input("x", &v[0])
                    .input("y", &v[1])
                    .param("transpose_y", true)
                    .build_one()
                    .unwrap(),
            ]
        },
        Precision::Fp32,
    );
    let out = m
        .run(&[
            ("x", Tensor::f32([2, 3, 4], x.clone())),
            ("y", Tensor::f32([5, 4], y.clone())),
        ])
        .remove(0);
    assert_eq!(out.shape, vec![2, 3, 5]);
    let mut want = Vec::new();
    for b in 0..2 {
        for i in 0..3 {
            for j in 0..5 {
                want.push(
                    (0..4)
                        .map(|k| x[b * 12 + i * 4 + k] * y[j * 4 + k])
                        .sum::<f32>(),
                );
            }
        }
    }
    close(&out.to_f32_vec(), &want, 1e-5);
}

#[test]
fn linear_rank3() {
    let x = seq(2 * 3 * 4, 0.1, -0.5);
    let w = seq(5 * 4, 0.2, -1.0);
    let b = seq(5, 1.0, 0.0);
    let (wc, bc) = (
        ConstValue::f32([5, 4], &w).unwrap(),
        ConstValue::f32([5], &b).unwrap(),
    );
    let m = One::build(
        Opset::CoreML7,
        &[("x", f32t(&[2, 3, 4]))],
        |f, v| {
            let wv = f.constant("w", wc).unwrap();
            let bv = f.constant("b", bc).unwrap();
            vec![
                f.op("linear")
                    .input("x", &v[0])
                    .input("weight", &wv)
                    .input("bias", &bv)
                    .build_one()
                    .unwrap(),
            ]
        },
        Precision::Fp32,
    );
    let out = m.run(&[("x", Tensor::f32([2, 3, 4], x.clone()))]).remove(0);
    let mut want = Vec::new();
    for r in 0..6 {
        for o in 0..5 {
            want.push(b[o] + (0..4).map(|k| x[r * 4 + k] * w[o * 4 + k]).sum::<f32>());
        }
    }
    close(&out.to_f32_vec(), &want, 1e-5);
}

fn einsum_check(eq: &str, sa: &[usize], sb: &[usize], f: impl Fn(&[f32], &[f32]) -> Vec<f32>) {
    let a = seq(sa.iter().product(), 0.1, -0.4);
    let b = seq(sb.iter().product(), 0.3, -1.2);
    let m = One::build(
        Opset::CoreML7,
        &[("a", f32t(sa)), ("b", f32t(sb))],
        |fb, v| {
            vec![
                fb.op("einsum")
                    .inputs("values", &[&v[0], &v[1]])
                    .param("equation", eq)
                    .build_one()
                    .unwrap(),
            ]
        },
        Precision::Fp32,
    );
    let out = m
        .run(&[
            ("a", Tensor::f32(sa.to_vec(), a.clone())),
            ("b", Tensor::f32(sb.to_vec(), b.clone())),
        ])
        .remove(0);
    close(&out.to_f32_vec(), &f(&a, &b), 1e-5);
}

#[test]
fn einsum_apple_forms() {
    // nchw,nwhu->nchu with n=2, c=3, h=1, w=4, u=5
    let (n, c, h, w, u) = (2, 3, 1, 4, 5);
    einsum_check("nchw,nwhu->nchu", &[n, c, h, w], &[n, w, h, u], |a, b| {
        let mut o = Vec::new();
        for ni in 0..n {
            for ci in 0..c {
                for hi in 0..h {
                    for ui in 0..u {
                        o.push(
                            (0..w)
                                .map(|wi| {
                                    a[((ni * c + ci) * h + hi) * w + wi]
                                        * b[((ni * w + wi) * h + hi) * u + ui]
                                })
                                .sum(),
                        );
                    }
                }
            }
        }
        o
    });
    // chw,whr->chr with c=3, h=2, w=4, r=5 (odd sizes)
    let (c, h, w, r) = (3, 2, 4, 5);
    einsum_check("chw,whr->chr", &[c, h, w], &[w, h, r], |a, b| {
        let mut o = Vec::new();
        for ci in 0..c {
            for hi in 0..h {
                for ri in 0..r {
                    o.push(
                        (0..w)
                            .map(|wi| a[(ci * h + hi) * w + wi] * b[(wi * h + hi) * r + ri])
                            .sum(),
                    );
                }
            }
        }
        o
    });
    // bhcq,bhck->bhqk (the ORIGINAL attention form)
    let (bb, hh, cc, q, k) = (1, 2, 3, 4, 5);
    einsum_check(
        "bhcq,bhck->bhqk",
        &[bb, hh, cc, q],
        &[bb, hh, cc, k],
        |a, b| {
            let mut o = Vec::new();
            for hi in 0..hh {
                for qi in 0..q {
                    for ki in 0..k {
                        o.push(
                            (0..cc)
                                .map(|ci| a[(hi * cc + ci) * q + qi] * b[(hi * cc + ci) * k + ki])
                                .sum(),
                        );
                    }
                }
            }
            o
        },
    );
}

/// Naive conv for checking: x [N,Cin,H,W], w [Cout,Cin/g,kh,kw], explicit pads.
#[allow(clippy::too_many_arguments)]
pub(super) fn naive_conv(
    x: &[f32],
    xs: [usize; 4],
    w: &[f32],
    ws: [usize; 4],
    b: &[f32],
    stride: [usize; 2],
    pad: [usize; 4],
    dil: [usize; 2],
    g: usize,
) -> (Vec<f32>, [usize; 4]) {
    let [n, cin, h, wd] = xs;
    let [cout, cpg, kh, kw] = ws;
    let oh = (h + pad[0] + pad[1] - (dil[0] * (kh - 1) + 1)) / stride[0] + 1;
    let ow = (wd + pad[2] + pad[3] - (dil[1] * (kw - 1) + 1)) / stride[1] + 1;
    let opg = cout / g;
    let mut out = vec![0.0; n * cout * oh * ow];
    for ni in 0..n {
        for co in 0..cout {
            let gi = co / opg;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = b[co];
                    for ci in 0..cpg {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * stride[0] + ky * dil[0]) as i64 - pad[0] as i64;
                                let ix = (ox * stride[1] + kx * dil[1]) as i64 - pad[2] as i64;
                                if iy < 0 || ix < 0 || iy >= h as i64 || ix >= wd as i64 {
                                    continue;
                                }
                                let c = gi * cpg + ci;
                                s += x[((ni * cin + c) * h + iy as usize) * wd + ix as usize]
                                    * w[((co * cpg + ci) * kh + ky) * kw + kx];
                            }
                        }
                    }
                    out[((ni * cout + co) * oh + oy) * ow + ox] = s;
                }
            }
        }
    }
    let _ = cin;
    (out, [n, cout, oh, ow])
}

#[test]
fn conv_groups_pads_dilations() {
    let xs = [2, 4, 7, 6];
    let ws = [6, 2, 3, 2];
    let x = seq(xs.iter().product(), 0.1, -0.5);
    let w = seq(ws.iter().product(), 0.05, -0.2);
    let b = seq(6, 0.1, 0.0);
    for (pad_type, pad, stride, dil) in [
        ("custom", [1usize, 2, 0, 1], [2usize, 1], [1usize, 2]),
        ("valid", [0, 0, 0, 0], [1, 1], [1, 1]),
        ("same", [1, 1, 0, 1], [1, 1], [1, 1]),
    ] {
        let (want, os) = naive_conv(&x, xs, &w, ws, &b, stride, pad, dil, 2);
        let (wc, bc) = (
            ConstValue::f32(ws, &w).unwrap(),
            ConstValue::f32([6], &b).unwrap(),
        );
        let m = One::build(
            Opset::CoreML7,
            &[("x", f32t(&xs))],
            |f, v| {
                let wv = f.constant("w", wc).unwrap();
                let bv = f.constant("b", bc).unwrap();
                vec![
                    f.op("conv")
                        .input("x", &v[0])
                        .input("weight", &wv)
                        .input("bias", &bv)
                        .param("pad_type", pad_type)
                        .param("pad", pad.iter().map(|p| *p as i32).collect::<Vec<i32>>())
                        .param("strides", vec![stride[0] as i32, stride[1] as i32])
                        .param("dilations", vec![dil[0] as i32, dil[1] as i32])
                        .param("groups", 2i32)
                        .build_one()
                        .unwrap(),
                ]
            },
            Precision::Fp32,
        );
        let out = m.run(&[("x", Tensor::f32(xs, x.clone()))]).remove(0);
        assert_eq!(out.shape, os.to_vec(), "{pad_type}");
        close(&out.to_f32_vec(), &want, 1e-5);
    }
}

#[test]
fn conv_1x1_and_1d() {
    let xs = [1, 3, 2, 2];
    let x = seq(12, 0.1, -0.3);
    let w = seq(6, 0.2, -0.5);
    let (want, _) = naive_conv(
        &x,
        xs,
        &w,
        [2, 3, 1, 1],
        &[0.0, 0.0],
        [1, 1],
        [0; 4],
        [1, 1],
        1,
    );
    let wc = ConstValue::f32([2, 3, 1, 1], &w).unwrap();
    let m = One::build(
        Opset::CoreML7,
        &[("x", f32t(&xs))],
        |f, v| {
            let wv = f.constant("w", wc).unwrap();
            vec![
                f.op("conv")
                    .input("x", &v[0])
                    .input("weight", &wv)
                    .build_one()
                    .unwrap(),
            ]
        },
        Precision::Fp32,
    );
    close(
        &m.run(&[("x", Tensor::f32(xs, x.clone()))])[0].to_f32_vec(),
        &want,
        1e-6,
    );
    // 1-D: x [1, 3, 4] as [1, 3, 1, 4] with kernel [2, 3, 2]
    let x1 = seq(12, 0.1, -0.3);
    let w1 = seq(12, 0.2, -0.5);
    let (want, _) = naive_conv(
        &x1,
        [1, 3, 1, 4],
        &w1,
        [2, 3, 1, 2],
        &[0.0, 0.0],
        [1, 1],
        [0; 4],
        [1, 1],
        1,
    );
    let wc = ConstValue::f32([2, 3, 2], &w1).unwrap();
    let m = One::build(
        Opset::CoreML7,
        &[("x", f32t(&[1, 3, 4]))],
        |f, v| {
            let wv = f.constant("w", wc).unwrap();
            vec![
                f.op("conv")
                    .input("x", &v[0])
                    .input("weight", &wv)
                    .build_one()
                    .unwrap(),
            ]
        },
        Precision::Fp32,
    );
    let out = m.run(&[("x", Tensor::f32([1, 3, 4], x1))]).remove(0);
    assert_eq!(out.shape, vec![1, 2, 3]);
    close(&out.to_f32_vec(), &want, 1e-6);
}

#[test]
fn slice_by_index_masks_negative_stride_squeeze() {
    // x [3,4,5]; x[1, ::-2, 1:-1] with squeeze on axis 0 → [2, 3]
    let x: Vec<f32> = (0..60).map(|i| i as f32).collect();
    let m = One::build(
        Opset::CoreML7,
        &[("x", f32t(&[3, 4, 5]))],
        |f, v| {
            vec![
                f.op("slice_by_index")
                    .input("x", &v[0])
                    .param("begin", vec![1, 0, 1])
                    .param("end", vec![2, 0, -1])
                    .param("stride", vec![1, -2, 1])
                    .param(
                        "begin_mask",
                        ConstValue::bools([3], &[false, true, false]).unwrap(),
                    )
                    .param(
                        "end_mask",
                        ConstValue::bools([3], &[false, true, false]).unwrap(),
                    )
                    .param(
                        "squeeze_mask",
                        ConstValue::bools([3], &[true, false, false]).unwrap(),
                    )
                    .build_one()
                    .unwrap(),
            ]
        },
        Precision::Fp32,
    );
    let out = m.run(&[("x", Tensor::f32([3, 4, 5], x))]).remove(0);
    assert_eq!(out.shape, vec![2, 3]);
    // rows 3 and 1 of x[1], columns 1..4 → 20 + 15 + (1,2,3), 20 + 5 + (1,2,3)
    close(
        &out.to_f32_vec(),
        &[36.0, 37.0, 38.0, 26.0, 27.0, 28.0],
        0.0,
    );
}

#[test]
fn gather_negative_indices_and_gather_nd() {
    let x: Vec<f32> = (0..12).map(|i| i as f32).collect();
    let m = One::build(
        Opset::CoreML7,
        &[("x", f32t(&[3, 4]))],
        |f, v| {
            let idx = f
                .constant("idx", ConstValue::i32([2], &[-1, 1]).unwrap())
                .unwrap();
            let g = f
                .op("gather")
                .input("x", &v[0])
                .input("indices", &idx)
                .param("axis", -1i32)
                .build_one()
                .unwrap();
            let nd = f
                .constant("nd", ConstValue::i32([2, 2], &[2, 0, 0, -1]).unwrap())
                .unwrap();
            let h = f
                .op("gather_nd")
                .input("x", &v[0])
                .input("indices", &nd)
                .build_one()
                .unwrap();
            vec![g, h]
        },
        Precision::Fp32,
    );
    let out = m.run(&[("x", Tensor::f32([3, 4], x))]);
    assert_eq!(out[0].shape, vec![3, 2]);
    close(&out[0].to_f32_vec(), &[3.0, 1.0, 7.0, 5.0, 11.0, 9.0], 0.0);
    close(&out[1].to_f32_vec(), &[8.0, 3.0], 0.0);
}

#[test]
fn reductions_and_argmax_ties() {
    let x = vec![1.0, 5.0, 5.0, 2.0, 0.0, -1.0];
    close(
        &unary("reduce_mean", &x, &[2, 3], vec![("axes", vec![-1].into())]),
        &[11.0 / 3.0, 1.0 / 3.0],
        1e-6,
    );
    close(
        &unary(
            "reduce_sum",
            &x,
            &[2, 3],
            vec![("axes", vec![0].into()), ("keep_dims", true.into())],
        ),
        &[3.0, 5.0, 4.0],
        0.0,
    );
    close(&unary("reduce_max", &x, &[2, 3], vec![]), &[5.0], 0.0);
    // Comparison → bool → cast back to fp32.
    let m = One::build(
        Opset::CoreML7,
        &[("x", f32t(&[3]))],
        |f, v| {
            let b = f
                .op("less")
                .input("x", &v[0])
                .param("y", 2.0f32)
                .build_one()
                .unwrap();
            vec![
                f.op("cast")
                    .input("x", &b)
                    .param("dtype", "fp32")
                    .build_one()
                    .unwrap(),
            ]
        },
        Precision::Fp32,
    );
    close(
        &m.run(&[("x", Tensor::f32([3], vec![1.0, 2.0, 3.0]))])[0].to_f32_vec(),
        &[1.0, 0.0, 0.0],
        0.0,
    );
    // First maximum wins on ties (numpy): [1, 5, 5] → 1
    let m = One::build(
        Opset::CoreML7,
        &[("x", f32t(&[2, 3]))],
        |f, v| {
            vec![
                f.op("reduce_argmax")
                    .input("x", &v[0])
                    .param("axis", -1i32)
                    .build_one()
                    .unwrap(),
            ]
        },
        Precision::Fp32,
    );
    let out = m.run(&[("x", Tensor::f32([2, 3], x))]).remove(0);
    assert_eq!(out.data, crate::TensorData::I32(vec![1, 0]));
}

#[test]
fn norms() {
    // layer_norm over the last axis with gamma/beta.
    let x = vec![1.0, 2.0, 3.0, 4.0, -1.0, 0.0, 1.0, 6.0];
    let g = vec![1.0, 2.0, 0.5, -1.0];
    let b = vec![0.0, 0.1, 0.2, 0.3];
    let (gc, bc) = (
        ConstValue::f32([4], &g).unwrap(),
        ConstValue::f32([4], &b).unwrap(),
    );
    let m = One::build(
        Opset::CoreML7,
        &[("x", f32t(&[2, 4]))],
        |f, v| {
            let gv = f.constant("g", gc).unwrap();
            let bv = f.constant("b", bc).unwrap();
            vec![
                f.op("layer_norm")
                    .input("x", &v[0])
                    .input("gamma", &gv)
                    .input("beta", &bv)
                    .param("axes", vec![-1])
                    .param("epsilon", 1e-5f32)
                    .build_one()
                    .unwrap(),
            ]
        },
        Precision::Fp32,
    );
    let out = m
        .run(&[("x", Tensor::f32([2, 4], x.clone()))])
        .remove(0)
        .to_f32_vec();
    let mut want = Vec::new();
    for r in 0..2 {
        let row = &x[r * 4..r * 4 + 4];
        let mean = row.iter().sum::<f32>() / 4.0;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / 4.0;
        for i in 0..4 {
            want.push((row[i] - mean) / (var + 1e-5).sqrt() * g[i] + b[i]);
        }
    }
    close(&out, &want, 1e-5);
    // batch_norm: (x − mean)/sqrt(var + eps)·γ + β per channel of [1, 2, 1, 2]
    let xs = vec![1.0, 2.0, 3.0, 4.0];
    let m = One::build(
        Opset::CoreML7,
        &[("x", f32t(&[1, 2, 1, 2]))],
        |f, v| {
            let mean = f
                .constant("m", ConstValue::f32([2], &[1.0, 2.0]).unwrap())
                .unwrap();
            let var = f
                .constant("v", ConstValue::f32([2], &[4.0, 0.25]).unwrap())
                .unwrap();
            let gam = f
                .constant("g", ConstValue::f32([2], &[2.0, 1.0]).unwrap())
                .unwrap();
            let bet = f
                .constant("b", ConstValue::f32([2], &[0.5, -0.5]).unwrap())
                .unwrap();
            vec![
                f.op("batch_norm")
                    .input("x", &v[0])
                    .input("mean", &mean)
                    .input("variance", &var)
                    .input("gamma", &gam)
                    .input("beta", &bet)
                    .param("epsilon", 0.0f32)
                    .build_one()
                    .unwrap(),
            ]
        },
        Precision::Fp32,
    );
    let out = m
        .run(&[("x", Tensor::f32([1, 2, 1, 2], xs))])
        .remove(0)
        .to_f32_vec();
    close(&out, &[0.5, 1.5, 1.5, 3.5], 1e-6);
    // instance_norm of [1, 1, 1, 2] = [-1, 1] (eps 0)
    let got = unary(
        "instance_norm",
        &[3.0, 5.0],
        &[1, 1, 1, 2],
        vec![("epsilon", 0.0f32.into())],
    );
    close(&got, &[-1.0, 1.0], 1e-6);
}

#[test]
fn shape_ops() {
    let x: Vec<f32> = (0..6).map(|i| i as f32).collect();
    // split [2,3] on axis -1 into sizes [1,2]
    let m = One::build(
        Opset::CoreML7,
        &[("x", f32t(&[2, 3]))],
        |f, v| {
            let parts = f
                .op("split")
                .input("x", &v[0])
                .param("axis", -1i32)
                .param("split_sizes", vec![1, 2])
                .build()
                .unwrap();
            let inter = f
                .op("concat")
                .inputs("values", &[&parts[1], &parts[1]])
                .param("axis", 0i32)
                .param("interleave", true)
                .build_one()
                .unwrap();
            let st = f
                .op("stack")
                .inputs("values", &[&v[0], &v[0]])
                .param("axis", -1i32)
                .build_one()
                .unwrap();
            let tp = f
                .op("transpose")
                .input("x", &v[0])
                .param("perm", vec![1, 0])
                .build_one()
                .unwrap();
            let pd = f
                .op("pad")
                .input("x", &v[0])
                .param("pad", vec![0, 0, 2, 1])
                .param("mode", "reflect")
                .build_one()
                .unwrap();
            let tl = f
                .op("tile")
                .input("x", &v[0])
                .param("reps", vec![1, 2])
                .build_one()
                .unwrap();
            let bp = f
                .op("band_part")
                .input("x", &v[0])
                .param("lower", 0i32)
                .param("upper", 1i32)
                .build_one()
                .unwrap();
            vec![parts[0].clone(), inter, st, tp, pd, tl, bp]
        },
        Precision::Fp32,
    );
    let out = m.run(&[("x", Tensor::f32([2, 3], x))]);
    close(&out[0].to_f32_vec(), &[0.0, 3.0], 0.0);
    // interleave of [[1,2],[4,5]] with itself on axis 0 → rows 0,0,1,1
    close(
        &out[1].to_f32_vec(),
        &[1.0, 2.0, 1.0, 2.0, 4.0, 5.0, 4.0, 5.0],
        0.0,
    );
    assert_eq!(out[2].shape, vec![2, 3, 2]);
    close(
        &out[2].to_f32_vec(),
        &[0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 5.0, 5.0],
        0.0,
    );
    close(&out[3].to_f32_vec(), &[0.0, 3.0, 1.0, 4.0, 2.0, 5.0], 0.0);
    // reflect pad of [0,1,2] by (2,1) → [2,1,0,1,2,1]
    close(
        &out[4].to_f32_vec(),
        &[2.0, 1.0, 0.0, 1.0, 2.0, 1.0, 5.0, 4.0, 3.0, 4.0, 5.0, 4.0],
        0.0,
    );
    close(
        &out[5].to_f32_vec(),
        &[0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 3.0, 4.0, 5.0],
        0.0,
    );
    // band_part lower 0, upper 1: keep j − i ∈ [0, 1]
    close(&out[6].to_f32_vec(), &[0.0, 1.0, 0.0, 0.0, 4.0, 5.0], 0.0);
}

#[test]
fn upsample_fill_expand_select_cast() {
    let m = One::build(
        Opset::CoreML7,
        &[("x", f32t(&[1, 1, 2, 2]))],
        |f, v| {
            let up = f
                .op("upsample_nearest_neighbor")
                .input("x", &v[0])
                .param("scale_factor_height", 2i32)
                .param("scale_factor_width", 2i32)
                .build_one()
                .unwrap();
            let fl = f
                .op("fill")
                .param("shape", vec![2, 1])
                .param("value", 3.5f32)
                .build_one()
                .unwrap();
            let ed = f
                .op("expand_dims")
                .input("x", &v[0])
                .param("axes", vec![-1])
                .build_one()
                .unwrap();
            let cond = f
                .op("greater")
                .input("x", &v[0])
                .param("y", 1.5f32)
                .build_one()
                .unwrap();
            let sel = f
                .op("select")
                .input("cond", &cond)
                .input("a", &v[0])
                .param("b", -1.0f32)
                .build_one()
                .unwrap();
            let ci = f
                .op("cast")
                .input("x", &v[0])
                .param("dtype", "int32")
                .build_one()
                .unwrap();
            vec![up, fl, ed, sel, ci]
        },
        Precision::Fp32,
    );
    let out = m.run(&[("x", Tensor::f32([1, 1, 2, 2], vec![1.0, 2.0, 3.0, -4.7]))]);
    close(
        &out[0].to_f32_vec(),
        &[
            1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, -4.7, -4.7, 3.0, 3.0, -4.7, -4.7,
        ],
        0.0,
    );
    close(&out[1].to_f32_vec(), &[3.5, 3.5], 0.0);
    assert_eq!(out[2].shape, vec![1, 1, 2, 2, 1]);
    close(&out[3].to_f32_vec(), &[-1.0, 2.0, 3.0, -1.0], 0.0);
    assert_eq!(out[4].data, crate::TensorData::I32(vec![1, 2, 3, -4]));
}

#[test]
fn fp16_program_rounds_and_overflows() {
    let t16 = TensorType::new(DType::F16, vec![3]);
    let build = |p| {
        One::build(
            Opset::CoreML7,
            &[("x", t16.clone())],
            |f, v| {
                let y = f
                    .constant(
                        "y",
                        ConstValue::f16_from_f32([3], &[100.0, 1e-4, 0.0]).unwrap(),
                    )
                    .unwrap();
                let s = f
                    .op("add")
                    .input("x", &v[0])
                    .input("y", &y)
                    .build_one()
                    .unwrap();
                vec![
                    f.op("cast")
                        .input("x", &s)
                        .param("dtype", "fp32")
                        .build_one()
                        .unwrap(),
                ]
            },
            p,
        )
    };
    let x = Tensor::f32([3], vec![65504.0, 1.0, 1.0 / 3.0]);
    let p = build(Precision::Program)
        .run(&[("x", x.clone())])
        .remove(0)
        .to_f32_vec();
    assert!(p[0].is_infinite(), "65504 + 100 overflows fp16: {p:?}");
    assert_eq!(p[1], 1.0, "1 + 1e-4 rounds to 1 in fp16");
    assert_eq!(p[2], half::f16::from_f32(1.0 / 3.0).to_f32());
    let f = build(Precision::Fp32)
        .run(&[("x", x)])
        .remove(0)
        .to_f32_vec();
    assert_eq!(f[0], 65604.0);
    assert!((f[2] - 1.0 / 3.0).abs() < 1e-7);
}

#[test]
fn sdpa_ios18() {
    let (q, k, v) = (
        seq(2 * 3 * 4, 0.1, -0.3),
        seq(2 * 5 * 4, 0.2, -0.5),
        seq(2 * 5 * 2, 0.3, -1.0),
    );
    let m = One::build(
        Opset::CoreML8,
        &[
            ("q", f32t(&[2, 3, 4])),
            ("k", f32t(&[2, 5, 4])),
            ("v", f32t(&[2, 5, 2])),
        ],
        |f, vs| {
            vec![
                f.op("scaled_dot_product_attention")
                    .input("query", &vs[0])
                    .input("key", &vs[1])
                    .input("value", &vs[2])
                    .build_one()
                    .unwrap(),
            ]
        },
        Precision::Fp32,
    );
    let out = m
        .run(&[
            ("q", Tensor::f32([2, 3, 4], q.clone())),
            ("k", Tensor::f32([2, 5, 4], k.clone())),
            ("v", Tensor::f32([2, 5, 2], v.clone())),
        ])
        .remove(0);
    let mut want = Vec::new();
    for b in 0..2 {
        for i in 0..3 {
            let s: Vec<f32> = (0..5)
                .map(|j| {
                    (0..4)
                        .map(|e| q[b * 12 + i * 4 + e] * k[b * 20 + j * 4 + e])
                        .sum::<f32>()
                        / 2.0
                })
                .collect();
            let m = s.iter().cloned().fold(f32::MIN, f32::max);
            let z: f32 = s.iter().map(|x| (x - m).exp()).sum();
            for d in 0..2 {
                want.push(
                    (0..5)
                        .map(|j| (s[j] - m).exp() / z * v[b * 10 + j * 2 + d])
                        .sum(),
                );
            }
        }
    }
    close(&out.to_f32_vec(), &want, 1e-5);
}

#[test]
fn constexpr_forms() {
    // iOS16 lut_to_dense: 2-bit indices [3, 0, 1, 2, 2] over lut [10, 20, 30, 40].
    let idx = sd_mil::blob::pack_bits(&[3, 0, 1, 2, 2], 2);
    let lut = ConstValue::f16_from_f32([4], &[10.0, 20.0, 30.0, 40.0]).unwrap();
    let m = One::build(
        Opset::CoreML6,
        &[("x", TensorType::new(DType::F16, vec![5]))],
        |f, v| {
            let w = f
                .op("constexpr_lut_to_dense")
                .attr("lut", lut)
                .attr(
                    "indices",
                    ConstValue::from_bytes(TensorType::new(DType::U8, vec![idx.len()]), idx)
                        .unwrap(),
                )
                .attr(
                    "shape",
                    ConstValue::from_bytes(
                        TensorType::new(DType::U32, vec![1]),
                        5u32.to_le_bytes().to_vec(),
                    )
                    .unwrap(),
                )
                .build_one()
                .unwrap();
            let aq = f
                .op("constexpr_affine_dequantize")
                .attr(
                    "quantized_data",
                    ConstValue::from_bytes(
                        TensorType::new(DType::U8, vec![5]),
                        vec![0u8, 1, 2, 3, 255],
                    )
                    .unwrap(),
                )
                .attr(
                    "zero_point",
                    ConstValue::from_bytes(TensorType::new(DType::U8, vec![]), vec![1u8]).unwrap(),
                )
                .attr("scale", ConstValue::f16_from_f32([], &[0.5]).unwrap())
                .attr("axis", ConstValue::scalar_i32(0))
                .build_one()
                .unwrap();
            let a = f
                .op("add")
                .input("x", &v[0])
                .input("y", &w)
                .build_one()
                .unwrap();
            vec![
                f.op("add")
                    .input("x", &a)
                    .input("y", &aq)
                    .build_one()
                    .unwrap(),
            ]
        },
        Precision::Fp32,
    );
    let out = m
        .run(&[("x", Tensor::f32([5], vec![0.0; 5]))])
        .remove(0)
        .to_f32_vec();
    // lut → [40, 10, 20, 30, 30]; affine 0.5·(q − 1) → [−0.5, 0, 0.5, 1, 127]
    close(&out, &[39.5, 10.0, 20.5, 31.0, 157.0], 0.0);
}

#[test]
fn constexpr_ios18_grouped_lut_and_blockwise() {
    use crate::kernels::decompress;
    // indices u2 [4, 2]; lut [2, 1, 4, 1]: rows 0–1 use palette 0, rows 2–3 palette 1.
    let idx: Vec<u8> = vec![0, 1, 2, 3, 3, 2, 1, 0];
    let ib = sd_mil::blob::pack_bits(&idx, 2);
    let iv = ConstValue::from_bytes(TensorType::new(DType::U2, vec![4, 2]), ib).unwrap();
    let lut = ConstValue::f32([2, 1, 4, 1], &[0.0, 1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 13.0]).unwrap();
    let mut f = FunctionBuilder::new(Opset::CoreML8);
    let w = f
        .op("constexpr_lut_to_dense")
        .inline("indices", iv)
        .inline("lut", lut)
        .build_one()
        .unwrap();
    let bs = f
        .op("constexpr_blockwise_shift_scale")
        .inline(
            "data",
            ConstValue::from_bytes(
                TensorType::new(DType::I8, vec![2, 4]),
                vec![1u8, 2, 3, 4, 0xFF, 0, 1, 2],
            )
            .unwrap(),
        )
        .inline(
            "scale",
            ConstValue::f32([2, 2], &[1.0, 2.0, 3.0, 4.0]).unwrap(),
        )
        .inline(
            "offset",
            ConstValue::from_bytes(TensorType::new(DType::I8, vec![2, 2]), vec![1u8, 0, 0, 1])
                .unwrap(),
        )
        .build_one()
        .unwrap();
    let func = f.finish(&[&w, &bs]).unwrap();
    let ops: Vec<_> = func
        .operations
        .iter()
        .filter(|o| o.op_type.starts_with("constexpr"))
        .collect();
    let none = |_: &str| None;
    let (lv, _) = decompress(ops[0], &|p| {
        crate::kernels::constexpr::bound_const(ops[0], p, &none)
    })
    .unwrap();
    assert_eq!(lv, vec![0.0, 1.0, 2.0, 3.0, 13.0, 12.0, 11.0, 10.0]);
    let (bv, _) = decompress(ops[1], &|p| {
        crate::kernels::constexpr::bound_const(ops[1], p, &none)
    })
    .unwrap();
    // blocks of [1, 2]: row 0 → scale 1 (offset 1), 2 (offset 0); row 1 → 3 (0), 4 (1)
    assert_eq!(bv, vec![0.0, 1.0, 6.0, 8.0, -3.0, 0.0, 0.0, 4.0]);
}

#[test]
fn typed_errors() {
    let m = One::build(
        Opset::CoreML7,
        &[("x", f32t(&[2, 2]))],
        |f, v| vec![f.op("relu").input("x", &v[0]).build_one().unwrap()],
        Precision::Fp32,
    );
    let run = |ins: Vec<(&str, Tensor)>| {
        m.model
            .predict(&ins.into_iter().map(|(n, t)| (n.to_string(), t)).collect())
    };
    assert!(matches!(
        run(vec![("y", Tensor::f32([2, 2], vec![0.0; 4]))]),
        Err(RuntimeError::UnknownInput { .. })
    ));
    assert!(matches!(
        run(vec![]),
        Err(RuntimeError::MissingInput { .. })
    ));
    assert!(matches!(
        run(vec![("x", Tensor::f32([4], vec![0.0; 4]))]),
        Err(RuntimeError::InputShape { .. })
    ));
    assert!(matches!(
        run(vec![("x", Tensor::i32([2, 2], vec![0; 4]))]),
        Err(RuntimeError::InputDType { .. })
    ));
    // An op type with no kernel.
    let mut f = FunctionBuilder::new(Opset::CoreML7);
    let x = f.input("x", f32t(&[2])).unwrap();
    let y = f.op("relu").input("x", &x).build_one().unwrap();
    let mut func = f.finish(&[&y]).unwrap();
    func.operations.last_mut().unwrap().op_type = "frobnicate".into();
    let desc = sd_mil::Model::from_program(Program::with_main(func.clone()))
        .unwrap()
        .description;
    let err = Model::plan(
        &func,
        desc,
        LoadOptions::default(),
        &crate::kernels::Registry::standard(),
    )
    .err()
    .unwrap();
    assert!(matches!(err, RuntimeError::UnknownOp { .. }), "{err}");
}
