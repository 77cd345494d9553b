//! Noise sources: the random number generators whose Gaussian draws users compare pictures by.
//!
//! Each `randn(count)` call is one tensor draw (`torch.randn(shape)` / `RandomState.randn(*shape)`):
//! the generators' outputs depend on how values are split into calls, so pipelines must draw as
//! the reference does — see [`crate::pipeline`].

mod mt19937;
mod numpy;
mod nvidia;
mod torch;

pub use mt19937::Mt19937;
pub use numpy::NumpyRng;
pub use nvidia::{NvidiaRng, philox4x32_10};
pub use torch::{TorchKernel, TorchRng};

/// A source of standard normal noise, drawn one tensor at a time.
pub trait NoiseSource {
    /// Draws one tensor of `count` standard normal values (flattened, row-major).
    fn randn(&mut self, count: usize) -> Vec<f32>;
}

impl<T: NoiseSource + ?Sized> NoiseSource for &mut T {
    fn randn(&mut self, count: usize) -> Vec<f32> {
        (**self).randn(count)
    }
}

impl<T: NoiseSource + ?Sized> NoiseSource for Box<T> {
    fn randn(&mut self, count: usize) -> Vec<f32> {
        (**self).randn(count)
    }
}

/// Replays recorded draws in order (for tests, or noise produced elsewhere).
#[derive(Clone, Debug, Default)]
pub struct RecordedNoise {
    draws: std::collections::VecDeque<Vec<f32>>,
}

impl RecordedNoise {
    /// Replays `draws`, one per `randn` call.
    pub fn new(draws: Vec<Vec<f32>>) -> Self {
        Self {
            draws: draws.into(),
        }
    }

    /// Draws not consumed yet.
    pub fn remaining(&self) -> usize {
        self.draws.len()
    }
}

impl NoiseSource for RecordedNoise {
    /// # Panics
    /// When no draw is left or the next one has another length.
    fn randn(&mut self, count: usize) -> Vec<f32> {
        let d = self.draws.pop_front().expect("RecordedNoise: no draw left");
        assert_eq!(d.len(), count, "RecordedNoise: draw of another length");
        d
    }
}

/// Draws nothing: for deterministic schedulers; panics if a scheduler asks for noise.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoNoise;

impl NoiseSource for NoNoise {
    /// # Panics
    /// Always: a deterministic step drew noise.
    fn randn(&mut self, _count: usize) -> Vec<f32> {
        panic!("NoNoise: this scheduler step needs a noise source")
    }
}

/// The three random sources Apple's Swift package offers (`--rng numpy|torch|nvidia`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RngKind {
    /// numpy `RandomState`.
    Numpy,
    /// torch CPU generator (portable kernel).
    Torch,
    /// torch CUDA generator (Philox).
    Nvidia,
}

impl RngKind {
    /// A boxed source of this kind seeded with `seed`.
    pub fn source(self, seed: u64) -> Box<dyn NoiseSource> {
        match self {
            RngKind::Numpy => Box::new(NumpyRng::new(seed as u32)),
            RngKind::Torch => Box::new(TorchRng::new(seed)),
            RngKind::Nvidia => Box::new(NvidiaRng::new(seed)),
        }
    }
}
