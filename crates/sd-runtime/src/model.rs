//! `Model`: load an .mlpackage, plan it once, run predictions.

use crate::backend::{Cpu, RtBackend};
use crate::error::{Result, RuntimeError};
use crate::kernels::util::{from_vec, to_vec};
use crate::kernels::{
    self, ConstEntry, ConstTensor, Ctx, In, KernelFn, Registry, Val, decompress, is_constexpr,
};
use crate::tensor::{Tensor, TensorData};
use sd_mil::catalogue::{self, OpSpec, ParamKind};
use sd_mil::{
    Binding, ConstValue, DType, FeatureDescription, Function, ModelDescription, TensorType,
};
use std::collections::HashMap;
use std::path::Path;

/// The callback of [`Model::predict_inspect`].
type Inspector<'f, B> = dyn FnMut(&Produced<'_, B>) + 'f;

/// Compute precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// As the program says: values typed fp16 are rounded to fp16 at every op output, so
    /// overflow and rounding behave as in Core ML.
    #[default]
    Program,
    /// Everything in fp32 (for validation against fp32 references).
    Fp32,
}

/// Options for [`Model::load`].
#[derive(Debug, Clone)]
pub struct LoadOptions<B: RtBackend = Cpu> {
    /// Compute precision.
    pub compute: Precision,
    /// Device the kernels run on.
    pub device: B::Device,
    /// Run the graph passes (group-norm and attention fusion) before planning.
    pub fuse: bool,
}

impl Default for LoadOptions<Cpu> {
    fn default() -> Self {
        LoadOptions {
            compute: Precision::Program,
            device: Default::default(),
            fuse: true,
        }
    }
}

impl<B: RtBackend> LoadOptions<B> {
    /// Options with the given precision on a device, passes on.
    pub fn new(compute: Precision, device: B::Device) -> Self {
        LoadOptions {
            compute,
            device,
            fuse: true,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Arg {
    Slot(usize),
    Const(usize),
}

struct Step<B: RtBackend> {
    name: String,
    op_type: String,
    spec: Option<&'static OpSpec>,
    kernel: KernelFn<B>,
    args: Vec<(String, Vec<Arg>)>,
    outputs: Vec<usize>,
    out_names: Vec<String>,
    out_types: Vec<TensorType>,
    /// The op only moves or selects values of its own element type, so an fp16 output is
    /// already fp16-exact and needs no rounding pass.
    value_preserving: bool,
    /// Slots whose last reader is this step.
    frees: Vec<usize>,
}

/// A planned Core ML model, ready to predict.
pub struct Model<B: RtBackend = Cpu> {
    description: ModelDescription,
    inputs: Vec<(FeatureDescription, usize)>,
    outputs: Vec<(FeatureDescription, Arg)>,
    consts: Vec<ConstEntry<B>>,
    steps: Vec<Step<B>>,
    slots: usize,
    precision: Precision,
    device: B::Device,
    op_counts: HashMap<String, usize>,
    /// Inputs used as gather indices and the size of the table they index.
    index_bounds: HashMap<String, usize>,
}

/// Ops whose outputs hold only values of their inputs, in the same element type (layout,
/// selection, max/min): an fp16 output of one of them is exact in fp16 already.
const VALUE_PRESERVING: &[&str] = &[
    "reshape",
    "transpose",
    "split",
    "slice_by_index",
    "slice_by_size",
    "concat",
    "stack",
    "squeeze",
    "expand_dims",
    "gather",
    "gather_nd",
    "gather_along_axis",
    "tile",
    "upsample_nearest_neighbor",
    "reduce_max",
    "reduce_min",
    "max_pool",
    "identity",
    "relu",
];

/// Constants up to this many elements keep a host copy for kernels' attribute reads.
const SMALL: usize = 4096;

fn host_entry<B: RtBackend>(name: &str, v: &ConstValue) -> ConstEntry<B> {
    let n = v.ty.element_count();
    let string = v.as_str().map(str::to_string);
    let (ints, floats) = if string.is_none() && n <= SMALL {
        (v.to_i64_vec(), v.to_f32_vec())
    } else {
        (None, None)
    };
    ConstEntry {
        name: name.to_string(),
        ty: v.ty.clone(),
        ints,
        floats,
        string,
        tensor: ConstTensor::default(),
    }
}

/// The backend tensor of a constant read as a tensor: large float constants are deferred
/// to their first read (their data checked readable now), the others made now.
fn const_tensor<B: RtBackend>(
    e: &ConstEntry<B>,
    value: &Option<ConstValue>,
    device: &B::Device,
) -> Result<ConstTensor<B>> {
    let unreadable = || RuntimeError::Const {
        name: e.name.clone(),
        reason: format!("cannot read its {} data (missing or truncated blob?)", e.ty),
    };
    let value = value.as_ref().ok_or_else(unreadable)?;
    if e.ty.dtype.is_float() && e.ty.element_count() > SMALL {
        value.bytes().map_err(|_| unreadable())?;
        return Ok(ConstTensor::deferred(value.clone(), device.clone()));
    }
    let vals = value.to_f32_vec().ok_or_else(unreadable)?;
    let t = from_vec::<B>(vals, &e.ty.shape, device);
    Ok(ConstTensor::ready(Val::new(t, e.ty.dtype)))
}

/// The description's feature `name`, else one made from the program's type of it (a model
/// whose description omits a function input or output).
pub(crate) fn feature_of(
    list: &[FeatureDescription],
    name: &str,
    ty: &TensorType,
) -> FeatureDescription {
    list.iter()
        .find(|d| d.name == name)
        .cloned()
        .unwrap_or_else(|| FeatureDescription {
            name: name.to_string(),
            short_description: String::new(),
            dtype: sd_mil::ArrayDType::from_dtype(ty.dtype).unwrap_or(sd_mil::ArrayDType::F32),
            shape: ty.shape.clone(),
        })
}

/// A package's (or compiled model's) main function, after the graph passes when `fuse`, and
/// its description: what every runtime plans from.
pub(crate) fn read_main(path: &Path, fuse: bool) -> Result<(Function, ModelDescription)> {
    let model = sd_mil::read_model(path).map_err(|source| RuntimeError::Package {
        path: path.to_path_buf(),
        source,
    })?;
    let mut main = model.program.main().ok_or(RuntimeError::NoMain)?.clone();
    if fuse {
        crate::passes::run_all(&mut main);
    }
    Ok((main, model.description))
}

enum Src {
    Slot(usize),
    Const(usize),
}

impl Model<Cpu> {
    /// Loads a package on the CPU with default options (program precision, passes on).
    pub fn load_cpu(path: impl AsRef<Path>, compute: Precision) -> Result<Self> {
        Model::load(
            path,
            LoadOptions {
                compute,
                ..Default::default()
            },
        )
    }
}

impl<B: RtBackend> Model<B> {
    /// Reads a package through sd-mil and plans it with the standard kernels.
    pub fn load(path: impl AsRef<Path>, options: LoadOptions<B>) -> Result<Self> {
        Self::load_with(path, options, &Registry::standard())
    }

    /// Reads a package or compiled model (`.mlpackage` or `.mlmodelc`) and plans it with the
    /// given kernel registry.
    pub fn load_with(
        path: impl AsRef<Path>,
        options: LoadOptions<B>,
        registry: &Registry<B>,
    ) -> Result<Self> {
        let (main, description) = read_main(path.as_ref(), options.fuse)?;
        Self::plan(&main, description, options, registry)
    }

    /// Plans a function: slots, constants, constexpr decompression, kernels, last uses.
    pub fn plan(
        f: &Function,
        description: ModelDescription,
        options: LoadOptions<B>,
        registry: &Registry<B>,
    ) -> Result<Self> {
        let device = options.device.clone();
        let mut names: HashMap<String, Src> = HashMap::new();
        let mut consts: Vec<ConstEntry<B>> = Vec::new();
        let mut raw: Vec<Option<ConstValue>> = Vec::new();
        let mut const_values: HashMap<String, ConstValue> = HashMap::new();
        let mut slots = 0usize;
        let mut inputs = Vec::new();
        for v in &f.inputs {
            let feat = feature_of(&description.inputs, &v.name, &v.ty);
            names.insert(v.name.clone(), Src::Slot(slots));
            inputs.push((feat, slots));
            slots += 1;
        }
        let mut steps: Vec<Step<B>> = Vec::new();
        let mut op_counts: HashMap<String, usize> = HashMap::new();
        for op in &f.operations {
            *op_counts.entry(op.op_type.clone()).or_default() += 1;
            if let Some(v) = op.const_value() {
                let out = &op.outputs[0].name;
                consts.push(host_entry(out, v));
                raw.push(Some(v.clone()));
                const_values.insert(out.clone(), v.clone());
                names.insert(out.clone(), Src::Const(consts.len() - 1));
                continue;
            }
            if is_constexpr(&op.op_type) {
                let by_name = |n: &str| const_values.get(n).cloned();
                let get = |p: &str| kernels::constexpr::bound_const(op, p, &by_name);
                let (mut vals, ty) =
                    decompress(op, &get).map_err(|reason| RuntimeError::Const {
                        name: op.name.clone(),
                        reason,
                    })?;
                // An fp16 result (e.g. affine_dequantize's scale·(q − zero point)) is fp16
                // in Core ML; every fp16 value is then exact, as value-preserving ops assume.
                if ty.dtype == DType::F16 && options.compute == Precision::Program {
                    vals.iter_mut()
                        .for_each(|v| *v = half::f16::from_f32(*v).to_f32());
                }
                let out = &op.outputs[0].name;
                let small = vals.len() <= SMALL;
                let mut e = ConstEntry {
                    name: out.clone(),
                    ty: ty.clone(),
                    ints: None,
                    floats: small.then(|| vals.clone()),
                    string: None,
                    tensor: ConstTensor::default(),
                };
                let t = from_vec::<B>(vals, &ty.shape, &device);
                e.tensor = ConstTensor::ready(Val::new(t, ty.dtype));
                consts.push(e);
                raw.push(None);
                names.insert(out.clone(), Src::Const(consts.len() - 1));
                continue;
            }
            let kernel = registry
                .get(&op.op_type)
                .ok_or_else(|| RuntimeError::UnknownOp {
                    op: op.name.clone(),
                    op_type: op.op_type.clone(),
                })?;
            let spec = catalogue::lookup(&op.op_type, f.opset);
            let mut args = Vec::new();
            for (param, bindings) in &op.inputs {
                let as_tensor = spec
                    .and_then(|s| s.param(param))
                    .is_none_or(|p| p.kind != ParamKind::Const);
                let mut list = Vec::new();
                for b in bindings {
                    let idx = match b {
                        Binding::Name(n) => match names.get(n) {
                            Some(Src::Slot(s)) => {
                                list.push(Arg::Slot(*s));
                                continue;
                            }
                            Some(Src::Const(c)) => *c,
                            None => {
                                return Err(RuntimeError::Undefined {
                                    op: op.name.clone(),
                                    name: n.clone(),
                                });
                            }
                        },
                        Binding::Value(v) => {
                            consts.push(host_entry(&format!("{}.{param}", op.name), v));
                            raw.push(Some(v.clone()));
                            consts.len() - 1
                        }
                    };
                    if as_tensor && !consts[idx].tensor.is_some() && consts[idx].string.is_none() {
                        consts[idx].tensor = const_tensor(&consts[idx], &raw[idx], &device)?;
                    }
                    list.push(Arg::Const(idx));
                }
                args.push((param.clone(), list));
            }
            let mut outputs = Vec::new();
            for v in &op.outputs {
                names.insert(v.name.clone(), Src::Slot(slots));
                outputs.push(slots);
                slots += 1;
            }
            steps.push(Step {
                name: op.name.clone(),
                op_type: op.op_type.clone(),
                spec,
                kernel,
                args,
                outputs,
                out_names: op.outputs.iter().map(|v| v.name.clone()).collect(),
                out_types: op.outputs.iter().map(|v| v.ty.clone()).collect(),
                value_preserving: VALUE_PRESERVING.contains(&op.op_type.as_str()),
                frees: Vec::new(),
            });
        }
        // Linear weights in the layout the backend multiplies fastest (read by no other op).
        for s in &steps {
            if s.op_type != "linear" && s.op_type != crate::passes::LINEAR_ACT_OP {
                continue;
            }
            let Some((_, list)) = s.args.iter().find(|(p, _)| p == "weight") else {
                continue;
            };
            if let [Arg::Const(c)] = list.as_slice() {
                consts[*c].tensor.set_layout(B::linear_weight_layout);
            }
        }
        let mut outputs = Vec::new();
        for name in &f.outputs {
            let src = match names.get(name) {
                Some(Src::Slot(s)) => Arg::Slot(*s),
                Some(Src::Const(c)) => {
                    let c = *c;
                    if !consts[c].tensor.is_some() {
                        consts[c].tensor = const_tensor(&consts[c], &raw[c], &device)?;
                    }
                    Arg::Const(c)
                }
                None => {
                    return Err(RuntimeError::Undefined {
                        op: "<outputs>".into(),
                        name: name.clone(),
                    });
                }
            };
            let ty = f
                .value_type(name)
                .cloned()
                .unwrap_or_else(|| TensorType::new(DType::F32, Vec::<usize>::new()));
            let feat = feature_of(&description.outputs, name, &ty);
            outputs.push((feat, src));
        }
        // Last uses: a slot is freed after its last reader, unless it is a model output.
        let mut last: Vec<Option<usize>> = vec![None; slots];
        for (i, s) in steps.iter().enumerate() {
            for (_, list) in &s.args {
                for a in list {
                    if let Arg::Slot(k) = a {
                        last[*k] = Some(i);
                    }
                }
            }
        }
        for (_, a) in &outputs {
            if let Arg::Slot(k) = a {
                last[*k] = None;
            }
        }
        for (k, l) in last.iter().enumerate() {
            if let Some(i) = l {
                steps[*i].frees.push(k);
            }
        }
        drop(raw);
        Ok(Model {
            description,
            inputs,
            outputs,
            consts,
            steps,
            slots,
            precision: options.compute,
            device,
            op_counts,
            index_bounds: crate::input_check::index_bounds(f),
        })
    }

    /// The model's signature and metadata.
    pub fn description(&self) -> &ModelDescription {
        &self.description
    }

    /// Compute precision.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Replaces the value of the tensor constant `name` (its output name in the program) for
    /// the predictions that follow, e.g. to measure a model with one weight compressed; with
    /// program precision an fp16 constant's values are rounded to fp16, as stored. Fails when
    /// the planned model reads no such tensor or the element count differs.
    pub fn replace_const(&mut self, name: &str, values: &[f32]) -> Result<()> {
        let fail = |reason: String| RuntimeError::Const {
            name: name.to_string(),
            reason,
        };
        let e = self
            .consts
            .iter_mut()
            .find(|e| e.name == name && e.tensor.is_some())
            .ok_or_else(|| fail("the planned model reads no such tensor constant".into()))?;
        let n = e.ty.element_count();
        if values.len() != n {
            return Err(fail(format!("{} values for {} elements", values.len(), n)));
        }
        let mut vals = values.to_vec();
        if e.ty.dtype == DType::F16 && self.precision == Precision::Program {
            vals.iter_mut()
                .for_each(|v| *v = half::f16::from_f32(*v).to_f32());
        }
        if e.floats.is_some() {
            e.floats = Some(vals.clone());
        }
        let dt = e.ty.dtype;
        let t = from_vec::<B>(vals, &e.ty.shape, &self.device);
        e.tensor = ConstTensor::ready(Val::new(t, dt));
        Ok(())
    }

    /// Number of executed ops after planning (consts and constexprs excluded).
    pub fn step_count(&self) -> usize {
        self.steps.len()
    }

    /// How many ops of each type the planned function held (after the passes).
    pub fn op_counts(&self) -> &HashMap<String, usize> {
        &self.op_counts
    }

    fn check_input(&self, feat: &FeatureDescription, t: &Tensor) -> Result<()> {
        let bound = self.index_bounds.get(&feat.name).copied();
        crate::input_check::check_input(feat, t, bound)
    }

    /// Runs the model on named inputs (feature names as in the description) and returns
    /// the named outputs. fp32 data given for an fp16 feature is rounded to fp16 (as Core ML
    /// converts it); int32 features need int32 data.
    ///
    /// Inputs must be finite, and inputs used as gather indices (token ids) must lie inside
    /// the table they index ([`RuntimeError::InputValue`]). Outputs are what the program
    /// computes, infinities of an fp16 overflow included; [`Model::predict_checked`] refuses
    /// them.
    pub fn predict(&self, inputs: &HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
        self.run(inputs, None)
    }

    /// [`Model::predict`], where an output holding NaN or infinity is an error
    /// ([`RuntimeError::NonFiniteOutput`]) naming the first op that produced one, found by
    /// running the model once more and looking at every value. The pipelines predict this way,
    /// so a NaN never becomes a silent black image.
    pub fn predict_checked(
        &self,
        inputs: &HashMap<String, Tensor>,
    ) -> Result<HashMap<String, Tensor>> {
        let out = self.run(inputs, None)?;
        for (feat, _) in &self.outputs {
            if let Some(what) = out.get(&feat.name).and_then(crate::input_check::non_finite) {
                return Err(self.locate_non_finite(inputs, &feat.name, what));
            }
        }
        Ok(out)
    }

    /// The error for output `output` holding `what`, naming the first op whose value holds a
    /// non-finite number.
    fn locate_non_finite(
        &self,
        inputs: &HashMap<String, Tensor>,
        output: &str,
        what: &'static str,
    ) -> RuntimeError {
        let mut first: Option<(String, String)> = None;
        let _ = self.run(
            inputs,
            Some(&mut |p: &Produced<'_, B>| {
                if first.is_none() && crate::input_check::non_finite(&p.tensor()).is_some() {
                    first = Some((p.op.to_string(), p.op_type.to_string()));
                }
            }),
        );
        let (op, op_type) = first.unwrap_or_else(|| ("<unknown>".into(), "<unknown>".into()));
        RuntimeError::NonFiniteOutput {
            output: output.to_string(),
            what,
            op,
            op_type,
        }
    }

    /// [`Model::predict`], calling `inspect` with every value an op produces, in program
    /// order, after the precision rounding the next op sees. Reading a value
    /// ([`Produced::tensor`]) copies it to the host and waits for the device, so this is for
    /// finding where a conversion or a backend goes wrong, not for speed.
    pub fn predict_inspect(
        &self,
        inputs: &HashMap<String, Tensor>,
        mut inspect: impl FnMut(&Produced<'_, B>),
    ) -> Result<HashMap<String, Tensor>> {
        self.run(inputs, Some(&mut inspect))
    }

    fn run(
        &self,
        inputs: &HashMap<String, Tensor>,
        inspect: Option<&mut Inspector<'_, B>>,
    ) -> Result<HashMap<String, Tensor>> {
        crate::input_check::known_inputs(inputs, self.inputs.iter().map(|(f, _)| f.name.as_str()))?;
        let mut slots: Vec<Option<Val<B>>> = vec![None; self.slots];
        for (feat, slot) in &self.inputs {
            let t = inputs
                .get(&feat.name)
                .ok_or_else(|| RuntimeError::MissingInput {
                    name: feat.name.clone(),
                })?;
            self.check_input(feat, t)?;
            let dt = feat.dtype.dtype();
            let mut v = t.to_f32_vec();
            if dt == DType::F16 && self.precision == Precision::Program {
                v.iter_mut()
                    .for_each(|x| *x = half::f16::from_f32(*x).to_f32());
            }
            slots[*slot] = Some(Val::new(from_vec::<B>(v, &t.shape, &self.device), dt));
        }
        let run = std::panic::AssertUnwindSafe(|| self.execute(&mut slots, inspect));
        match std::panic::catch_unwind(run) {
            Ok(r) => r?,
            Err(p) => {
                let reason = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "kernel panicked".into());
                return Err(RuntimeError::Kernel {
                    op: "<unknown>".into(),
                    op_type: "<unknown>".into(),
                    reason,
                });
            }
        }
        let mut out = HashMap::new();
        for (feat, src) in &self.outputs {
            let v = match src {
                Arg::Slot(s) => slots[*s].clone(),
                Arg::Const(c) => self.consts[*c].tensor.get().cloned(),
            }
            .ok_or_else(|| RuntimeError::Undefined {
                op: "<outputs>".into(),
                name: feat.name.clone(),
            })?;
            let shape =
                if feat.shape.iter().product::<usize>() == v.shape().iter().product::<usize>() {
                    feat.shape.clone()
                } else {
                    v.shape()
                };
            out.insert(
                feat.name.clone(),
                host_tensor::<B>(v.t, shape, feat.dtype.dtype()),
            );
        }
        Ok(out)
    }

    fn execute(
        &self,
        slots: &mut [Option<Val<B>>],
        mut inspect: Option<&mut Inspector<'_, B>>,
    ) -> Result<()> {
        for step in &self.steps {
            let mut args = Vec::with_capacity(step.args.len());
            // Count remaining reads of each freed slot within this step so that the last read
            // takes the value (letting backends reuse its buffer) and earlier ones clone it.
            let mut pending: HashMap<usize, usize> = HashMap::new();
            for (_, list) in &step.args {
                for a in list {
                    if let Arg::Slot(s) = a
                        && step.frees.contains(s)
                    {
                        *pending.entry(*s).or_default() += 1;
                    }
                }
            }
            for (param, list) in &step.args {
                let mut ins = Vec::with_capacity(list.len());
                for a in list {
                    ins.push(match a {
                        Arg::Const(c) => In::Const(&self.consts[*c]),
                        Arg::Slot(s) => {
                            let v = match pending.get_mut(s) {
                                Some(n) if *n == 1 => slots[*s].take(),
                                Some(n) => {
                                    *n -= 1;
                                    slots[*s].clone()
                                }
                                None => slots[*s].clone(),
                            };
                            let v = v.ok_or_else(|| RuntimeError::Undefined {
                                op: step.name.clone(),
                                name: format!("slot {s}"),
                            })?;
                            In::Val(Some(v))
                        }
                    });
                }
                args.push((param.as_str(), ins));
            }
            let mut ctx = Ctx {
                name: &step.name,
                op_type: &step.op_type,
                spec: step.spec,
                device: &self.device,
                out_types: &step.out_types,
                args,
            };
            let outs = (step.kernel)(&mut ctx).map_err(|e| match e.param {
                Some(param) => RuntimeError::BadParam {
                    op: step.name.clone(),
                    op_type: step.op_type.clone(),
                    param,
                    reason: e.reason,
                },
                None => RuntimeError::Kernel {
                    op: step.name.clone(),
                    op_type: step.op_type.clone(),
                    reason: e.reason,
                },
            })?;
            drop(ctx);
            if outs.len() != step.outputs.len() {
                return Err(RuntimeError::Kernel {
                    op: step.name.clone(),
                    op_type: step.op_type.clone(),
                    reason: format!(
                        "kernel returned {} outputs, the op declares {}",
                        outs.len(),
                        step.outputs.len()
                    ),
                });
            }
            let produced = outs.into_iter().zip(&step.outputs).zip(&step.out_types);
            for (((mut v, slot), ty), name) in produced.zip(&step.out_names) {
                let got = v.shape();
                // Rank-0 values are held as [1].
                if got != ty.shape && !(ty.shape.is_empty() && got == [1]) {
                    return Err(RuntimeError::Kernel {
                        op: step.name.clone(),
                        op_type: step.op_type.clone(),
                        reason: format!("kernel produced shape {got:?}, the program declares {ty}"),
                    });
                }
                if ty.dtype == DType::F16
                    && self.precision == Precision::Program
                    && !step.value_preserving
                {
                    v.t = B::round_f16(v.t);
                }
                v.dtype = ty.dtype;
                if let Some(f) = inspect.as_mut() {
                    f(&Produced {
                        op: &step.name,
                        op_type: &step.op_type,
                        name,
                        value: &v,
                    });
                }
                slots[*slot] = Some(v);
            }
            for s in &step.frees {
                slots[*s] = None;
            }
        }
        Ok(())
    }
}

/// One value an op produced, as [`Model::predict_inspect`] reports it.
pub struct Produced<'a, B: RtBackend> {
    /// The producing op's name.
    pub op: &'a str,
    /// The producing op's type (`conv`, `add`…; fused ops have the runtime's own names).
    pub op_type: &'a str,
    /// The value's name in the program.
    pub name: &'a str,
    value: &'a Val<B>,
}

impl<B: RtBackend> Produced<'_, B> {
    /// The value's dimensions (no copy).
    pub fn shape(&self) -> Vec<usize> {
        self.value.shape()
    }

    /// The value on the host, typed as the program types it (fp16, fp32, int32; bools as
    /// fp32 0/1).
    pub fn tensor(&self) -> Tensor {
        let v = self.value;
        host_tensor::<B>(v.t.clone(), v.shape(), v.dtype)
    }
}

/// A device tensor read back as a host tensor of the MIL element type `dtype`.
fn host_tensor<B: RtBackend>(
    t: burn_tensor::ops::FloatTensor<B>,
    shape: Vec<usize>,
    dtype: DType,
) -> Tensor {
    let data = to_vec::<B>(t);
    match dtype {
        DType::F16 => Tensor {
            shape,
            data: TensorData::F16(data.iter().map(|x| half::f16::from_f32(*x)).collect()),
        },
        DType::I32 => Tensor::i32(shape, data.iter().map(|x| *x as i32).collect()),
        _ => Tensor::f32(shape, data),
    }
}
