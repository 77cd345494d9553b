//! A constant's backend tensor, made at load or on first use.
//!
//! A program's weights stay in the memory-mapped `weight.bin` when a package is opened: each
//! one becomes a backend tensor (widened to f32, in the layout its kernel reads) the first
//! time a prediction reads it, and its mapped pages are then released. Opening a full-size
//! UNet therefore costs no weight conversion, and the conversion is spread over the first
//! prediction.

use super::Val;
use super::util::from_vec;
use crate::backend::RtBackend;
use burn_tensor::ops::FloatTensor;
use rayon::prelude::*;
use sd_mil::{ConstValue, decode_f32_into};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

/// Elements widened per parallel piece of a large constant.
const PIECE: usize = 1 << 18;

/// How a deferred constant becomes a tensor.
#[derive(Clone)]
struct Deferred<B: RtBackend> {
    value: ConstValue,
    device: B::Device,
    /// A storage layout applied once the tensor exists (e.g. the backend's linear layout).
    layout: Option<fn(FloatTensor<B>) -> FloatTensor<B>>,
    /// Held while the tensor is made, so that concurrent first reads convert it once.
    making: Arc<Mutex<()>>,
}

/// A constant's backend tensor: absent, ready, or deferred until first read.
#[derive(Clone)]
pub struct ConstTensor<B: RtBackend> {
    cell: OnceLock<Val<B>>,
    deferred: Option<Deferred<B>>,
}

impl<B: RtBackend> Default for ConstTensor<B> {
    fn default() -> Self {
        ConstTensor {
            cell: OnceLock::new(),
            deferred: None,
        }
    }
}

impl<B: RtBackend> fmt::Debug for ConstTensor<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match (self.cell.get(), &self.deferred) {
            (Some(_), _) => "ready",
            (None, Some(_)) => "deferred",
            (None, None) => "absent",
        };
        f.write_str(state)
    }
}

impl<B: RtBackend> ConstTensor<B> {
    /// A tensor made already.
    pub fn ready(v: Val<B>) -> Self {
        ConstTensor {
            cell: OnceLock::from(v),
            deferred: None,
        }
    }

    /// A float constant converted on first read. The caller has checked that its data is
    /// readable (`ConstValue::bytes`).
    pub fn deferred(value: ConstValue, device: B::Device) -> Self {
        ConstTensor {
            cell: OnceLock::new(),
            deferred: Some(Deferred {
                value,
                device,
                layout: None,
                making: Arc::default(),
            }),
        }
    }

    /// Whether a tensor exists or will be made on first read.
    pub fn is_some(&self) -> bool {
        self.cell.get().is_some() || self.deferred.is_some()
    }

    /// The tensor, made now if it was deferred; `None` when absent or when the deferred data
    /// can no longer be read.
    pub fn get(&self) -> Option<&Val<B>> {
        if let Some(v) = self.cell.get() {
            return Some(v);
        }
        let d = self.deferred.as_ref()?;
        let _making = d.making.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = self.cell.get() {
            return Some(v);
        }
        let vals = widen(&d.value)?;
        let mut t = from_vec::<B>(vals, &d.value.ty.shape, &d.device);
        if let Some(layout) = d.layout {
            t = layout(t);
        }
        d.value.release_pages();
        Some(self.cell.get_or_init(|| Val::new(t, d.value.ty.dtype)))
    }

    /// Stores the tensor in `layout` (applied now when it is ready, else once it is made).
    pub fn set_layout(&mut self, layout: fn(FloatTensor<B>) -> FloatTensor<B>) {
        if let Some(v) = self.cell.take() {
            self.cell = OnceLock::from(Val::new(layout(v.t), v.dtype));
        } else if let Some(d) = &mut self.deferred {
            d.layout = Some(layout);
        }
    }
}

/// All elements of a float constant as f32, large ones in parallel pieces of one read.
fn widen(value: &ConstValue) -> Option<Vec<f32>> {
    let dtype = value.ty.dtype;
    let size = (dtype.bits() / 8) as usize;
    let bytes = value.bytes().ok()?;
    let mut out = vec![0.0f32; value.ty.element_count()];
    if size == 0 || bytes.len() != out.len() * size {
        return None;
    }
    out.par_chunks_mut(PIECE)
        .zip(bytes.par_chunks(PIECE * size))
        .try_for_each(|(piece, b)| decode_f32_into(dtype, b, piece))?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;
    use crate::kernels::util::to_vec;
    use sd_mil::{DType, TensorType};

    fn fp16_const(n: usize) -> ConstValue {
        let vals: Vec<f32> = (0..n).map(|i| (i % 977) as f32 * 0.25 - 60.0).collect();
        ConstValue::f16_from_f32([n], &vals).unwrap()
    }

    #[test]
    fn deferred_constants_are_made_on_first_read_with_their_layout() {
        let n = 3 * PIECE + 5;
        let value = fp16_const(n);
        let want = value.to_f32_vec().unwrap();
        let mut t = ConstTensor::<Cpu>::deferred(value, Default::default());
        assert!(t.is_some());
        assert_eq!(format!("{t:?}"), "deferred");
        t.set_layout(<Cpu as burn_tensor::ops::FloatTensorOps<Cpu>>::float_neg);
        let got = to_vec::<Cpu>(t.get().unwrap().t.clone());
        assert_eq!(format!("{t:?}"), "ready");
        let neg: Vec<f32> = want.iter().map(|v| -v).collect();
        assert_eq!(got, neg);
        assert_eq!(t.get().unwrap().dtype, DType::F16);
    }

    #[test]
    fn absent_and_unreadable_constants_give_none() {
        let t = ConstTensor::<Cpu>::default();
        assert!(!t.is_some() && t.get().is_none());
        let ints = ConstValue::vec_i32(&[1, 2, 3]);
        assert_eq!(ints.ty, TensorType::new(DType::I32, [3usize]));
        let t = ConstTensor::<Cpu>::deferred(ints, Default::default());
        assert!(t.get().is_none(), "only float constants are deferred");
    }
}
