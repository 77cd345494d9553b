//! One generation job: what was asked ([`JobSpec`]), where it stands ([`Phase`]) and what it
//! made ([`JobOutput`]).

use sd_runtime::pipeline::{GenerationRequest, SafetyVerdict};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;
use tokio::sync::watch;

/// What a job runs: one or more generations, one after another (A1111's `n_iter`, or one
/// per image when each image has its own seed), all with the same steps and size.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// The generations, in order.
    pub runs: Vec<GenerationRequest>,
    /// Write the images into the output folder.
    pub save: bool,
    /// Notes for the caller found while reading the request (a resized starting image, …).
    pub warnings: Vec<String>,
}

impl JobSpec {
    /// Images this job makes.
    pub fn image_count(&self) -> usize {
        self.runs.iter().map(|r| r.image_count).sum()
    }
}

/// The latest decoded preview of a running job.
#[derive(Debug)]
pub struct Preview {
    /// The step it shows.
    pub step: usize,
    /// The first image's preview as PNG.
    pub png: Vec<u8>,
}

/// Where a running job is.
#[derive(Debug, Clone)]
pub struct Running {
    /// Steps done, over all of the job's generations.
    pub step: usize,
    /// Steps the job runs.
    pub total: usize,
    /// Steps per second so far.
    pub it_per_s: f64,
    /// The newest preview, when the job asked for them.
    pub preview: Option<Arc<Preview>>,
}

impl Running {
    /// Seconds left at the rate so far (`None` before the first step).
    pub fn eta_s(&self) -> Option<f64> {
        (self.it_per_s > 0.0)
            .then(|| (self.total - self.step.min(self.total)) as f64 / self.it_per_s)
    }
}

/// One image a job made.
#[derive(Debug)]
pub struct ImageOutput {
    /// Its place among the job's images.
    pub index: usize,
    /// The seed of the generation it came from.
    pub seed: u64,
    /// The PNG with its `parameters` chunk; `None` when the safety checker withheld it.
    pub png: Option<Vec<u8>>,
    /// The safety checker's verdict.
    pub safety: SafetyVerdict,
    /// AUTOMATIC1111's `parameters` text.
    pub parameters: String,
    /// Apple's file name for it.
    pub file_name: String,
    /// Where it was written, when the job saved it.
    pub saved_to: Option<PathBuf>,
}

/// What a finished job made.
#[derive(Debug)]
pub struct JobOutput {
    /// Its images, in order.
    pub images: Vec<ImageOutput>,
    /// Image width.
    pub width: usize,
    /// Image height.
    pub height: usize,
    /// Pipeline and request warnings (a truncated prompt, a resized image, …).
    pub warnings: Vec<String>,
    /// Seconds spent generating.
    pub seconds: f64,
}

/// Why a job failed: an HTTP status (4xx when the request was at fault) and a message.
#[derive(Debug, Clone)]
pub struct JobFailure {
    /// The HTTP status a synchronous caller gets.
    pub status: u16,
    /// What went wrong.
    pub message: String,
    /// The request field at fault, when known.
    pub field: Option<String>,
}

/// Where a job stands.
#[derive(Debug, Clone)]
pub enum Phase {
    /// Waiting; `position` 1 is next.
    Queued {
        /// Place in the queue, from 1.
        position: usize,
    },
    /// Generating.
    Running(Running),
    /// Finished.
    Done(Arc<JobOutput>),
    /// Stopped by an error.
    Failed(JobFailure),
    /// Stopped by a cancel (or a caller that went away) after `step` steps; `output` holds the
    /// images of the generations that finished before (A1111 returns those on an interrupt).
    Cancelled {
        /// Steps done.
        step: usize,
        /// What was finished.
        output: Arc<JobOutput>,
    },
}

impl JobOutput {
    /// No images yet.
    pub fn empty() -> Self {
        JobOutput {
            images: Vec::new(),
            width: 0,
            height: 0,
            warnings: Vec::new(),
            seconds: 0.0,
        }
    }
}

impl Phase {
    /// The images made so far: all of a finished job, the finished part of a cancelled one.
    pub fn output(&self) -> Option<&Arc<JobOutput>> {
        match self {
            Phase::Done(out) | Phase::Cancelled { output: out, .. } => Some(out),
            _ => None,
        }
    }

    /// The lowercase name the APIs use.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Queued { .. } => "queued",
            Phase::Running(_) => "running",
            Phase::Done(_) => "done",
            Phase::Failed(_) => "failed",
            Phase::Cancelled { .. } => "cancelled",
        }
    }

    /// Whether the job will change no more.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Phase::Done(_) | Phase::Failed(_) | Phase::Cancelled { .. }
        )
    }
}

/// A submitted job, shared by the queue, the worker and the handlers watching it.
#[derive(Debug)]
pub struct Job {
    /// Its id (random, so one client cannot guess another's).
    pub id: uuid::Uuid,
    /// Its number in submission order, from 1 (output file names start with it).
    pub number: u64,
    /// What it runs.
    pub spec: JobSpec,
    /// When it was submitted.
    pub created: SystemTime,
    cancel: AtomicBool,
    phase: watch::Sender<Phase>,
}

impl Job {
    pub(crate) fn new(number: u64, spec: JobSpec, position: usize) -> Self {
        Job {
            id: uuid::Uuid::new_v4(),
            number,
            spec,
            created: SystemTime::now(),
            cancel: AtomicBool::new(false),
            phase: watch::Sender::new(Phase::Queued { position }),
        }
    }

    /// Where it stands now.
    pub fn phase(&self) -> Phase {
        self.phase.borrow().clone()
    }

    /// A receiver that sees each change of phase (the newest when several came at once).
    pub fn watch(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    /// Waits until the job is done, failed or cancelled and returns that phase.
    pub async fn finished(&self) -> Phase {
        let mut rx = self.watch();
        loop {
            let phase = rx.borrow_and_update().clone();
            if phase.is_final() {
                return phase;
            }
            if rx.changed().await.is_err() {
                return self.phase();
            }
        }
    }

    /// Whether a cancel was asked for.
    pub fn cancel_requested(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    pub(crate) fn request_cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        // A final phase is never replaced.
        self.phase.send_if_modified(|p| {
            if p.is_final() {
                return false;
            }
            *p = phase;
            true
        });
    }
}
