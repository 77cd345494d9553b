//! One cuDNN convolution ready to launch: its descriptors, the algorithm cuDNN's heuristic
//! ranks first among those whose workspace fits, and that workspace's size. Made when a
//! translated program is bound to a GPU (translation itself needs no GPU).

use super::device::Device;
use super::program::{ConvGeometry, Float};
use cudarc::cudnn::{result as dnn, sys as dnn_sys};

/// Largest library workspace a convolution may take (bytes).
pub const WORKSPACE_LIMIT: usize = 256 << 20;

/// A convolution's cuDNN state (owned: destroyed on drop, so never copied).
#[derive(Debug)]
pub struct ConvPlan {
    pub x_desc: dnn_sys::cudnnTensorDescriptor_t,
    pub w_desc: dnn_sys::cudnnFilterDescriptor_t,
    pub y_desc: dnn_sys::cudnnTensorDescriptor_t,
    pub conv_desc: dnn_sys::cudnnConvolutionDescriptor_t,
    pub algo: dnn_sys::cudnnConvolutionFwdAlgo_t,
    pub workspace: usize,
}

impl Drop for ConvPlan {
    fn drop(&mut self) {
        unsafe {
            let _ = dnn::destroy_tensor_descriptor(self.x_desc);
            let _ = dnn::destroy_filter_descriptor(self.w_desc);
            let _ = dnn::destroy_tensor_descriptor(self.y_desc);
            let _ = dnn::destroy_convolution_descriptor(self.conv_desc);
        }
    }
}

impl ConvPlan {
    /// Descriptors and algorithm for `g` on `device`.
    pub fn new(device: &Device, g: &ConvGeometry) -> Result<Self, String> {
        let e = |what: &'static str| {
            move |err: cudarc::cudnn::CudnnError| format!("cuDNN {what}: {err:?}")
        };
        let data = match g.ty {
            Float::F16 => dnn_sys::cudnnDataType_t::CUDNN_DATA_HALF,
            Float::F32 => dnn_sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
        };
        let i = |v: [usize; 4]| v.map(|d| d as i32);
        let nchw = dnn_sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW;
        unsafe {
            // Each descriptor is owned by `plan` as soon as it exists, so an error below
            // destroys the ones made so far.
            let mut plan = ConvPlan {
                x_desc: dnn::create_tensor_descriptor().map_err(e("tensor descriptor"))?,
                w_desc: std::ptr::null_mut(),
                y_desc: std::ptr::null_mut(),
                conv_desc: std::ptr::null_mut(),
                algo: dnn_sys::cudnnConvolutionFwdAlgo_t::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
                workspace: 0,
            };
            plan.y_desc = dnn::create_tensor_descriptor().map_err(e("tensor descriptor"))?;
            plan.w_desc = dnn::create_filter_descriptor().map_err(e("filter descriptor"))?;
            plan.conv_desc = dnn::create_convolution_descriptor().map_err(e("conv descriptor"))?;
            dnn::set_tensor4d_descriptor(plan.x_desc, nchw, data, i(g.x))
                .map_err(e("input shape"))?;
            dnn::set_tensor4d_descriptor(plan.y_desc, nchw, data, i(g.y))
                .map_err(e("output shape"))?;
            dnn::set_filter4d_descriptor(plan.w_desc, data, nchw, i(g.w))
                .map_err(e("filter shape"))?;
            dnn::set_convolution2d_descriptor(
                plan.conv_desc,
                g.pads[0] as i32,
                g.pads[1] as i32,
                g.strides[0] as i32,
                g.strides[1] as i32,
                g.dilations[0] as i32,
                g.dilations[1] as i32,
                dnn_sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
                dnn_sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
            )
            .map_err(e("geometry"))?;
            let math = match g.ty {
                Float::F16 => dnn_sys::cudnnMathType_t::CUDNN_TENSOR_OP_MATH,
                Float::F32 => dnn_sys::cudnnMathType_t::CUDNN_FMA_MATH,
            };
            dnn::set_convolution_math_type(plan.conv_desc, math).map_err(e("math type"))?;
            if g.groups != 1 {
                dnn::set_convolution_group_count(plan.conv_desc, g.groups as i32)
                    .map_err(e("groups"))?;
            }
            let mut perf: [dnn_sys::cudnnConvolutionFwdAlgoPerf_t; 8] = std::mem::zeroed();
            let mut count = 0i32;
            dnn::get_convolution_forward_algorithm(
                device.dnn,
                plan.x_desc,
                plan.w_desc,
                plan.conv_desc,
                plan.y_desc,
                perf.len() as i32,
                &mut count,
                perf.as_mut_ptr(),
            )
            .map_err(e("algorithm choice"))?;
            let pick = perf[..count.clamp(0, perf.len() as i32) as usize]
                .iter()
                .find(|p| {
                    p.status == dnn_sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS
                        && p.memory <= WORKSPACE_LIMIT
                });
            let Some(p) = pick else {
                return Err("cuDNN offers no algorithm for this convolution".into());
            };
            plan.algo = p.algo;
            plan.workspace = dnn::get_convolution_forward_workspace_size(
                device.dnn,
                plan.x_desc,
                plan.w_desc,
                plan.conv_desc,
                plan.y_desc,
                plan.algo,
            )
            .map_err(e("workspace size"))?;
            Ok(plan)
        }
    }
}
