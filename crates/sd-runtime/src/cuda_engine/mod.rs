//! The native CUDA engine (feature `cuda-engine`): runs a Core ML program on an NVIDIA GPU
//! with values in their program element type (fp16 as fp16), vendor libraries for the
//! heavy ops and one captured CUDA graph per prediction.
//!
//! Loading a package ([`CudaEngine::load`]) reads it through sd-mil, runs the same graph
//! passes as the CPU runtime ([`crate::passes`]), then translates the function once
//! (`translate`): GEMMs, linear layers and 1×1 convolutions go to cuBLAS (fp16 operands, fp32
//! accumulation), other convolutions to cuDNN (NCHW, tensor cores), attention to a fused
//! flash-attention kernel, and everything else to our own kernels in `kernels/ops.cu`,
//! compiled by NVRTC for the GPU at hand and cached on disk. Every intermediate value gets
//! a fixed place in one arena ([`memory_plan`]): a prediction allocates nothing, and its
//! launches are captured once as a CUDA graph and replayed, so the host's launch cost is
//! paid once per prediction instead of once per op.
//!
//! # Finding the libraries
//!
//! Nothing CUDA is linked at build time: the driver (`libcuda.so.1`), NVRTC
//! (`libnvrtc.so`), cuBLAS (`libcublas.so`, `libcublasLt.so`) and cuDNN (`libcudnn.so`) are
//! opened with `dlopen` when a model loads, so they must be on the loader's search path. With
//! PyTorch's pip wheels, for example:
//!
//! ```text
//! SP=/path/to/site-packages/nvidia
//! export LD_LIBRARY_PATH=$SP/cu13/lib:$SP/cudnn/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
//! ```
//!
//! NVRTC also needs the CUDA headers `cuda_fp16.h` and `mma.h`: the first of
//! `$SD_CUDA_INCLUDE`, `$CUDA_HOME/include`, `$CUDA_PATH/include` and
//! `/usr/local/cuda/include` that holds them is used. Compiled PTX is kept under
//! `$SD_CUDA_CACHE` (default `~/.cache/sd-runtime/cuda`), so only the first load compiles.
//!
//! # Precision
//!
//! [`Precision::Program`] stores fp16 values as fp16: every op rounds its output to fp16 as
//! Core ML does, matrix products and convolutions accumulate in fp32, norms and softmax
//! compute in fp32. [`Precision::Fp32`] stores every float as fp32 (GEMMs and convolutions
//! without TF32), for validation.
//!
//! # Environment
//!
//! `SD_CUDA_GRAPH=0` issues the launches one by one instead of replaying a graph;
//! `SD_CUDA_SYNC=1` (with `SD_CUDA_GRAPH=0`) synchronises after every launch so a fault names
//! its op; `SD_CUDA_KEEP_VALUES=1` gives every value its own memory so
//! [`CudaEngine::value`] can read any of them after a prediction; `SD_CUDA_FLASH=0` runs
//! unmasked fp16 attention as GEMM → softmax → GEMM instead of the fused flash kernel.

mod cudnn_conv;
mod device;
mod flash_attention;
pub mod memory_plan;
mod program;
mod translate;

use crate::error::RuntimeError;
use crate::model::Precision;
use crate::tensor::{Tensor, TensorData};
use cudarc::driver::{CudaGraph, CudaSlice, DevicePtr, sys as drv};
use device::Device;
use program::{Bases, Program, Region, Resolved};
use sd_mil::{FeatureDescription, ModelDescription};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use translate::{Dt, TRef};

/// Everything that can go wrong on the CUDA engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Reading the package or checking an input failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The driver or a CUDA library failed or could not be loaded.
    #[error("CUDA: {0}")]
    Cuda(String),
    /// An op the engine cannot translate.
    #[error("op `{op}` ({op_type}) on the CUDA engine: {reason}")]
    Unsupported {
        /// Op name.
        op: String,
        /// Op type.
        op_type: String,
        /// Why.
        reason: String,
    },
    /// A launch failed while running.
    #[error("op `{op}` ({op_type}) failed on the GPU: {reason}")]
    Launch {
        /// Op name.
        op: String,
        /// Op type.
        op_type: String,
        /// What the library said.
        reason: String,
    },
}

/// What [`translate_package`] found: the program a [`CudaEngine`] would run, without a GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    /// Launches per prediction.
    pub launches: usize,
    /// The kernels of ours it launches (entry-point names), sorted, each once.
    pub kernels: Vec<&'static str>,
    /// cuBLAS GEMMs and cuDNN convolutions per prediction.
    pub gemms: usize,
    /// cuDNN convolutions per prediction.
    pub convolutions: usize,
    /// The planned activation arena and what the buffers would take unplanned, in bytes.
    pub arena: usize,
    /// What every value would take in its own buffer.
    pub unplanned: usize,
    /// Weights, in bytes.
    pub weights: usize,
    /// Executed ops by type (after the passes).
    pub op_counts: HashMap<String, usize>,
}

/// Translates a package (`.mlpackage` or `.mlmodelc`) as [`CudaEngine::load`] would for a GPU
/// with `sms` multiprocessors, without loading a CUDA library: an op the engine lacks fails
/// here exactly as it would at load. Also checks the memory plan (no two buffers alive at once
/// share a byte) and that every kernel launched is one the engine compiles.
pub fn translate_package(
    path: impl AsRef<Path>,
    precision: Precision,
    sms: u32,
) -> Result<Translated, EngineError> {
    let (main, _) = crate::model::read_main(path.as_ref(), true)?;
    let t = translate::translate(&main, &translate::DeviceInfo { sms }, precision)?;
    let plan = memory_plan::plan(&t.buffers);
    memory_plan::check(&t.buffers, &plan).map_err(EngineError::Cuda)?;
    let mut kernels: Vec<&'static str> = Vec::new();
    let (mut gemms, mut convolutions) = (0, 0);
    for l in &t.program.launches {
        match l {
            program::Launch::Kernel { name, .. } => {
                if !device::ENTRY_POINTS.contains(name) {
                    return Err(EngineError::Cuda(format!(
                        "kernel `{name}` is not compiled"
                    )));
                }
                if !kernels.contains(name) {
                    kernels.push(name);
                }
            }
            program::Launch::Gemm(_) => gemms += 1,
            program::Launch::Conv { .. } => convolutions += 1,
            program::Launch::Copy { .. } => {}
        }
    }
    kernels.sort_unstable();
    Ok(Translated {
        launches: t.program.launches.len(),
        kernels,
        gemms,
        convolutions,
        arena: plan.total,
        unplanned: t.buffers.iter().map(|b| b.bytes).sum(),
        weights: t.weights_bytes,
        op_counts: t.op_counts,
    })
}

/// Device memory of a loaded engine, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUse {
    /// The planned activation arena.
    pub arena: usize,
    /// What the buffers would take unplanned (every value its own allocation).
    pub unplanned: usize,
    /// Weights.
    pub weights: usize,
    /// Library workspace and scratch.
    pub workspace: usize,
}

struct Run {
    graph: Option<CudaGraph>,
    captured: bool,
}

/// A Core ML model translated for one NVIDIA GPU.
pub struct CudaEngine {
    description: ModelDescription,
    precision: Precision,
    program: Program,
    resolved: Resolved,
    inputs: Vec<(FeatureDescription, TRef)>,
    outputs: Vec<(FeatureDescription, TRef)>,
    index_bounds: HashMap<String, usize>,
    op_counts: HashMap<String, usize>,
    memory: MemoryUse,
    bases: Bases,
    debug: Debug,
    /// Every runtime value by name.
    values: HashMap<String, TRef>,
    run: Mutex<Run>,
    _arena: CudaSlice<u8>,
    _weights: CudaSlice<u8>,
    _workspace: CudaSlice<u8>,
    _stats: CudaSlice<u8>,
    device: Device,
}

fn cuda(what: &'static str) -> impl Fn(cudarc::driver::DriverError) -> EngineError {
    move |e| EngineError::Cuda(format!("{what}: {e:?}"))
}

impl CudaEngine {
    /// Loads a package (`.mlpackage` or `.mlmodelc`) onto GPU `gpu` in the given precision.
    pub fn load(
        path: impl AsRef<Path>,
        gpu: usize,
        precision: Precision,
    ) -> Result<Self, EngineError> {
        let (main, description) = crate::model::read_main(path.as_ref(), true)?;
        let device = Device::open(gpu)?;
        Self::from_function(&main, description, device, precision)
    }

    fn from_function(
        f: &sd_mil::Function,
        description: ModelDescription,
        device: Device,
        precision: Precision,
    ) -> Result<Self, EngineError> {
        let started = std::time::Instant::now();
        let debug = Debug::from_env();
        let t = translate::translate(f, &device.info(), precision)?;
        let (convs, conv_workspace) = t.program.plan_convs(&device)?;
        let plan = if debug.keep_values {
            memory_plan::unshared(&t.buffers)
        } else {
            memory_plan::plan(&t.buffers)
        };
        let stream = device.stream.clone();
        let alloc =
            |n: usize, what: &'static str| stream.alloc_zeros::<u8>(n.max(256)).map_err(cuda(what));
        let arena = alloc(plan.total, "allocating the activation arena")?;
        let mut weights = alloc(t.weights_bytes, "allocating the weights")?;
        let workspace_bytes = conv_workspace.max(32 << 20);
        let workspace = alloc(workspace_bytes, "allocating the library workspace")?;
        let stats = alloc(t.stats_bytes, "allocating scratch")?;
        for (offset, bytes) in &t.uploads {
            let mut view = weights.slice_mut(*offset..*offset + bytes.len());
            stream
                .memcpy_htod(bytes.as_slice(), &mut view)
                .map_err(cuda("uploading weights"))?;
        }
        let base = |s: &CudaSlice<u8>| s.device_ptr(&stream).0;
        let arena_base = base(&arena);
        let bases = Bases {
            buffers: plan
                .offsets
                .iter()
                .map(|o| arena_base + *o as u64)
                .collect(),
            weights: base(&weights),
            workspace: base(&workspace),
            workspace_bytes,
            stats: base(&stats),
        };
        unsafe {
            let st = cudarc::cublas::sys::cublasSetWorkspace_v2(
                device.blas,
                bases.workspace as *mut std::ffi::c_void,
                workspace_bytes,
            );
            if st != cudarc::cublas::sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
                return Err(EngineError::Cuda(format!("cuBLAS workspace: {st:?}")));
            }
        }
        let resolved = t.program.resolve(&device, &bases, convs)?;
        stream.synchronize().map_err(cuda("uploading weights"))?;
        // Features as described, else as the program types them.
        let feature = |name: &str, list: &[FeatureDescription], r: &TRef| {
            let ty = f
                .value_type(name)
                .cloned()
                .unwrap_or_else(|| sd_mil::TensorType::new(sd_mil::DType::F32, r.shape.clone()));
            crate::model::feature_of(list, name, &ty)
        };
        let inputs = t
            .inputs
            .iter()
            .map(|(n, r)| (feature(n, &description.inputs, r), r.clone()))
            .collect();
        let outputs = t
            .outputs
            .iter()
            .map(|(n, r)| (feature(n, &description.outputs, r), r.clone()))
            .collect();
        let memory = MemoryUse {
            arena: plan.total,
            unplanned: t.buffers.iter().map(|b| b.bytes).sum(),
            weights: t.weights_bytes,
            workspace: workspace_bytes + t.stats_bytes,
        };
        tracing::info!(
            launches = t.program.launches.len(),
            arena_mb = plan.total >> 20,
            weights_mb = t.weights_bytes >> 20,
            ms = started.elapsed().as_millis() as u64,
            "translated for CUDA"
        );
        let use_graph = std::env::var("SD_CUDA_GRAPH").map_or(true, |v| v != "0");
        Ok(CudaEngine {
            description,
            precision,
            program: t.program,
            resolved,
            inputs,
            outputs,
            index_bounds: crate::input_check::index_bounds(f),
            op_counts: t.op_counts,
            memory,
            bases,
            debug,
            values: t.values,
            run: Mutex::new(Run {
                graph: None,
                captured: !use_graph,
            }),
            _arena: arena,
            _weights: weights,
            _workspace: workspace,
            _stats: stats,
            device,
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

    /// Device memory the engine holds.
    pub fn memory(&self) -> MemoryUse {
        self.memory
    }

    /// Launches per prediction.
    pub fn launch_count(&self) -> usize {
        self.program.launches.len()
    }

    /// Executed ops by type (after the passes).
    pub fn op_counts(&self) -> &HashMap<String, usize> {
        &self.op_counts
    }

    /// The GPU's compute capability.
    pub fn compute_capability(&self) -> (i32, i32) {
        self.device.arch
    }

    /// Runs the model on named inputs (feature names as in the description) and returns the
    /// named outputs, as [`crate::Model::predict`] does. Predictions on one engine run one at
    /// a time.
    pub fn predict(
        &self,
        inputs: &HashMap<String, Tensor>,
    ) -> Result<HashMap<String, Tensor>, EngineError> {
        crate::input_check::known_inputs(inputs, self.inputs.iter().map(|(f, _)| f.name.as_str()))?;
        let mut run = self.run.lock().unwrap_or_else(|p| p.into_inner());
        let stream = &self.device.stream;
        // Every input checked before any is copied; the host buffers live until the stream
        // has finished with them (the synchronisation after the prediction).
        let mut staged = Vec::with_capacity(self.inputs.len());
        for (feat, r) in &self.inputs {
            let t = inputs
                .get(&feat.name)
                .ok_or_else(|| RuntimeError::MissingInput {
                    name: feat.name.clone(),
                })?;
            crate::input_check::check_input(feat, t, self.index_bounds.get(&feat.name).copied())?;
            staged.push((self.address(r), encode_input(t, r.dt)));
        }
        let copied = staged.iter().try_for_each(|(ptr, bytes)| {
            unsafe { cudarc::driver::result::memcpy_htod_async(*ptr, bytes, stream.cu_stream()) }
                .map_err(cuda("copying an input to the GPU"))
        });
        let issued = copied.and_then(|()| self.execute(&mut run));
        if issued.is_err() {
            // The copies may still read `staged`: wait for them before it is dropped.
            let _ = stream.synchronize();
        }
        issued?;
        stream.synchronize().map_err(|e| {
            EngineError::Cuda(format!(
                "the prediction failed on the GPU ({e:?}); SD_CUDA_GRAPH=0 SD_CUDA_SYNC=1 names the op"
            ))
        })?;
        let mut out = HashMap::new();
        for (feat, r) in &self.outputs {
            let shape = if feat.shape.iter().product::<usize>() == r.len() {
                feat.shape.clone()
            } else {
                r.shape.clone()
            };
            out.insert(feat.name.clone(), self.read_back(r, shape)?);
        }
        Ok(out)
    }

    /// Copies a device tensor to the host (waiting for the stream) as a tensor of `shape`.
    fn read_back(&self, r: &TRef, shape: Vec<usize>) -> Result<Tensor, EngineError> {
        let mut bytes = vec![0u8; r.bytes()];
        let stream = &self.device.stream;
        unsafe {
            cudarc::driver::result::memcpy_dtoh_async(
                &mut bytes,
                self.address(r),
                stream.cu_stream(),
            )
        }
        .map_err(cuda("copying from the GPU"))?;
        stream.synchronize().map_err(cuda("copying from the GPU"))?;
        Ok(decode_output(&bytes, r.dt, shape))
    }

    fn address(&self, r: &TRef) -> u64 {
        let base = match r.addr.region {
            Region::Buffer(i) => self.bases.buffers[i],
            Region::Weights => self.bases.weights,
            Region::Stats => self.bases.stats,
            Region::Null => 0,
        };
        base + r.addr.offset as u64
    }

    /// Issues the prediction: the captured graph, capturing it on the first call.
    fn execute(&self, run: &mut Run) -> Result<(), EngineError> {
        let stream = &self.device.stream;
        if !run.captured {
            run.captured = true;
            stream
                .begin_capture(drv::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
                .map_err(cuda("starting graph capture"))?;
            let issued = self.resolved.issue(&self.program, &self.device, false);
            let graph = stream.end_capture(drv::CUgraphInstantiate_flags(0));
            match (issued, graph) {
                (Ok(()), Ok(Some(g))) => {
                    g.upload().map_err(cuda("uploading the graph"))?;
                    run.graph = Some(g);
                }
                (issued, graph) => {
                    tracing::warn!(?issued, graph = ?graph.err(), "graph capture failed; launching op by op");
                    issued?;
                }
            }
        }
        match &run.graph {
            Some(g) => g.launch().map_err(cuda("replaying the graph")),
            None => self
                .resolved
                .issue(&self.program, &self.device, self.debug.sync_each),
        }
    }

    /// GPU time of `runs` replays of the last prediction's launches (its inputs stay in
    /// place), in milliseconds each, measured with CUDA events: the graph when one was
    /// captured, else the launches one by one.
    pub fn time_replays(&self, runs: usize) -> Result<Vec<f32>, EngineError> {
        let mut run = self.run.lock().unwrap_or_else(|p| p.into_inner());
        let stream = &self.device.stream;
        let flags = Some(drv::CUevent_flags::CU_EVENT_DEFAULT);
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let (a, b) = (
                self.device
                    .ctx
                    .new_event(flags)
                    .map_err(cuda("creating an event"))?,
                self.device
                    .ctx
                    .new_event(flags)
                    .map_err(cuda("creating an event"))?,
            );
            a.record(stream).map_err(cuda("recording an event"))?;
            self.execute(&mut run)?;
            b.record(stream).map_err(cuda("recording an event"))?;
            stream.synchronize().map_err(cuda("replaying"))?;
            times.push(a.elapsed_ms(&b).map_err(cuda("reading an event"))?);
        }
        Ok(times)
    }

    /// GPU time per op type of one eager run of the last prediction's launches: (op type,
    /// milliseconds, launches), slowest first.
    pub fn profile(&self) -> Result<Vec<(String, f32, usize)>, EngineError> {
        let _run = self.run.lock().unwrap_or_else(|p| p.into_inner());
        let ms = self.resolved.issue_timed(&self.program, &self.device)?;
        let mut by: HashMap<String, (f32, usize)> = HashMap::new();
        for (i, t) in ms.iter().enumerate() {
            let kind = match &self.program.launches[i] {
                program::Launch::Kernel { name, .. } => {
                    format!("{} [{name}]", self.program.origin[i].1)
                }
                program::Launch::Gemm(_) => format!("{} [cuBLAS]", self.program.origin[i].1),
                program::Launch::Conv { .. } => format!("{} [cuDNN]", self.program.origin[i].1),
                program::Launch::Copy { .. } => format!("{} [copy]", self.program.origin[i].1),
            };
            let e = by.entry(kind).or_default();
            e.0 += t;
            e.1 += 1;
        }
        let mut v: Vec<_> = by.into_iter().map(|(k, (t, n))| (k, t, n)).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(v)
    }

    /// The value `name` as the last prediction left it, typed as stored. Only an engine
    /// loaded with `SD_CUDA_KEEP_VALUES=1` keeps every value (each in its own memory,
    /// for comparing a GPU run with the CPU value by value); otherwise `None`.
    pub fn value(&self, name: &str) -> Result<Option<Tensor>, EngineError> {
        if !self.debug.keep_values {
            return Ok(None);
        }
        let _run = self.run.lock().unwrap_or_else(|p| p.into_inner());
        let Some(r) = self.values.get(name) else {
            return Ok(None);
        };
        self.read_back(r, r.shape.clone()).map(Some)
    }
}

/// Debugging switches read from the environment at load.
#[derive(Debug, Clone, Copy, Default)]
struct Debug {
    /// `SD_CUDA_SYNC=1`: synchronise after every launch (eager runs only).
    sync_each: bool,
    /// `SD_CUDA_KEEP_VALUES=1`: no memory reuse, every value readable after a prediction.
    keep_values: bool,
}

impl Debug {
    fn from_env() -> Self {
        let on = |v: &str| std::env::var(v).is_ok_and(|v| v == "1");
        Debug {
            sync_each: on("SD_CUDA_SYNC"),
            keep_values: on("SD_CUDA_KEEP_VALUES"),
        }
    }
}

/// Host bytes of an input in the storage type.
fn encode_input(t: &Tensor, dt: Dt) -> Vec<u8> {
    match (&t.data, dt) {
        (TensorData::F16(v), Dt::F16) => v.iter().flat_map(|x| x.to_bits().to_ne_bytes()).collect(),
        (TensorData::I32(v), Dt::I32) => v.iter().flat_map(|x| x.to_ne_bytes()).collect(),
        (_, Dt::F16) => t
            .to_f32_vec()
            .iter()
            .flat_map(|x| half::f16::from_f32(*x).to_bits().to_ne_bytes())
            .collect(),
        (_, Dt::F32) => t
            .to_f32_vec()
            .iter()
            .flat_map(|x| x.to_ne_bytes())
            .collect(),
        (_, Dt::I32) => t
            .to_f32_vec()
            .iter()
            .flat_map(|x| (*x as i32).to_ne_bytes())
            .collect(),
        (_, Dt::U8) => t.to_f32_vec().iter().map(|x| (*x != 0.0) as u8).collect(),
    }
}

/// A host tensor from an output's bytes.
fn decode_output(bytes: &[u8], dt: Dt, shape: Vec<usize>) -> Tensor {
    match dt {
        Dt::F16 => Tensor {
            shape,
            data: TensorData::F16(
                bytes
                    .chunks_exact(2)
                    .map(|c| half::f16::from_bits(u16::from_ne_bytes([c[0], c[1]])))
                    .collect(),
            ),
        },
        Dt::F32 => Tensor::f32(
            shape,
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        Dt::I32 => Tensor::i32(
            shape,
            bytes
                .chunks_exact(4)
                .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        Dt::U8 => Tensor::f32(shape, bytes.iter().map(|b| *b as f32).collect()),
    }
}

// SAFETY: the raw handles (cuDNN descriptors, the graph, kernel parameters) are only used
// while the engine's `run` lock is held, so one thread at a time drives the GPU through them.
unsafe impl Send for CudaEngine {}
unsafe impl Sync for CudaEngine {}

impl From<EngineError> for RuntimeError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Runtime(r) => r,
            EngineError::Cuda(reason) => RuntimeError::Gpu { reason },
            EngineError::Unsupported {
                op,
                op_type,
                reason,
            } => RuntimeError::Kernel {
                op,
                op_type,
                reason: format!("on the CUDA engine: {reason}"),
            },
            EngineError::Launch {
                op,
                op_type,
                reason,
            } => RuntimeError::Kernel {
                op,
                op_type,
                reason,
            },
        }
    }
}

impl crate::Predictor for CudaEngine {
    fn description(&self) -> &ModelDescription {
        &self.description
    }

    fn predict(&self, inputs: &HashMap<String, Tensor>) -> crate::Result<HashMap<String, Tensor>> {
        Ok(CudaEngine::predict(self, inputs)?)
    }

    /// [`CudaEngine::predict`]; an output holding NaN or infinity is an error. The engine
    /// keeps no per-op values, so the error cannot name the op that produced it.
    fn predict_checked(
        &self,
        inputs: &HashMap<String, Tensor>,
    ) -> crate::Result<HashMap<String, Tensor>> {
        let out = CudaEngine::predict(self, inputs)?;
        for (feat, _) in &self.outputs {
            if let Some(what) = out.get(&feat.name).and_then(crate::input_check::non_finite) {
                return Err(RuntimeError::NonFiniteOutput {
                    output: feat.name.clone(),
                    what,
                    op: "(not located on the CUDA engine)".into(),
                    op_type: "-".into(),
                });
            }
        }
        Ok(out)
    }
}
