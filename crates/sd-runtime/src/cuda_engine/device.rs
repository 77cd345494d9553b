//! The GPU a [`super::CudaEngine`] runs on: its context and stream, the cuBLAS and cuDNN
//! handles bound to that stream, and our kernels compiled by NVRTC for its architecture
//! (the PTX kept in a disk cache so later loads skip the compiler).

use super::EngineError;
use cudarc::cublas::{result as blas, sys as blas_sys};
use cudarc::cudnn::{result as dnn, sys as dnn_sys};
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream, sys as drv};
use cudarc::nvrtc::{CompileOptions, Ptx};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The CUDA C sources compiled at load, by file name.
const SOURCES: &[(&str, &str)] = &[
    ("ops.cu", include_str!("kernels/ops.cu")),
    ("flash_attention.cu", super::flash_attention::SOURCE),
];

/// Every kernel entry point the translator launches.
pub(crate) const ENTRY_POINTS: &[&str] = &[
    "sd_binary",
    "sd_select",
    "sd_unary",
    "sd_bias_act",
    "sd_copy",
    "sd_pad",
    "sd_upsample_nearest",
    "sd_gather",
    "sd_gather_nd",
    "sd_reduce",
    "sd_softmax",
    "sd_layer_norm",
    "sd_layer_norm_cols",
    "sd_softmax_cached",
    "sd_group_norm_zero",
    "sd_group_norm_stats",
    "sd_group_norm_apply",
    "sd_fill",
    "sd_flash_attention_f16",
];

/// One GPU with its libraries and compiled kernels.
pub struct Device {
    pub(crate) ctx: Arc<CudaContext>,
    pub(crate) stream: Arc<CudaStream>,
    pub(crate) blas: blas_sys::cublasHandle_t,
    pub(crate) dnn: dnn_sys::cudnnHandle_t,
    /// Kept alive for the functions' sake.
    _modules: Vec<Arc<CudaModule>>,
    functions: HashMap<&'static str, CudaFunction>,
    /// Compute capability (major, minor).
    pub(crate) arch: (i32, i32),
    /// Streaming multiprocessors.
    pub(crate) sms: u32,
}

// The handles are used from one thread at a time (the engine's lock).
unsafe impl Send for Device {}
unsafe impl Sync for Device {}

fn driver(what: &str) -> impl Fn(cudarc::driver::DriverError) -> EngineError + '_ {
    move |e| EngineError::Cuda(format!("{what}: {e:?}"))
}

impl Device {
    /// Opens GPU `index`: context, stream, cuBLAS, cuDNN, kernels.
    pub fn open(index: usize) -> Result<Self, EngineError> {
        let ctx = std::panic::catch_unwind(|| CudaContext::new(index))
            .map_err(|_| {
                EngineError::Cuda(
                    "cannot load the CUDA driver (libcuda.so.1): is an NVIDIA driver installed?"
                        .into(),
                )
            })?
            .map_err(driver("opening the GPU"))?;
        // Graph capture needs cudarc's per-allocation events off; the engine orders all
        // work on one stream itself.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(driver("creating a stream"))?;
        let attr = |a| {
            ctx.attribute(a)
                .map_err(driver("reading the GPU's attributes"))
        };
        let major = attr(drv::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
        let minor = attr(drv::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
        let sms = attr(drv::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)? as u32;
        let blas = library("cuBLAS (libcublas.so)", || unsafe {
            let h = blas::create_handle().map_err(|e| format!("{e:?}"))?;
            blas::set_stream(h, stream.cu_stream() as _).map_err(|e| format!("{e:?}"))?;
            Ok(h)
        })?;
        let dnn = library("cuDNN (libcudnn.so)", || unsafe {
            let h = dnn::create_handle().map_err(|e| format!("{e:?}"))?;
            dnn::set_stream(h, stream.cu_stream() as _).map_err(|e| format!("{e:?}"))?;
            Ok(h)
        })?;
        let mut modules = Vec::new();
        let mut functions = HashMap::new();
        for (name, src) in SOURCES {
            let ptx = compile_cached(name, src, (major, minor))?;
            let module = ctx
                .load_module(ptx)
                .map_err(driver("loading compiled kernels"))?;
            for entry in ENTRY_POINTS {
                if let Ok(f) = module.load_function(entry) {
                    functions.insert(*entry, f);
                }
            }
            modules.push(module);
        }
        if let Some(missing) = ENTRY_POINTS.iter().find(|e| !functions.contains_key(*e)) {
            return Err(EngineError::Cuda(format!(
                "kernel `{missing}` is missing from the compiled sources"
            )));
        }
        Ok(Device {
            ctx,
            stream,
            blas,
            dnn,
            _modules: modules,
            functions,
            arch: (major, minor),
            sms,
        })
    }

    /// What translation needs to know of this GPU.
    pub(crate) fn info(&self) -> super::translate::DeviceInfo {
        super::translate::DeviceInfo { sms: self.sms }
    }

    /// A compiled kernel by entry-point name.
    pub(crate) fn function(&self, name: &str) -> Result<&CudaFunction, EngineError> {
        self.functions
            .get(name)
            .ok_or_else(|| EngineError::Cuda(format!("no kernel `{name}`")))
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        unsafe {
            let _ = blas::destroy_handle(self.blas);
            let _ = dnn::destroy_handle(self.dnn);
        }
    }
}

/// Runs a library's set-up; a library that cannot be loaded (cudarc panics when dlopen
/// fails) becomes an error naming it.
fn library<T>(
    name: &str,
    f: impl FnOnce() -> Result<T, String> + std::panic::UnwindSafe,
) -> Result<T, EngineError> {
    match std::panic::catch_unwind(f) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(EngineError::Cuda(format!("{name}: {e}"))),
        Err(_) => Err(EngineError::Cuda(format!(
            "cannot load {name}: put its folder on LD_LIBRARY_PATH (see the cuda_engine docs)"
        ))),
    }
}

/// FNV-1a, for cache keys.
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h = 0xcbf29ce484222325u64;
    for p in parts {
        for b in *p {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Where compiled PTX is kept: `$SD_CUDA_CACHE`, else `$XDG_CACHE_HOME/sd-runtime/cuda`,
/// else `~/.cache/sd-runtime/cuda`; `None` when none is known.
fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("SD_CUDA_CACHE") {
        return Some(PathBuf::from(d));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("sd-runtime").join("cuda"))
}

/// Folders NVRTC searches for `cuda_fp16.h` and `mma.h`: `$SD_CUDA_INCLUDE`,
/// `$CUDA_HOME/include`, `$CUDA_PATH/include`, `/usr/local/cuda/include`, the ones that exist.
pub(crate) fn include_paths() -> Vec<String> {
    let mut v: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("SD_CUDA_INCLUDE") {
        v.extend(std::env::split_paths(&d));
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(d) = std::env::var_os(var) {
            v.push(PathBuf::from(d).join("include"));
        }
    }
    v.push(PathBuf::from("/usr/local/cuda/include"));
    v.into_iter()
        .filter(|p| p.join("cuda_fp16.h").is_file())
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

/// PTX of one source for one architecture: from the cache when a previous load compiled the
/// same text, else compiled by NVRTC and written to the cache (temporary file, then rename).
fn compile_cached(name: &str, src: &str, arch: (i32, i32)) -> Result<Ptx, EngineError> {
    let arch_name = format!("sm_{}{}", arch.0, arch.1);
    let key = fnv(&[src.as_bytes(), arch_name.as_bytes()]);
    let file = cache_dir().map(|d| d.join(format!("{name}-{arch_name}-{key:016x}.ptx")));
    if let Some(text) = file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()) {
        tracing::debug!(kernel = name, "PTX from the cache");
        return Ok(Ptx::from_src(text));
    }
    let started = std::time::Instant::now();
    let opts = CompileOptions {
        arch: Some(Box::leak(arch_name.clone().into_boxed_str())),
        include_paths: include_paths(),
        options: vec!["--std=c++17".into(), "--use_fast_math".into()],
        ..Default::default()
    };
    let ptx = std::panic::catch_unwind(|| cudarc::nvrtc::compile_ptx_with_opts(src, opts))
        .map_err(|_| {
            EngineError::Cuda(
                "cannot load NVRTC (libnvrtc.so): put its folder on LD_LIBRARY_PATH".into(),
            )
        })?
        .map_err(|e| EngineError::Cuda(format!("compiling {name} with NVRTC: {e:?}")))?;
    tracing::info!(
        kernel = name,
        ms = started.elapsed().as_millis() as u64,
        "compiled with NVRTC"
    );
    if let Some(f) = &file {
        let text = ptx.to_src();
        let tmp = f.with_extension(format!("tmp{}", std::process::id()));
        let written = f
            .parent()
            .map(std::fs::create_dir_all)
            .transpose()
            .and_then(|_| std::fs::write(&tmp, text.as_bytes()))
            .and_then(|_| std::fs::rename(&tmp, f));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(path = %f.display(), error = %e, "cannot write the PTX cache");
        }
    }
    Ok(ptx)
}
