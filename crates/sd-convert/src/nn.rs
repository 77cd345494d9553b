//! The layer vocabulary the network builders share: a [`Net`] wraps sd-mil's
//! [`FunctionBuilder`] with the component's weights and the compute precision, and offers
//! convolutions, linear layers (as ops or as 1×1 convolutions on the (B, C, 1, S) layout), group
//! and layer norms, and the element-wise and shape ops the builders need.

use crate::error::Result;
use crate::weights::WeightStore;
use sd_mil::builder::FunctionBuilder;
use sd_mil::{ConstValue, DType, Opset, TensorType, Var};
use std::collections::HashMap;

/// Computation precision of a built network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// fp16 weights and activations, as Apple's packages (default).
    #[default]
    Float16,
    /// fp32 everywhere (the reference form for correctness checks).
    Float32,
}

impl Precision {
    /// The MIL element type of weights and activations.
    pub fn dtype(self) -> DType {
        match self {
            Precision::Float16 => DType::F16,
            Precision::Float32 => DType::F32,
        }
    }
}

/// A MIL identifier from a weight key or module path (`a.b.0` → `a_b_0`).
pub fn ident(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    out
}

/// Joins a module prefix and a child name with a dot.
pub fn join(prefix: &str, child: &str) -> String {
    if prefix.is_empty() {
        child.to_string()
    } else {
        format!("{prefix}.{child}")
    }
}

/// A function under construction together with the weights it reads.
pub struct Net<'w> {
    /// The function builder.
    pub fb: FunctionBuilder,
    /// The component's weights.
    pub w: &'w WeightStore,
    /// Precision of weights and activations.
    pub precision: Precision,
    loaded: HashMap<String, Var>,
}

/// The epsilon of the `batch_norm` that applies a group norm's affine (coremltools' default,
/// which its `fuse_elementwise_to_batchnorm` uses; the statistics are 0 and 1).
pub const AFFINE_BATCH_NORM_EPS: f32 = 1e-5;

fn i32s(v: &[usize]) -> Vec<i32> {
    v.iter().map(|&d| d as i32).collect()
}

impl<'w> Net<'w> {
    /// An empty function for `opset` reading `w`.
    pub fn new(opset: Opset, w: &'w WeightStore, precision: Precision) -> Self {
        Net {
            fb: FunctionBuilder::new(opset),
            w,
            precision,
            loaded: HashMap::new(),
        }
    }

    /// The compute element type.
    pub fn dtype(&self) -> DType {
        self.precision.dtype()
    }

    /// A function input.
    pub fn input(&mut self, name: &str, dtype: DType, shape: &[usize]) -> Result<Var> {
        Ok(self
            .fb
            .input(name, TensorType::new(dtype, shape.to_vec()))?)
    }

    /// A scalar in the compute type.
    pub fn scalar(&self, v: f32) -> ConstValue {
        match self.precision {
            Precision::Float16 => ConstValue::scalar_f16(v),
            Precision::Float32 => ConstValue::scalar_f32(v),
        }
    }

    /// A tensor constant in the compute type.
    pub fn tensor(&mut self, name: &str, shape: &[usize], values: &[f32]) -> Result<Var> {
        let v = match self.precision {
            Precision::Float16 => ConstValue::f16_from_f32(shape.to_vec(), values)?,
            Precision::Float32 => ConstValue::f32(shape.to_vec(), values)?,
        };
        let name = self.fb.unique_name(&ident(name));
        Ok(self.fb.constant(&name, v)?)
    }

    /// Weight `key` (stored with shape `expected`) as a constant of shape `view`. A key loaded
    /// twice gives the same constant.
    pub fn weight_view(&mut self, key: &str, expected: &[usize], view: &[usize]) -> Result<Var> {
        if let Some(v) = self.loaded.get(key) {
            return Ok(v.clone());
        }
        let c = self.w.constant(key, expected, view, self.dtype())?;
        let var = self.fb.constant(&ident(key), c)?;
        self.loaded.insert(key.to_string(), var.clone());
        Ok(var)
    }

    /// Weight `key` of shape `shape`.
    pub fn weight(&mut self, key: &str, shape: &[usize]) -> Result<Var> {
        self.weight_view(key, shape, shape)
    }

    /// A fresh op name from a module path.
    pub fn name(&mut self, hint: &str) -> String {
        self.fb.unique_name(&ident(hint))
    }

    /// A convolution `prefix` with a k×k kernel, `stride`, symmetric zero padding `pad` and a bias.
    pub fn conv2d(
        &mut self,
        x: &Var,
        prefix: &str,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<Var> {
        let w = self.conv_weight(x, prefix, cout, k)?;
        let b = self.weight(&join(prefix, "bias"), &[cout])?;
        self.conv_raw(x, &w, Some(&b), prefix, stride, pad)
    }

    /// A bias-free convolution `prefix` (k×k kernel, `stride`, symmetric zero padding `pad`),
    /// such as CLIP's patch embedding.
    pub fn conv2d_no_bias(
        &mut self,
        x: &Var,
        prefix: &str,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<Var> {
        let w = self.conv_weight(x, prefix, cout, k)?;
        self.conv_raw(x, &w, None, prefix, stride, pad)
    }

    /// The k×k weight `prefix.weight` [cout, Cin, k, k] of a convolution applied to `x`.
    fn conv_weight(&mut self, x: &Var, prefix: &str, cout: usize, k: usize) -> Result<Var> {
        let cin = x.ty.shape[1];
        self.weight(&join(prefix, "weight"), &[cout, cin, k, k])
    }

    fn conv_raw(
        &mut self,
        x: &Var,
        w: &Var,
        b: Option<&Var>,
        hint: &str,
        stride: usize,
        pad: usize,
    ) -> Result<Var> {
        let name = self.name(hint);
        let mut op = self
            .fb
            .op("conv")
            .name(&name)
            .input("x", x)
            .input("weight", w);
        if let Some(b) = b {
            op = op.input("bias", b);
        }
        let op = op
            .param("strides", [stride as i32, stride as i32])
            .param("pad_type", if pad == 0 { "valid" } else { "custom" })
            .param("pad", [pad as i32; 4])
            .param("dilations", [1, 1])
            .param("groups", 1);
        Ok(op.build_one()?)
    }

    /// A `nn.Linear` (or 1×1 `nn.Conv2d`) `prefix` applied as a 1×1 convolution to x in
    /// (B, Cin, H, W) or (B, Cin, 1, S) layout.
    pub fn linear_conv(&mut self, x: &Var, prefix: &str, cout: usize, bias: bool) -> Result<Var> {
        let cin = x.ty.shape[1];
        let key = join(prefix, "weight");
        let stored = self.w.shape(&key)?;
        let expected: Vec<usize> = if stored.len() == 4 {
            vec![cout, cin, 1, 1]
        } else {
            vec![cout, cin]
        };
        let w = self.weight_view(&key, &expected, &[cout, cin, 1, 1])?;
        let b = if bias {
            Some(self.weight(&join(prefix, "bias"), &[cout])?)
        } else {
            None
        };
        self.conv_raw(x, &w, b.as_ref(), prefix, 1, 0)
    }

    /// A `nn.Linear` `prefix` as a `linear` op over the last axis.
    pub fn linear(&mut self, x: &Var, prefix: &str, cout: usize, bias: bool) -> Result<Var> {
        let cin = *x.ty.shape.last().expect("rank ≥ 1");
        let w = self.weight(&join(prefix, "weight"), &[cout, cin])?;
        let b = if bias {
            Some(self.weight(&join(prefix, "bias"), &[cout])?)
        } else {
            None
        };
        let name = self.name(prefix);
        let mut op = self
            .fb
            .op("linear")
            .name(&name)
            .input("x", x)
            .input("weight", &w);
        if let Some(b) = &b {
            op = op.input("bias", b);
        }
        Ok(op.build_one()?)
    }

    /// `nn.GroupNorm` `prefix` on (B, C, H, W), decomposed as coremltools writes it:
    /// reshape (B, G, C/G, H, W) → mean → centre → mean of squares → +eps → sqrt → divide →
    /// reshape back → the per-channel affine as a `batch_norm` with zero mean and unit variance.
    ///
    /// The affine is the `batch_norm` that coremltools' `fuse_elementwise_to_batchnorm` makes
    /// of `·gamma + beta` (Apple's packages have one per group norm, with coremltools' default
    /// epsilon [`AFFINE_BATCH_NORM_EPS`]): a `mul`/`add` pair left in an fp16 program makes
    /// coremltools' own passes fail when it re-optimizes the package (its fusion then builds a
    /// `batch_norm` with fp32 statistics), e.g. in `palettize_weights`.
    pub fn group_norm(&mut self, x: &Var, prefix: &str, groups: usize, eps: f64) -> Result<Var> {
        let s = x.ty.shape.clone();
        let (b, c, h, w) = (s[0], s[1], s[2], s[3]);
        let gamma = self.weight(&join(prefix, "weight"), &[c])?;
        let beta = self.weight(&join(prefix, "bias"), &[c])?;
        let r = self.reshape(x, &[b, groups, c / groups, h, w])?;
        let mean = self.reduce_mean(&r, &[2, 3, 4])?;
        let d = self.binary("sub", &r, &mean)?;
        let sq = self.unary("square", &d)?;
        let var = self.reduce_mean(&sq, &[2, 3, 4])?;
        let ve = self.add_scalar(&var, eps as f32)?;
        let sd = self.unary("sqrt", &ve)?;
        let n = self.binary("real_div", &d, &sd)?;
        let n = self.reshape(&n, &[b, c, h, w])?;
        let name = self.name(&join(prefix, "affine"));
        let zeros = self.tensor(&format!("{name}_mean"), &[c], &vec![0.0; c])?;
        let ones = self.tensor(&format!("{name}_variance"), &[c], &vec![1.0; c])?;
        let eps = self.scalar(AFFINE_BATCH_NORM_EPS);
        Ok(self
            .fb
            .op("batch_norm")
            .name(&name)
            .input("x", &n)
            .input("mean", &zeros)
            .input("variance", &ones)
            .input("gamma", &gamma)
            .input("beta", &beta)
            .param("epsilon", eps)
            .build_one()?)
    }

    /// `nn.LayerNorm` `prefix` over axis `axis` (−1 for (B, S, C); 1 for (B, C, 1, S)).
    pub fn layer_norm(&mut self, x: &Var, prefix: &str, axis: i32, eps: f64) -> Result<Var> {
        let r = x.ty.rank() as i32;
        let c = x.ty.shape[((axis + r) % r) as usize];
        let gamma = self.weight(&join(prefix, "weight"), &[c])?;
        let beta = self.weight(&join(prefix, "bias"), &[c])?;
        let name = self.name(prefix);
        let eps = self.scalar(eps as f32);
        Ok(self
            .fb
            .op("layer_norm")
            .name(&name)
            .input("x", x)
            .param("axes", [axis])
            .input("gamma", &gamma)
            .input("beta", &beta)
            .param("epsilon", eps)
            .build_one()?)
    }

    /// A one-input op (`silu`, `sqrt`, `square`, `sigmoid`, `sin`, …).
    pub fn unary(&mut self, op: &str, x: &Var) -> Result<Var> {
        Ok(self.fb.op(op).input("x", x).build_one()?)
    }

    /// A two-input element-wise op (`add`, `sub`, `mul`, `real_div`).
    pub fn binary(&mut self, op: &str, x: &Var, y: &Var) -> Result<Var> {
        Ok(self.fb.op(op).input("x", x).input("y", y).build_one()?)
    }

    /// `x + y`.
    pub fn add(&mut self, x: &Var, y: &Var) -> Result<Var> {
        self.binary("add", x, y)
    }

    /// `x · s` for a scalar in the compute type.
    pub fn mul_scalar(&mut self, x: &Var, s: f32) -> Result<Var> {
        let s = self.scalar(s);
        Ok(self.fb.op("mul").input("x", x).param("y", s).build_one()?)
    }

    /// `x + s` for a scalar in the compute type.
    pub fn add_scalar(&mut self, x: &Var, s: f32) -> Result<Var> {
        let s = self.scalar(s);
        Ok(self.fb.op("add").input("x", x).param("y", s).build_one()?)
    }

    /// `reduce_mean` over `axes`, keeping them.
    pub fn reduce_mean(&mut self, x: &Var, axes: &[i32]) -> Result<Var> {
        Ok(self
            .fb
            .op("reduce_mean")
            .input("x", x)
            .param("axes", axes.to_vec())
            .param("keep_dims", true)
            .build_one()?)
    }

    /// `reduce_sum` over `axes`, keeping them.
    pub fn reduce_sum(&mut self, x: &Var, axes: &[i32]) -> Result<Var> {
        Ok(self
            .fb
            .op("reduce_sum")
            .input("x", x)
            .param("axes", axes.to_vec())
            .param("keep_dims", true)
            .build_one()?)
    }

    /// `reduce_max` over `axes`, keeping them.
    pub fn reduce_max(&mut self, x: &Var, axes: &[i32]) -> Result<Var> {
        Ok(self
            .fb
            .op("reduce_max")
            .input("x", x)
            .param("axes", axes.to_vec())
            .param("keep_dims", true)
            .build_one()?)
    }

    /// Reshape to a static shape.
    pub fn reshape(&mut self, x: &Var, shape: &[usize]) -> Result<Var> {
        Ok(self
            .fb
            .op("reshape")
            .input("x", x)
            .param("shape", i32s(shape))
            .build_one()?)
    }

    /// Transpose by `perm`.
    pub fn transpose(&mut self, x: &Var, perm: &[i32]) -> Result<Var> {
        Ok(self
            .fb
            .op("transpose")
            .input("x", x)
            .param("perm", perm.to_vec())
            .build_one()?)
    }

    /// `x[begin..end]` on every axis (static bounds, stride 1).
    pub fn slice(&mut self, x: &Var, begin: &[usize], end: &[usize]) -> Result<Var> {
        Ok(self
            .fb
            .op("slice_by_index")
            .input("x", x)
            .param("begin", i32s(begin))
            .param("end", i32s(end))
            .build_one()?)
    }

    /// `x[..., a..b, ...]` on one axis.
    pub fn slice_axis(&mut self, x: &Var, axis: usize, a: usize, b: usize) -> Result<Var> {
        let mut begin = vec![0; x.ty.rank()];
        let mut end = x.ty.shape.clone();
        begin[axis] = a;
        end[axis] = b;
        self.slice(x, &begin, &end)
    }

    /// Concatenation on `axis`.
    pub fn concat(&mut self, values: &[&Var], axis: i32) -> Result<Var> {
        if values.len() == 1 {
            return Ok(values[0].clone());
        }
        Ok(self
            .fb
            .op("concat")
            .inputs("values", values)
            .param("axis", axis)
            .param("interleave", false)
            .build_one()?)
    }

    /// Split on `axis` into parts of `sizes`.
    pub fn split(&mut self, x: &Var, sizes: &[usize], axis: i32) -> Result<Vec<Var>> {
        Ok(self
            .fb
            .op("split")
            .input("x", x)
            .param("split_sizes", i32s(sizes))
            .param("axis", axis)
            .build()?)
    }

    /// `cast` to `dtype` ("fp16", "fp32", "int32").
    pub fn cast(&mut self, x: &Var, dtype: &str, name: Option<&str>) -> Result<Var> {
        let mut op = self.fb.op("cast").input("x", x).param("dtype", dtype);
        if let Some(n) = name {
            op = op.name(n);
        }
        Ok(op.build_one()?)
    }

    /// `matmul`.
    pub fn matmul(&mut self, x: &Var, y: &Var, tx: bool, ty: bool) -> Result<Var> {
        Ok(self
            .fb
            .op("matmul")
            .input("x", x)
            .input("y", y)
            .param("transpose_x", tx)
            .param("transpose_y", ty)
            .build_one()?)
    }

    /// `softmax` on `axis`.
    pub fn softmax(&mut self, x: &Var, axis: i32) -> Result<Var> {
        Ok(self
            .fb
            .op("softmax")
            .input("x", x)
            .param("axis", axis)
            .build_one()?)
    }

    /// A model output: cast to fp32 under the output's name (Apple declares every output fp32).
    pub fn output(&mut self, x: &Var, name: &str) -> Result<Var> {
        if x.ty.dtype == DType::F32 {
            Ok(self
                .fb
                .op("identity")
                .name(name)
                .input("x", x)
                .build_one()?)
        } else {
            self.cast(x, "fp32", Some(name))
        }
    }

    /// Nearest-neighbour ×2 up-sampling.
    pub fn upsample2x(&mut self, x: &Var) -> Result<Var> {
        Ok(self
            .fb
            .op("upsample_nearest_neighbor")
            .input("x", x)
            .param("scale_factor_height", 2.0f32)
            .param("scale_factor_width", 2.0f32)
            .build_one()?)
    }
}
