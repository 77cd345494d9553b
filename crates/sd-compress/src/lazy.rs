//! Palettization done when the package writer reads it: a weight's table and indices are
//! [`TensorSource`]s over one shared [`LazyPalette`], computed on the first read and dropped
//! once both parts have been read (the writer reads each once), so compressing a whole model
//! holds a few weights' work at a time, not the model's. While one weight is written the next
//! [`PREFETCH`] are computed on other threads (each palette knows its successor in program
//! order, the order the writer reads them), so the cores stay busy.

use crate::palettize::{palettize_fp16_packed, palettize_values};
use crate::weights::{read_f32, to_dtype_bytes};
use sd_mil::blob::pack_bits;
use sd_mil::{ConstValue, DType, TensorSource};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

/// How many palettes after the one being read are computed ahead (each holds its packed
/// indices until written, so memory grows with this; four kept two cores busy, 89 %, on the
/// full-size UNet, where one left a quarter of the time idle).
const PREFETCH: usize = 4;

/// One weight's palettization, computed on demand.
#[derive(Debug)]
pub(crate) struct LazyPalette {
    name: String,
    weight: ConstValue,
    nbits: u32,
    groups: usize,
    state: Mutex<State>,
    done: Condvar,
    next: OnceLock<Arc<LazyPalette>>,
    prefetching: AtomicBool,
}

/// Where a palette is. The lock is never held while computing: a thread computing with rayon
/// may run other rayon jobs meanwhile, and one of them may read this same palette.
#[derive(Debug)]
enum State {
    /// Not computed (or dropped after both reads).
    Empty,
    /// Some thread is computing it; wait on `done`.
    Computing,
    /// Computed.
    Ready(Ready),
}

#[derive(Debug)]
struct Ready {
    lut: Arc<[u8]>,
    indices: Arc<[u8]>,
    reads_left: u8,
}

/// Which part of a palettized weight.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Part {
    /// The table, in the weight's element type.
    Lut,
    /// The packed indices.
    Indices,
}

impl LazyPalette {
    /// `weight` (the const `name`) palettized at `nbits` with `groups` tables, when read.
    pub(crate) fn new(name: &str, weight: &ConstValue, nbits: u32, groups: usize) -> Arc<Self> {
        Arc::new(LazyPalette {
            name: name.to_string(),
            weight: weight.clone(),
            nbits,
            groups,
            state: Mutex::new(State::Empty),
            done: Condvar::new(),
            next: OnceLock::new(),
            prefetching: AtomicBool::new(false),
        })
    }

    /// The palette the writer reads after this one, computed ahead while this one is read.
    pub(crate) fn set_next(&self, next: Arc<LazyPalette>) {
        let _ = self.next.set(next);
    }

    /// Starts computing the next [`PREFETCH`] palettes in the background.
    fn prefetch_next(&self) {
        let mut at = self.next.get();
        for _ in 0..PREFETCH {
            let Some(next) = at else { return };
            if !next.prefetching.swap(true, Ordering::AcqRel) {
                let next = next.clone();
                rayon::spawn(move || {
                    // A failure is reported by the read that computes it again.
                    let _ = next.ready(true);
                });
            }
            at = next.next.get();
        }
    }

    /// Bytes of a part.
    pub(crate) fn len(&self, part: Part) -> usize {
        match part {
            Part::Lut => self
                .weight
                .ty
                .dtype
                .storage_len((1usize << self.nbits) * self.groups),
            Part::Indices => (self.weight.ty.element_count() * self.nbits as usize).div_ceil(8),
        }
    }

    fn part(&self, part: Part) -> std::io::Result<Arc<[u8]>> {
        self.prefetch_next();
        self.ready(false)?;
        let mut state = self.lock();
        let State::Ready(ready) = &mut *state else {
            // Both parts were taken meanwhile by other readers: compute again.
            drop(state);
            return self.part(part);
        };
        let out = match part {
            Part::Lut => ready.lut.clone(),
            Part::Indices => ready.indices.clone(),
        };
        ready.reads_left = ready.reads_left.saturating_sub(1);
        if ready.reads_left == 0 {
            *state = State::Empty;
        }
        Ok(out)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the palette ready (computing it here unless another thread is; then waiting,
    /// unless `background`, which returns at once).
    fn ready(&self, background: bool) -> std::io::Result<()> {
        let mut state = self.lock();
        loop {
            match &*state {
                State::Ready(_) => return Ok(()),
                State::Computing if background => return Ok(()),
                State::Computing => {
                    state = self.done.wait(state).unwrap_or_else(|e| e.into_inner());
                }
                State::Empty => {
                    *state = State::Computing;
                    drop(state);
                    let result = self.compute();
                    let mut state = self.lock();
                    let out = match result {
                        Ok(ready) => {
                            *state = State::Ready(ready);
                            Ok(())
                        }
                        Err(e) => {
                            *state = State::Empty;
                            Err(e)
                        }
                    };
                    self.done.notify_all();
                    return out;
                }
            }
        }
    }

    fn compute(&self) -> std::io::Result<Ready> {
        if self.weight.ty.dtype == DType::F16 {
            let bytes = self.weight.bytes().map_err(std::io::Error::other)?;
            let (lut, packed) =
                palettize_fp16_packed(&bytes, self.nbits, self.groups).map_err(|i| {
                    std::io::Error::other(crate::CompressError::BadWeight {
                        name: self.name.clone(),
                        reason: format!("non-finite value at element {i}"),
                    })
                })?;
            drop(bytes);
            self.weight.release_pages();
            return Ok(Ready {
                lut: to_dtype_bytes(&lut, DType::F16).into(),
                indices: packed.into(),
                reads_left: 2,
            });
        }
        let p = {
            let values = read_f32(&self.name, &self.weight).map_err(std::io::Error::other)?;
            self.weight.release_pages();
            palettize_values(&values, self.nbits, self.groups)
        };
        Ok(Ready {
            lut: to_dtype_bytes(&p.lut, self.weight.ty.dtype).into(),
            indices: pack_bits(&p.indices, self.nbits).into(),
            reads_left: 2,
        })
    }
}

/// One part of a [`LazyPalette`] as a tensor source.
#[derive(Debug)]
pub(crate) struct PalettePart {
    /// The palettization.
    pub palette: Arc<LazyPalette>,
    /// Which part.
    pub part: Part,
}

impl TensorSource for PalettePart {
    fn byte_len(&self) -> usize {
        self.palette.len(self.part)
    }

    fn write_to(&self, out: &mut dyn Write) -> std::io::Result<()> {
        out.write_all(&self.palette.part(self.part)?)
    }
}
