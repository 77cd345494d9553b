//! The translated program: a flat list of launches (our kernels, cuBLAS GEMMs, cuDNN
//! convolutions, device copies) over addresses in three regions — the planned activation
//! arena, the weights, and one shared library workspace. Addresses are symbolic until
//! [`Program::resolve`] turns them into device pointers; a prediction then issues the same
//! launches every time, eagerly or as one captured CUDA graph.

use super::EngineError;
use super::cudnn_conv::ConvPlan;
use super::device::Device;
use cudarc::cublas::{result as blas, sys as blas_sys};
use cudarc::cudnn::result as dnn;
use cudarc::driver::result as drv;
use std::ffi::c_void;

/// Where an address points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// An intermediate buffer (index into the memory plan).
    Buffer(usize),
    /// The weights allocation.
    Weights,
    /// The group-norm statistics scratch.
    Stats,
    /// A null pointer (an absent optional operand).
    Null,
}

/// A symbolic device address: a region and a byte offset into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr {
    /// The region.
    pub region: Region,
    /// Byte offset.
    pub offset: usize,
}

impl Addr {
    /// The null address.
    pub const NULL: Addr = Addr {
        region: Region::Null,
        offset: 0,
    };

    /// This address moved by `bytes`.
    pub fn at(self, bytes: usize) -> Addr {
        Addr {
            offset: self.offset + bytes,
            ..self
        }
    }
}

/// One kernel argument: an address, or the bytes of a value passed by value.
#[derive(Debug, Clone)]
pub enum KArg {
    /// A pointer argument.
    Ptr(Addr),
    /// A by-value argument (its bytes in the kernel's layout).
    Bytes(Vec<u8>),
}

impl KArg {
    /// An `int`.
    pub fn i32(v: i32) -> KArg {
        KArg::Bytes(v.to_ne_bytes().to_vec())
    }
    /// A `long long`.
    pub fn i64(v: i64) -> KArg {
        KArg::Bytes(v.to_ne_bytes().to_vec())
    }
    /// A `float`.
    pub fn f32(v: f32) -> KArg {
        KArg::Bytes(v.to_ne_bytes().to_vec())
    }
    /// A `#[repr(C)]` plain-data struct, byte for byte.
    pub fn pod<T: Copy>(v: &T) -> KArg {
        let p = v as *const T as *const u8;
        // SAFETY: T is a plain repr(C) value of size_of::<T>() bytes.
        KArg::Bytes(unsafe { std::slice::from_raw_parts(p, std::mem::size_of::<T>()) }.to_vec())
    }
}

/// Element type of a library call's operands (the accumulation is fp32 either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Float {
    /// fp16 operands and result.
    F16,
    /// fp32 operands and result.
    F32,
}

/// A column-major strided batched GEMM, cuBLAS's convention: C = alpha·op(A)·op(B) + beta·C.
#[derive(Debug, Clone)]
pub struct Gemm {
    pub ty: Float,
    pub trans_a: bool,
    pub trans_b: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: Addr,
    pub lda: usize,
    pub stride_a: usize,
    pub b: Addr,
    pub ldb: usize,
    pub stride_b: usize,
    pub c: Addr,
    pub ldc: usize,
    pub stride_c: usize,
    pub batch: usize,
    pub alpha: f32,
    pub beta: f32,
}

/// A 2-D convolution (NCHW; a 1-D one has height 1), as cuDNN will run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub ty: Float,
    pub x: [usize; 4],
    pub w: [usize; 4],
    pub y: [usize; 4],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    /// Symmetric padding per spatial axis.
    pub pads: [usize; 2],
    pub groups: usize,
}

/// One launch of the program.
#[derive(Debug)]
pub enum Launch {
    /// One of our kernels.
    Kernel {
        name: &'static str,
        grid: (u32, u32, u32),
        block: u32,
        shared: u32,
        args: Vec<KArg>,
    },
    /// A cuBLAS GEMM.
    Gemm(Gemm),
    /// A cuDNN convolution.
    Conv {
        geometry: ConvGeometry,
        x: Addr,
        w: Addr,
        y: Addr,
    },
    /// A device-to-device copy of `bytes` bytes.
    Copy { dst: Addr, src: Addr, bytes: usize },
}

/// The launches and the op each came from (for errors and profiles).
#[derive(Debug, Default)]
pub struct Program {
    /// Launches in order.
    pub launches: Vec<Launch>,
    /// For each launch: (op name, op type).
    pub origin: Vec<(String, String)>,
}

/// Device base addresses of the regions.
#[derive(Debug, Clone, Default)]
pub struct Bases {
    /// Each planned buffer's device address.
    pub buffers: Vec<u64>,
    pub weights: u64,
    pub workspace: u64,
    pub workspace_bytes: usize,
    pub stats: u64,
}

impl Bases {
    fn ptr(&self, a: Addr) -> u64 {
        match a.region {
            Region::Buffer(i) => self.buffers[i] + a.offset as u64,
            Region::Weights => self.weights + a.offset as u64,
            Region::Stats => self.stats + a.offset as u64,
            Region::Null => 0,
        }
    }
}

/// A launch with device pointers filled in, ready to issue.
enum Ready {
    Kernel {
        f: cudarc::driver::sys::CUfunction,
        grid: (u32, u32, u32),
        block: u32,
        shared: u32,
        /// Argument storage, 8-byte aligned; `params` points into it.
        _storage: Vec<Vec<u64>>,
        params: Vec<*mut c_void>,
    },
    Gemm(Gemm, [u64; 3]),
    Conv(usize, [u64; 3]),
    Copy(u64, u64, usize),
}

/// The program bound to device addresses.
pub struct Resolved {
    ready: Vec<Ready>,
    /// The cuDNN state of each convolution, by `Ready::Conv`'s index.
    convs: Vec<ConvPlan>,
    workspace: (u64, usize),
}

// The raw pointers are device addresses and kernel-parameter pointers into owned storage.
unsafe impl Send for Resolved {}
unsafe impl Sync for Resolved {}

impl Program {
    /// The cuDNN plan of every convolution, in launch order, and the largest workspace any
    /// of them needs.
    pub fn plan_convs(&self, device: &Device) -> Result<(Vec<ConvPlan>, usize), EngineError> {
        let mut plans = Vec::new();
        for (i, l) in self.launches.iter().enumerate() {
            if let Launch::Conv { geometry, .. } = l {
                let plan = ConvPlan::new(device, geometry).map_err(|reason| {
                    let (op, op_type) = self.origin[i].clone();
                    EngineError::Launch {
                        op,
                        op_type,
                        reason,
                    }
                })?;
                plans.push(plan);
            }
        }
        let workspace = plans.iter().map(|p| p.workspace).max().unwrap_or(0);
        Ok((plans, workspace))
    }

    /// Binds every address to its device pointer; `convs` from [`Program::plan_convs`].
    pub fn resolve(
        &self,
        device: &Device,
        bases: &Bases,
        convs: Vec<ConvPlan>,
    ) -> Result<Resolved, EngineError> {
        // A kernel's dynamic shared memory above 48 KiB needs the function's limit raised
        // first, to the largest any of its launches asks for (the attribute is per function).
        let mut shared_max: std::collections::HashMap<&str, u32> = Default::default();
        for l in &self.launches {
            if let Launch::Kernel { name, shared, .. } = l {
                let m = shared_max.entry(name).or_default();
                *m = (*m).max(*shared);
            }
        }
        for (name, shared) in shared_max {
            if shared > 48 * 1024 {
                device
                    .function(name)?
                    .set_attribute(
                        cudarc::driver::sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                        shared as i32,
                    )
                    .map_err(|e| EngineError::Cuda(format!("{name}: {shared} bytes of shared memory: {e:?}")))?;
            }
        }
        let mut ready = Vec::with_capacity(self.launches.len());
        let mut conv_index = 0;
        for l in &self.launches {
            ready.push(match l {
                Launch::Kernel {
                    name,
                    grid,
                    block,
                    shared,
                    args,
                } => {
                    let f = device.function(name)?;
                    let mut storage: Vec<Vec<u64>> = args
                        .iter()
                        .map(|a| match a {
                            KArg::Ptr(p) => vec![bases.ptr(*p)],
                            KArg::Bytes(b) => {
                                let mut w = vec![0u64; b.len().div_ceil(8).max(1)];
                                // SAFETY: w holds at least b.len() bytes.
                                unsafe {
                                    std::ptr::copy_nonoverlapping(
                                        b.as_ptr(),
                                        w.as_mut_ptr() as *mut u8,
                                        b.len(),
                                    )
                                };
                                w
                            }
                        })
                        .collect();
                    let params = storage
                        .iter_mut()
                        .map(|w| w.as_mut_ptr() as *mut c_void)
                        .collect();
                    Ready::Kernel {
                        f: f.cu_function(),
                        grid: *grid,
                        block: *block,
                        shared: *shared,
                        _storage: storage,
                        params,
                    }
                }
                Launch::Gemm(g) => {
                    Ready::Gemm(g.clone(), [bases.ptr(g.a), bases.ptr(g.b), bases.ptr(g.c)])
                }
                Launch::Conv { x, w, y, .. } => {
                    conv_index += 1;
                    Ready::Conv(
                        conv_index - 1,
                        [bases.ptr(*x), bases.ptr(*w), bases.ptr(*y)],
                    )
                }
                Launch::Copy { dst, src, bytes } => {
                    Ready::Copy(bases.ptr(*dst), bases.ptr(*src), *bytes)
                }
            });
        }
        if conv_index != convs.len() {
            return Err(EngineError::Cuda(format!(
                "{} convolution plans for {conv_index} convolutions",
                convs.len()
            )));
        }
        Ok(Resolved {
            ready,
            convs,
            workspace: (bases.workspace, bases.workspace_bytes),
        })
    }
}

impl Resolved {
    /// Issues every launch on the device's stream. With `sync_each` the stream is
    /// synchronised after every launch, so an asynchronous fault is blamed on its op.
    pub fn issue(
        &self,
        program: &Program,
        device: &Device,
        sync_each: bool,
    ) -> Result<(), EngineError> {
        if !sync_each {
            return self.issue_range(program, device, 0..self.ready.len());
        }
        for i in 0..self.ready.len() {
            self.issue_range(program, device, i..i + 1)?;
            device.stream.synchronize().map_err(|e| {
                let (op, ty) = &program.origin[i];
                EngineError::Launch {
                    op: op.clone(),
                    op_type: ty.clone(),
                    reason: format!("{e:?}"),
                }
            })?;
        }
        Ok(())
    }

    /// Issues the launches in `range` (no synchronisation).
    fn issue_range(
        &self,
        program: &Program,
        device: &Device,
        range: std::ops::Range<usize>,
    ) -> Result<(), EngineError> {
        let stream = device.stream.cu_stream();
        let fail = |i: usize, what: String| {
            let (op, ty) = &program.origin[i];
            EngineError::Launch {
                op: op.clone(),
                op_type: ty.clone(),
                reason: what,
            }
        };
        for (i, r) in self
            .ready
            .iter()
            .enumerate()
            .take(range.end)
            .skip(range.start)
        {
            match r {
                Ready::Kernel {
                    f,
                    grid,
                    block,
                    shared,
                    params,
                    ..
                } => {
                    let mut p = params.clone();
                    unsafe {
                        drv::launch_kernel(*f, *grid, (*block, 1, 1), *shared, stream, &mut p)
                    }
                    .map_err(|e| fail(i, format!("kernel launch: {e:?}")))?;
                }
                Ready::Gemm(g, [a, b, c]) => {
                    gemm(device, g, *a, *b, *c).map_err(|e| fail(i, e))?;
                }
                Ready::Conv(idx, [x, w, y]) => {
                    let c = &self.convs[*idx];
                    let (alpha, beta) = (1.0f32, 0.0f32);
                    unsafe {
                        dnn::convolution_forward(
                            device.dnn,
                            &alpha as *const f32 as *const c_void,
                            c.x_desc,
                            *x as *const c_void,
                            c.w_desc,
                            *w as *const c_void,
                            c.conv_desc,
                            c.algo,
                            self.workspace.0 as *mut c_void,
                            self.workspace.1,
                            &beta as *const f32 as *const c_void,
                            c.y_desc,
                            *y as *mut c_void,
                        )
                    }
                    .map_err(|e| fail(i, format!("cuDNN convolution: {e:?}")))?;
                }
                Ready::Copy(dst, src, bytes) => {
                    unsafe { drv::memcpy_dtod_async(*dst, *src, *bytes, stream) }
                        .map_err(|e| fail(i, format!("device copy: {e:?}")))?;
                }
            }
        }
        Ok(())
    }
}

impl Resolved {
    /// Issues every launch eagerly with a CUDA event between launches and returns each
    /// launch's GPU time in milliseconds (for per-op profiles; launch gaps excluded).
    pub fn issue_timed(&self, program: &Program, device: &Device) -> Result<Vec<f32>, EngineError> {
        let flags = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
        let event = || {
            device
                .ctx
                .new_event(flags)
                .map_err(|e| EngineError::Cuda(format!("creating an event: {e:?}")))
        };
        let mut events = Vec::with_capacity(self.ready.len() + 1);
        let first = event()?;
        first
            .record(&device.stream)
            .map_err(|e| EngineError::Cuda(format!("recording an event: {e:?}")))?;
        events.push(first);
        for i in 0..self.ready.len() {
            self.issue_range(program, device, i..i + 1)?;
            let e = event()?;
            e.record(&device.stream)
                .map_err(|e| EngineError::Cuda(format!("recording an event: {e:?}")))?;
            events.push(e);
        }
        device
            .stream
            .synchronize()
            .map_err(|e| EngineError::Cuda(format!("profiling run: {e:?}")))?;
        events
            .windows(2)
            .map(|w| {
                w[0].elapsed_ms(&w[1])
                    .map_err(|e| EngineError::Cuda(format!("reading an event: {e:?}")))
            })
            .collect()
    }
}

fn gemm(device: &Device, g: &Gemm, a: u64, b: u64, c: u64) -> Result<(), String> {
    let op = |t: bool| {
        if t {
            blas_sys::cublasOperation_t::CUBLAS_OP_T
        } else {
            blas_sys::cublasOperation_t::CUBLAS_OP_N
        }
    };
    let (dt, compute) = match g.ty {
        Float::F16 => (
            blas_sys::cudaDataType::CUDA_R_16F,
            blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
        ),
        Float::F32 => (
            blas_sys::cudaDataType::CUDA_R_32F,
            blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
        ),
    };
    let (alpha, beta) = (g.alpha, g.beta);
    unsafe {
        blas::gemm_strided_batched_ex(
            device.blas,
            op(g.trans_a),
            op(g.trans_b),
            g.m as i32,
            g.n as i32,
            g.k as i32,
            &alpha as *const f32 as *const c_void,
            a as *const c_void,
            dt,
            g.lda as i32,
            g.stride_a as i64,
            b as *const c_void,
            dt,
            g.ldb as i32,
            g.stride_b as i64,
            &beta as *const f32 as *const c_void,
            c as *mut c_void,
            dt,
            g.ldc as i32,
            g.stride_c as i64,
            g.batch as i32,
            compute,
            blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
    }
    .map_err(|e| {
        format!(
            "cuBLAS GEMM {}x{}x{} batch {}: {e:?}",
            g.m, g.n, g.k, g.batch
        )
    })
}
