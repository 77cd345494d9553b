//! The translator: a MIL function (after the graph passes) becomes a [`Program`] of launches
//! over symbolic buffers, the buffers' lifetimes, and the constants to upload.
//!
//! Every value keeps its program element type in memory (fp16 as fp16, int32 as int32, bool
//! as one byte) — in [`Precision::Fp32`] fp16 values are stored as fp32 instead. Shapes are
//! the program's declared ones (all static). Reshape-like ops alias their input's buffer;
//! every other op writes a fresh buffer, placed later by the memory plan.

mod elementwise;
mod layout;
mod linalg;
mod norm;

use super::EngineError;
use super::memory_plan::Lifetime;
use super::program::{Addr, KArg, Launch, Program, Region};
use crate::Precision;
use crate::kernels::{decompress, is_constexpr};
use sd_mil::catalogue::{self, Default as PDefault, OpSpec};
use sd_mil::{Binding, ConstValue, DType, Function, Operation, TensorType};
use std::collections::HashMap;

/// Storage element type codes (`DT_*` in ops.cu).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Dt {
    F16 = 0,
    F32 = 1,
    I32 = 2,
    U8 = 3,
}

impl Dt {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dt::F16 => 2,
            Dt::F32 | Dt::I32 => 4,
            Dt::U8 => 1,
        }
    }
    /// The code passed to kernels.
    pub fn code(self) -> KArg {
        KArg::i32(self as i32)
    }
}

/// A tensor operand: where it lives, its shape and its storage type.
#[derive(Debug, Clone)]
pub struct TRef {
    pub addr: Addr,
    pub shape: Vec<usize>,
    pub dt: Dt,
}

impl TRef {
    /// Element count.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// Bytes.
    pub fn bytes(&self) -> usize {
        self.len() * self.dt.size()
    }
}

/// Row-major strides of a shape, in elements.
pub fn packed_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// The `Strided3` struct of ops.cu.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Strided3 {
    pub rank: i32,
    /// The 4 bytes C puts after `int rank`, written as zeros so no byte passed is uninitialised.
    pub _pad: i32,
    pub dims: [i64; 6],
    pub s0: [i64; 6],
    pub s1: [i64; 6],
    pub s2: [i64; 6],
}

impl Strided3 {
    /// From per-axis dims and three stride lists (rank ≤ 6).
    pub fn new(dims: &[usize], s0: &[i64], s1: &[i64], s2: &[i64]) -> Result<Self, String> {
        if dims.len() > 6 {
            return Err(format!(
                "rank {} is above the 6 the CUDA kernels take",
                dims.len()
            ));
        }
        let mut s = Strided3 {
            rank: dims.len() as i32,
            ..Default::default()
        };
        for i in 0..dims.len() {
            s.dims[i] = dims[i] as i64;
            s.s0[i] = s0[i];
            s.s1[i] = s1[i];
            s.s2[i] = s2[i];
        }
        Ok(s)
    }
}

/// A constant of the program.
struct Constant {
    name: String,
    ty: TensorType,
    /// The stored value (`None` for a decompressed constexpr result).
    value: Option<ConstValue>,
    /// Decompressed values of a constexpr op (f32), instead of `value`'s data.
    decompressed: Option<Vec<f32>>,
    /// Its upload, once some op reads it as a tensor.
    uploaded: Option<TRef>,
}

enum Src {
    /// A runtime value: (buffer, shape, storage type).
    Value(usize),
    Const(usize),
}

/// What the translator hands back.
pub struct Translation {
    pub program: Program,
    /// Each planned buffer's size and lifetime.
    pub buffers: Vec<Lifetime>,
    /// The weights region's size and what to write into it: (offset, bytes).
    pub weights_bytes: usize,
    pub uploads: Vec<(usize, Vec<u8>)>,
    /// Group-norm statistics scratch size in bytes.
    pub stats_bytes: usize,
    /// Model inputs: (name, operand).
    pub inputs: Vec<(String, TRef)>,
    /// Model outputs: (name, operand).
    pub outputs: Vec<(String, TRef)>,
    /// Executed ops by type.
    pub op_counts: HashMap<String, usize>,
    /// Every runtime value by name.
    pub values: HashMap<String, TRef>,
}

/// Translation state.
pub struct Builder<'a> {
    pub(crate) device: &'a DeviceInfo,
    pub(crate) precision: Precision,
    names: HashMap<String, Src>,
    values: Vec<TRef>,
    consts: Vec<Constant>,
    pub(crate) buffers: Vec<Lifetime>,
    pub(crate) program: Program,
    weights_bytes: usize,
    uploads: Vec<(usize, Vec<u8>)>,
    pub(crate) stats_bytes: usize,
    /// Index of the op being translated (the lifetimes' clock).
    step: usize,
    /// The op being translated.
    op_name: String,
    op_type: String,
}

/// What translation needs to know of the GPU (nothing that needs one present).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Streaming multiprocessors (grid sizes are chosen to fill them).
    pub sms: u32,
}

/// Translates `f` for a GPU like `device`.
pub fn translate(
    f: &Function,
    device: &DeviceInfo,
    precision: Precision,
) -> Result<Translation, EngineError> {
    let mut b = Builder {
        device,
        precision,
        names: HashMap::new(),
        values: Vec::new(),
        consts: Vec::new(),
        buffers: Vec::new(),
        program: Program::default(),
        weights_bytes: 0,
        uploads: Vec::new(),
        stats_bytes: 0,
        step: 0,
        op_name: String::new(),
        op_type: String::new(),
    };
    let mut inputs = Vec::new();
    for v in &f.inputs {
        let dt = b
            .storage(v.ty.dtype)
            .map_err(|reason| EngineError::Unsupported {
                op: format!("input {}", v.name),
                op_type: "input".into(),
                reason,
            })?;
        let t = b.fresh(&v.ty.shape, dt);
        b.names.insert(v.name.clone(), Src::Value(b.values.len()));
        b.values.push(t.clone());
        inputs.push((v.name.clone(), t));
    }
    let mut op_counts: HashMap<String, usize> = HashMap::new();
    for (i, op) in f.operations.iter().enumerate() {
        b.step = i + 1;
        if let Some(v) = op.const_value() {
            b.add_const(&op.outputs[0].name, v.ty.clone(), Some(v.clone()), None);
            continue;
        }
        if is_constexpr(&op.op_type) {
            b.add_constexpr(op)?;
            continue;
        }
        *op_counts.entry(op.op_type.clone()).or_default() += 1;
        b.op_name = op.name.clone();
        b.op_type = op.op_type.clone();
        let spec = catalogue::lookup(&op.op_type, f.opset);
        let outs = b
            .translate_op(op, spec)
            .map_err(|reason| EngineError::Unsupported {
                op: op.name.clone(),
                op_type: op.op_type.clone(),
                reason,
            })?;
        for (v, t) in op.outputs.iter().zip(outs) {
            b.names.insert(v.name.clone(), Src::Value(b.values.len()));
            b.values.push(t);
        }
    }
    let end = f.operations.len() + 1;
    let mut outputs = Vec::new();
    for name in &f.outputs {
        let t = b
            .operand_named(name)
            .map_err(|reason| EngineError::Unsupported {
                op: "<outputs>".into(),
                op_type: "output".into(),
                reason,
            })?;
        if let Region::Buffer(k) = t.addr.region {
            b.buffers[k].last = end;
        }
        outputs.push((name.clone(), t));
    }
    for (_, t) in &inputs {
        if let Region::Buffer(k) = t.addr.region {
            b.buffers[k].first = 0;
        }
    }
    Ok(Translation {
        program: b.program,
        buffers: b.buffers,
        weights_bytes: b.weights_bytes,
        uploads: b.uploads,
        stats_bytes: b.stats_bytes,
        values: b
            .names
            .iter()
            .filter_map(|(n, s)| match s {
                Src::Value(v) => Some((n.clone(), b.values[*v].clone())),
                Src::Const(_) => None,
            })
            .collect(),
        inputs,
        outputs,
        op_counts,
    })
}

/// Host bytes of `vals` stored as `dt`.
fn encode(vals: impl Iterator<Item = f64>, dt: Dt) -> Vec<u8> {
    let mut out = Vec::new();
    for v in vals {
        match dt {
            Dt::F16 => out.extend(half::f16::from_f64(v).to_bits().to_ne_bytes()),
            Dt::F32 => out.extend((v as f32).to_ne_bytes()),
            Dt::I32 => out.extend((v as i32).to_ne_bytes()),
            Dt::U8 => out.push((v != 0.0) as u8),
        }
    }
    out
}

impl<'a> Builder<'a> {
    /// Storage type of a program element type.
    pub fn storage(&self, d: DType) -> Result<Dt, String> {
        Ok(match d {
            DType::F16 if self.precision == Precision::Program => Dt::F16,
            DType::F16 | DType::F32 | DType::F64 | DType::BF16 => Dt::F32,
            DType::Bool => Dt::U8,
            DType::I32
            | DType::I64
            | DType::I16
            | DType::I8
            | DType::U8
            | DType::U16
            | DType::U32 => Dt::I32,
            other => return Err(format!("no CUDA storage for element type {other}")),
        })
    }

    /// A new buffer written at the current step (alive through its last read; a scratch
    /// buffer no later op reads lives for the current op only).
    pub fn fresh(&mut self, shape: &[usize], dt: Dt) -> TRef {
        let bytes = shape.iter().product::<usize>() * dt.size();
        self.buffers.push(Lifetime {
            bytes,
            first: self.step,
            last: self.step,
        });
        TRef {
            addr: Addr {
                region: Region::Buffer(self.buffers.len() - 1),
                offset: 0,
            },
            shape: shape.to_vec(),
            dt,
        }
    }

    /// Marks `t` read at the current step.
    fn touch(&mut self, t: &TRef) {
        if let Region::Buffer(k) = t.addr.region {
            let l = &mut self.buffers[k];
            l.last = l.last.max(self.step);
        }
    }

    fn add_const(
        &mut self,
        name: &str,
        ty: TensorType,
        value: Option<ConstValue>,
        decompressed: Option<Vec<f32>>,
    ) {
        self.consts.push(Constant {
            name: name.to_string(),
            ty,
            value,
            decompressed,
            uploaded: None,
        });
        self.names
            .insert(name.to_string(), Src::Const(self.consts.len() - 1));
    }

    fn add_constexpr(&mut self, op: &Operation) -> Result<(), EngineError> {
        let consts = &self.consts;
        let names = &self.names;
        let by_name = |n: &str| match names.get(n) {
            Some(Src::Const(c)) => consts[*c].value.clone(),
            _ => None,
        };
        let get = |p: &str| crate::kernels::constexpr::bound_const(op, p, &by_name);
        let (vals, ty) = decompress(op, &get).map_err(|reason| EngineError::Unsupported {
            op: op.name.clone(),
            op_type: op.op_type.clone(),
            reason,
        })?;
        self.add_const(&op.outputs[0].name, ty, None, Some(vals));
        Ok(())
    }

    /// The constant or value called `name`, as a tensor on the device.
    fn operand_named(&mut self, name: &str) -> Result<TRef, String> {
        match self.names.get(name) {
            Some(Src::Value(v)) => {
                let t = self.values[*v].clone();
                self.touch(&t);
                Ok(t)
            }
            Some(Src::Const(c)) => self.upload_const(*c),
            None => Err(format!("`{name}` is not defined before its use")),
        }
    }

    fn upload_const(&mut self, c: usize) -> Result<TRef, String> {
        if let Some(t) = &self.consts[c].uploaded {
            return Ok(t.clone());
        }
        let k = &self.consts[c];
        let dt = self.storage(k.ty.dtype)?;
        let unreadable = || format!("constant `{}` is not a readable tensor", k.name);
        let bytes = match (&k.decompressed, &k.value) {
            (Some(v), _) => encode(v.iter().map(|x| *x as f64), dt),
            (None, Some(v)) if dt == Dt::F16 && k.ty.dtype == DType::F16 => {
                v.bytes().map_err(|_| unreadable())?.to_vec()
            }
            (None, Some(v)) if k.ty.dtype.is_float() => {
                let f = v.to_f32_vec().ok_or_else(unreadable)?;
                encode(f.iter().map(|x| *x as f64), dt)
            }
            (None, Some(v)) => {
                let i = v.to_i64_vec().ok_or_else(unreadable)?;
                encode(i.iter().map(|x| *x as f64), dt)
            }
            (None, None) => return Err(unreadable()),
        };
        let n = k.ty.element_count();
        if bytes.len() != n * dt.size() {
            return Err(format!(
                "constant `{}` holds {} bytes for {} elements",
                k.name,
                bytes.len(),
                n
            ));
        }
        let offset = self.weights_bytes;
        self.weights_bytes += bytes.len().div_ceil(256) * 256;
        let t = TRef {
            addr: Addr {
                region: Region::Weights,
                offset,
            },
            shape: k.ty.shape.clone(),
            dt,
        };
        self.uploads.push((offset, bytes));
        self.consts[c].uploaded = Some(t.clone());
        Ok(t)
    }

    /// Appends a launch attributed to the current op.
    pub fn push(&mut self, l: Launch) {
        self.program.launches.push(l);
        self.program
            .origin
            .push((self.op_name.clone(), self.op_type.clone()));
    }

    /// Launches one of our element-wise kernels over `n` items (grid-stride, 256 threads).
    pub fn kernel(&mut self, name: &'static str, n: usize, args: Vec<KArg>) {
        let blocks = n.div_ceil(256).clamp(1, self.device.sms as usize * 16) as u32;
        self.push(Launch::Kernel {
            name,
            grid: (blocks, 1, 1),
            block: 256,
            shared: 0,
            args,
        });
    }

    /// Launches a kernel with an explicit grid and block.
    pub fn kernel_grid(
        &mut self,
        name: &'static str,
        grid: (u32, u32, u32),
        block: u32,
        shared: u32,
        args: Vec<KArg>,
    ) {
        self.push(Launch::Kernel {
            name,
            grid,
            block,
            shared,
            args,
        });
    }

    fn translate_op(
        &mut self,
        op: &Operation,
        spec: Option<&'static OpSpec>,
    ) -> Result<Vec<TRef>, String> {
        let o = Op { op, spec };
        let t = op.op_type.as_str();
        if let Some(r) = elementwise::translate(self, &o, t) {
            return r;
        }
        if let Some(r) = layout::translate(self, &o, t) {
            return r;
        }
        if let Some(r) = linalg::translate(self, &o, t) {
            return r;
        }
        if let Some(r) = norm::translate(self, &o, t) {
            return r;
        }
        Err("the CUDA engine has no kernel for this op type".into())
    }

    /// The output `i` of the op as a fresh buffer of its declared type.
    pub fn output(&mut self, o: &Op<'_>, i: usize) -> Result<TRef, String> {
        let v =
            o.op.outputs
                .get(i)
                .ok_or_else(|| format!("the op declares no output {i}"))?;
        let dt = self.storage(v.ty.dtype)?;
        Ok(self.fresh(&v.ty.shape, dt))
    }

    /// The single tensor bound to `p`.
    pub fn tensor(&mut self, o: &Op<'_>, p: &str) -> Result<TRef, String> {
        self.opt_tensor(o, p)?
            .ok_or_else(|| format!("parameter `{p}` is not bound"))
    }

    /// The tensor bound to `p`, if any.
    pub fn opt_tensor(&mut self, o: &Op<'_>, p: &str) -> Result<Option<TRef>, String> {
        match o.bindings(p) {
            None | Some([]) => Ok(None),
            Some([b]) => self.binding(o, p, b).map(Some),
            Some(_) => Err(format!("parameter `{p}`: expected one value, got several")),
        }
    }

    /// Every tensor bound to a variadic parameter.
    pub fn tensors(&mut self, o: &Op<'_>, p: &str) -> Result<Vec<TRef>, String> {
        let list = o
            .bindings(p)
            .ok_or_else(|| format!("parameter `{p}` is not bound"))?
            .to_vec();
        list.iter().map(|b| self.binding(o, p, b)).collect()
    }

    fn binding(&mut self, o: &Op<'_>, p: &str, b: &Binding) -> Result<TRef, String> {
        match b {
            Binding::Name(n) => self.operand_named(n),
            Binding::Value(v) => {
                let name = format!("{}.{p}", o.op.name);
                self.add_const(&name, v.ty.clone(), Some(v.clone()), None);
                self.upload_const(self.consts.len() - 1)
            }
        }
    }

    fn host_const(&self, o: &Op<'_>, p: &str) -> Result<Option<ConstValue>, String> {
        match o.bindings(p) {
            None | Some([]) => Ok(None),
            Some([Binding::Value(v)]) => Ok(Some(v.clone())),
            Some([Binding::Name(n)]) => match self.names.get(n) {
                Some(Src::Const(c)) => {
                    let k = &self.consts[*c];
                    match (&k.decompressed, &k.value) {
                        (Some(v), _) => Ok(Some(
                            ConstValue::f32(k.ty.shape.clone(), v)
                                .map_err(|e| format!("parameter `{p}`: {e}"))?,
                        )),
                        (None, v) => Ok(v.clone()),
                    }
                }
                _ => Err(format!(
                    "parameter `{p}` must be a constant for the CUDA engine (it is computed at run time)"
                )),
            },
            Some(_) => Err(format!("parameter `{p}`: expected one value")),
        }
    }

    fn default_of(&self, o: &Op<'_>, p: &str) -> Option<PDefault> {
        o.spec.and_then(|s| s.param(p)).map(|ps| ps.default)
    }

    /// Host integers of `p` (a constant), else the catalogue's default.
    pub fn opt_ints(&self, o: &Op<'_>, p: &str) -> Result<Option<Vec<i64>>, String> {
        if let Some(v) = self.host_const(o, p)? {
            return v
                .to_i64_vec()
                .or_else(|| {
                    v.to_f32_vec()
                        .map(|f| f.iter().map(|x| *x as i64).collect())
                })
                .map(Some)
                .ok_or_else(|| format!("parameter `{p}` is not an integer constant"));
        }
        Ok(match self.default_of(o, p) {
            Some(PDefault::Int(i)) => Some(vec![i]),
            Some(PDefault::Bool(b)) => Some(vec![b as i64]),
            _ => None,
        })
    }

    /// Required host integers.
    pub fn ints(&self, o: &Op<'_>, p: &str) -> Result<Vec<i64>, String> {
        self.opt_ints(o, p)?
            .ok_or_else(|| format!("parameter `{p}` is not bound"))
    }

    /// One integer.
    pub fn int(&self, o: &Op<'_>, p: &str) -> Result<i64, String> {
        match self.ints(o, p)?.as_slice() {
            [v] => Ok(*v),
            v => Err(format!("parameter `{p}`: expected one integer, got {v:?}")),
        }
    }

    /// A boolean (false when absent and without default).
    pub fn flag(&self, o: &Op<'_>, p: &str) -> Result<bool, String> {
        Ok(self.opt_ints(o, p)?.is_some_and(|v| v.first() == Some(&1)))
    }

    /// Host floats of `p`, else the catalogue's default.
    pub fn opt_floats(&self, o: &Op<'_>, p: &str) -> Result<Option<Vec<f32>>, String> {
        if let Some(v) = self.host_const(o, p)? {
            return v
                .to_f32_vec()
                .map(Some)
                .ok_or_else(|| format!("parameter `{p}` is not a numeric constant"));
        }
        Ok(match self.default_of(o, p) {
            Some(PDefault::Int(i)) => Some(vec![i as f32]),
            Some(PDefault::Float(f)) => Some(vec![f as f32]),
            Some(PDefault::Bool(b)) => Some(vec![b as i32 as f32]),
            _ => None,
        })
    }

    /// One float.
    pub fn float(&self, o: &Op<'_>, p: &str) -> Result<f32, String> {
        match self.opt_floats(o, p)?.as_deref() {
            Some([v]) => Ok(*v),
            Some(v) => Err(format!("parameter `{p}`: expected one number, got {v:?}")),
            None => Err(format!("parameter `{p}` is not bound")),
        }
    }

    /// A string parameter, else the catalogue's default.
    pub fn opt_string(&self, o: &Op<'_>, p: &str) -> Result<Option<String>, String> {
        if let Some(v) = self.host_const(o, p)? {
            return v
                .as_str()
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| format!("parameter `{p}` is not a string"));
        }
        Ok(match self.default_of(o, p) {
            Some(PDefault::Str(s)) => Some(s.to_string()),
            _ => None,
        })
    }
}

/// The op being translated and its catalogue form.
pub struct Op<'o> {
    pub op: &'o Operation,
    pub spec: Option<&'static OpSpec>,
}

impl Op<'_> {
    fn bindings(&self, p: &str) -> Option<&[Binding]> {
        self.op
            .inputs
            .iter()
            .find(|(n, _)| n == p)
            .map(|(_, v)| v.as_slice())
    }

    /// The declared shape of output `i`.
    pub fn out_shape(&self, i: usize) -> Result<Vec<usize>, String> {
        self.op
            .outputs
            .get(i)
            .map(|v| v.ty.shape.clone())
            .ok_or_else(|| format!("the op declares no output {i}"))
    }
}

/// An axis given as a possibly negative integer.
pub fn axis(a: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    let v = if a < 0 { a + r } else { a };
    if v < 0 || v >= r.max(1) {
        return Err(format!("axis {a} is outside rank {rank}"));
    }
    Ok(v as usize)
}
