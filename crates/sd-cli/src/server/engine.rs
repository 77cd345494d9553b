//! The generation engine: one worker thread that owns the pipeline and runs one job at a time,
//! and the queue in front of it.

use super::job::{ImageOutput, Job, JobFailure, JobOutput, JobSpec, Phase, Preview, Running};
use super::output::OutputFolder;
use sd_runtime::RtBackend;
use sd_runtime::pipeline::image::{OutputFileName, encode_png};
use sd_runtime::pipeline::{Control, Pipeline, PipelineError, PipelineOptions};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// What the loaded models can do, read once at start.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    /// The model's name (PNG metadata, `/sdapi/v1/sd-models`).
    pub name: String,
    /// The folder the models were loaded from.
    pub folder: PathBuf,
    /// Image width the models make.
    pub width: usize,
    /// Image height the models make.
    pub height: usize,
    /// Image-to-image works (the folder has a VAE encoder).
    pub image_to_image: bool,
    /// The folder has a safety checker.
    pub safety_checker: bool,
    /// The ControlNets in the folder, by name.
    pub controlnets: Vec<String>,
}

/// Why the engine refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The queue is full.
    #[error("{queued} jobs are already waiting (the limit); try again when one has finished")]
    QueueFull {
        /// Jobs waiting.
        queued: usize,
    },
    /// The engine is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The models failed to load.
    #[error("loading the models in {}: {source}", folder.display())]
    Load {
        /// The folder.
        folder: PathBuf,
        /// Why.
        #[source]
        source: PipelineError,
    },
    /// The output folder cannot be used.
    #[error(transparent)]
    Output(#[from] super::output::OutputError),
    /// The worker thread could not start or died while loading.
    #[error("the generation thread stopped while loading the models")]
    WorkerGone,
}

/// Settings of an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The name written into PNG metadata (default: the folder's).
    pub model_name: Option<String>,
    /// Where saved images go (`None`: nothing is written).
    pub output: Option<PathBuf>,
    /// Jobs that may wait behind the running one.
    pub max_queued: usize,
    /// Finished jobs kept in memory.
    pub kept_jobs: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        let limits = super::Limits::default();
        EngineOptions {
            model_name: None,
            output: None,
            max_queued: limits.max_queued,
            kept_jobs: limits.kept_jobs,
        }
    }
}

#[derive(Default)]
struct Table {
    queue: VecDeque<Arc<Job>>,
    jobs: HashMap<uuid::Uuid, Arc<Job>>,
    finished: VecDeque<uuid::Uuid>,
    current: Option<Arc<Job>>,
    next_number: u64,
    stopping: bool,
}

struct Shared {
    table: Mutex<Table>,
    wake: Condvar,
    max_queued: usize,
    kept_jobs: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic elsewhere while holding the lock leaves a table that is still consistent
        // (every change is a single push or pop), so keep serving.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The queue and the worker thread that owns the pipeline. Cloning gives another handle to
/// the same engine; the worker stops when the last handle is dropped (after the running step).
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
    info: Arc<ModelInfo>,
    _stop: Arc<StopOnDrop>,
}

struct StopOnDrop(Arc<Shared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let mut t = self.0.lock();
        t.stopping = true;
        if let Some(job) = &t.current {
            job.request_cancel();
        }
        for job in t.queue.drain(..) {
            job.set_phase(Phase::Failed(JobFailure {
                status: 503,
                message: "the server shut down before this job ran".into(),
                field: None,
            }));
        }
        drop(t);
        self.0.wake.notify_all();
    }
}

impl Engine {
    /// Loads the models in `folder` on a new worker thread and starts taking jobs. Returns
    /// once the models are loaded (or failed to).
    pub fn start<B>(
        folder: &Path,
        pipeline_options: PipelineOptions<B>,
        options: EngineOptions,
    ) -> Result<Engine, EngineError>
    where
        B: RtBackend + 'static,
        PipelineOptions<B>: Send,
    {
        let shared = Arc::new(Shared {
            table: Mutex::new(Table {
                next_number: 1,
                ..Table::default()
            }),
            wake: Condvar::new(),
            max_queued: options.max_queued.max(1),
            kept_jobs: options.kept_jobs.max(1),
        });
        let output = match &options.output {
            Some(dir) => Some(OutputFolder::open(dir)?),
            None => None,
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let folder = folder.to_path_buf();
        let worker_shared = shared.clone();
        let model_name = options.model_name.clone();
        std::thread::Builder::new()
            .name("sd-generate".into())
            .spawn(move || {
                let loaded = Pipeline::<B>::load(&folder, pipeline_options)
                    .and_then(|mut pipe| {
                        let info = model_info(&mut pipe, &folder, model_name)?;
                        Ok((pipe, info))
                    })
                    .map_err(|source| EngineError::Load {
                        folder: folder.clone(),
                        source,
                    });
                match loaded {
                    Ok((mut pipe, info)) => {
                        let name = info.name.clone();
                        if ready_tx.send(Ok(info)).is_ok() {
                            worker_loop(&mut pipe, &worker_shared, &name, output.as_ref());
                        }
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|_| EngineError::WorkerGone)?;
        let info = ready_rx.recv().map_err(|_| EngineError::WorkerGone)??;
        Ok(Engine {
            _stop: Arc::new(StopOnDrop(shared.clone())),
            shared,
            info: Arc::new(info),
        })
    }

    /// What the models can do.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Puts a job in the queue.
    pub fn submit(&self, spec: JobSpec) -> Result<Arc<Job>, EngineError> {
        let mut t = self.shared.lock();
        if t.stopping {
            return Err(EngineError::ShuttingDown);
        }
        if t.queue.len() >= self.shared.max_queued {
            return Err(EngineError::QueueFull {
                queued: t.queue.len(),
            });
        }
        let number = t.next_number;
        t.next_number += 1;
        let job = Arc::new(Job::new(number, spec, t.queue.len() + 1));
        t.queue.push_back(job.clone());
        t.jobs.insert(job.id, job.clone());
        drop(t);
        self.shared.wake.notify_all();
        tracing::info!(id = %job.id, number, "job queued");
        Ok(job)
    }

    /// The job with this id, while it is queued, running or among the kept finished ones.
    pub fn job(&self, id: &uuid::Uuid) -> Option<Arc<Job>> {
        self.shared.lock().jobs.get(id).cloned()
    }

    /// Every known job, oldest first.
    pub fn jobs(&self) -> Vec<Arc<Job>> {
        let t = self.shared.lock();
        let mut all: Vec<_> = t.jobs.values().cloned().collect();
        all.sort_by_key(|j| j.number);
        all
    }

    /// The running job.
    pub fn current(&self) -> Option<Arc<Job>> {
        self.shared.lock().current.clone()
    }

    /// Jobs waiting.
    pub fn queued(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// Cancels a job: a queued one leaves the queue at once, a running one stops after the
    /// step in progress. Returns the job, or `None` when the id is unknown.
    pub fn cancel(&self, id: &uuid::Uuid) -> Option<Arc<Job>> {
        let mut t = self.shared.lock();
        let job = t.jobs.get(id).cloned()?;
        job.request_cancel();
        if let Some(at) = t.queue.iter().position(|j| j.id == *id) {
            t.queue.remove(at);
            job.set_phase(Phase::Cancelled {
                step: 0,
                output: Arc::new(JobOutput::empty()),
            });
            finish(&mut t, &job, self.shared.kept_jobs);
            renumber(&t.queue);
        }
        tracing::info!(%id, "job cancelled");
        Some(job)
    }
}

fn model_info<B: RtBackend>(
    pipe: &mut Pipeline<B>,
    folder: &Path,
    name: Option<String>,
) -> Result<ModelInfo, PipelineError> {
    let (width, height) = pipe.output_size()?;
    let r = pipe.resources();
    let name = name
        .or_else(|| r.model_id.clone())
        .unwrap_or_else(|| folder_name(folder));
    Ok(ModelInfo {
        name,
        folder: folder.to_path_buf(),
        width,
        height,
        image_to_image: r.vae_encoder.is_some(),
        safety_checker: r.safety_checker.is_some(),
        controlnets: r.controlnets.iter().map(|(n, _)| n.clone()).collect(),
    })
}

/// A folder's name, its parent's for Apple's `…/Resources`.
pub fn folder_name(p: &Path) -> String {
    let p = match p.file_name() {
        Some(n) if n == "Resources" => p.parent().unwrap_or(p),
        _ => p,
    };
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}

fn renumber(queue: &VecDeque<Arc<Job>>) {
    for (i, job) in queue.iter().enumerate() {
        job.set_phase(Phase::Queued { position: i + 1 });
    }
}

/// Moves a job to the finished list, forgetting the oldest beyond `kept`.
fn finish(t: &mut Table, job: &Arc<Job>, kept: usize) {
    t.finished.push_back(job.id);
    while t.finished.len() > kept {
        if let Some(old) = t.finished.pop_front() {
            t.jobs.remove(&old);
        }
    }
}

fn worker_loop<B: RtBackend>(
    pipe: &mut Pipeline<B>,
    shared: &Shared,
    model_name: &str,
    output: Option<&OutputFolder>,
) {
    loop {
        let job = {
            let mut t = shared.lock();
            loop {
                if t.stopping {
                    return;
                }
                if let Some(job) = t.queue.pop_front() {
                    t.current = Some(job.clone());
                    renumber(&t.queue);
                    break job;
                }
                t = shared.wake.wait(t).unwrap_or_else(|e| e.into_inner());
            }
        };
        // A panic in the pipeline fails this job, not the server.
        let phase = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_job(pipe, &job, model_name, output)
        }))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            tracing::error!(id = %job.id, panic = %what, "the pipeline panicked");
            Phase::Failed(JobFailure {
                status: 500,
                message: format!("internal error while generating: {what}"),
                field: None,
            })
        });
        tracing::info!(id = %job.id, phase = phase.name(), "job ended");
        job.set_phase(phase);
        let mut t = shared.lock();
        t.current = None;
        finish(&mut t, &job, shared.kept_jobs);
    }
}

fn run_job<B: RtBackend>(
    pipe: &mut Pipeline<B>,
    job: &Job,
    model_name: &str,
    output: Option<&OutputFolder>,
) -> Phase {
    let started = Instant::now();
    let runs = &job.spec.runs;
    // Running from the moment it is taken (text encoding and image encoding come first).
    job.set_phase(Phase::Running(Running {
        step: 0,
        total: runs.iter().map(|r| r.steps).sum(),
        it_per_s: 0.0,
        preview: None,
    }));
    let mut images = Vec::new();
    let mut warnings = job.spec.warnings.clone();
    let mut done_steps = 0usize;
    let (mut width, mut height) = (0, 0);
    for (run_index, request) in runs.iter().enumerate() {
        if job.cancel_requested() {
            let output = partial(images, width, height, warnings, started);
            return Phase::Cancelled {
                step: done_steps,
                output,
            };
        }
        let mut last_preview: Option<Arc<Preview>> = None;
        let mut run_total = 0;
        let result = pipe.generate(request, &mut |p| {
            run_total = p.total;
            let step = done_steps + p.step;
            let total = p.total * runs.len();
            if let Some(previews) = p.previews
                && let Some(first) = previews.first()
                && let Ok(png) = encode_png(first, &[])
            {
                last_preview = Some(Arc::new(Preview { step, png }));
            }
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            job.set_phase(Phase::Running(Running {
                step,
                total,
                it_per_s: step as f64 / secs,
                preview: last_preview.clone(),
            }));
            if job.cancel_requested() {
                Control::Cancel
            } else {
                Control::Continue
            }
        });
        let generation = match result {
            Ok(g) => g,
            Err(PipelineError::Cancelled { step, .. }) => {
                let output = partial(images, width, height, warnings, started);
                return Phase::Cancelled {
                    step: done_steps + step,
                    output,
                };
            }
            Err(e) => return Phase::Failed(failure(e)),
        };
        done_steps += run_total.max(generation.timesteps.len());
        width = generation.width;
        height = generation.height;
        warnings.extend(generation.warnings.iter().cloned());
        // One text for every image of this generation (same prompt, seed and size).
        let params = request
            .a1111_parameters(generation.width, generation.height, model_name)
            .to_a1111_string();
        for g in &generation.images {
            let index = images.len();
            let file_name = OutputFileName {
                prompt: &request.prompt,
                image_index: g.index,
                image_count: request.image_count,
                start_image_strength: request.image.as_ref().map(|_| request.strength),
                seed: request.seed,
                step: None,
            }
            .file_name();
            let png = match &g.image {
                Some(image) => match encode_png(image, &[("parameters", params.as_str())]) {
                    Ok(png) => Some(png),
                    Err(e) => return Phase::Failed(failure(e.into())),
                },
                None => None,
            };
            let saved_to = match (&png, output, job.spec.save) {
                (Some(bytes), Some(out), true) => match out.save(job.number, &file_name, bytes) {
                    Ok(path) => Some(path),
                    Err(e) => {
                        // The image is still served from memory; the caller is told.
                        tracing::warn!(error = %e, "saving an image failed");
                        warnings.push(format!("image {index} was not saved: {e}"));
                        None
                    }
                },
                _ => None,
            };
            images.push(ImageOutput {
                index,
                seed: request.seed,
                png,
                safety: g.safety,
                parameters: params.clone(),
                file_name,
                saved_to,
            });
        }
        tracing::debug!(run = run_index, "generation finished");
    }
    Phase::Done(Arc::new(JobOutput {
        images,
        width,
        height,
        warnings,
        seconds: started.elapsed().as_secs_f64(),
    }))
}

/// What a job made before it was cancelled.
fn partial(
    images: Vec<ImageOutput>,
    width: usize,
    height: usize,
    warnings: Vec<String>,
    started: Instant,
) -> Arc<JobOutput> {
    Arc::new(JobOutput {
        images,
        width,
        height,
        warnings,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A pipeline error as the HTTP status a caller gets: 400 when the request was at fault.
fn failure(e: PipelineError) -> JobFailure {
    let (status, field) = match &e {
        PipelineError::BadRequest { field, .. } => (400, Some(field.to_string())),
        PipelineError::Image(_) | PipelineError::Scheduler(_) => (400, None),
        _ => (500, None),
    };
    JobFailure {
        status,
        message: e.to_string(),
        field,
    }
}
