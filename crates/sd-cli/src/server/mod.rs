//! `sd serve`: a local web page and HTTP APIs over one loaded pipeline.
//!
//! - [`Engine`]: the pipeline on its own thread, one job at a time, a bounded queue in front
//!   (positions reported), cancel at the next step.
//! - [`Server`]: the axum application on a tokio runtime of its own — the page (embedded), the
//!   native job API with server-sent progress, AUTOMATIC1111's `/sdapi/v1/*`, OpenAI's
//!   `/v1/images/generations`, `/health` and `/openapi.json`.
//! - [`Limits`]: what one request may ask for; every error is a 4xx/5xx with OpenAI's JSON
//!   error object.
//!
//! ```no_run
//! use sd_cli::server::{Engine, EngineOptions, Limits, ServeOptions, Server};
//! use sd_runtime::pipeline::PipelineOptions;
//! use sd_runtime::Precision;
//! let engine = Engine::start::<sd_runtime::Cpu>(
//!     "Resources".as_ref(),
//!     PipelineOptions::new(Precision::Program, Default::default()),
//!     EngineOptions::default(),
//! )?;
//! let server = Server::start(engine, ServeOptions::default())?;
//! println!("http://{}", server.address());
//! server.wait();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod api_a1111;
mod api_native;
mod api_openai;
mod assets;
mod engine;
mod error;
mod job;
mod limits;
mod output;
mod params;
mod router;

pub use assets::OPENAPI;
pub use engine::{Engine, EngineError, EngineOptions, ModelInfo, folder_name};
pub use error::ApiError;
pub use job::{ImageOutput, Job, JobFailure, JobOutput, JobSpec, Phase, Preview, Running};
pub use limits::Limits;
pub use output::{OutputError, OutputFolder};

use std::net::SocketAddr;
use std::sync::Arc;

/// How a [`Server`] listens and what it allows.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where to listen (port 0 picks a free one; [`Server::address`] tells which).
    pub bind: SocketAddr,
    /// Request bounds.
    pub limits: Limits,
    /// Run the safety checker on every image (when the folder has one).
    pub safety_check: bool,
    /// Whether the engine writes images to an output folder (shown to the page).
    pub saves_images: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            bind: SocketAddr::from(([127, 0, 0, 1], 7860)),
            limits: Limits::default(),
            safety_check: true,
            saves_images: false,
        }
    }
}

/// A running server: its own thread and tokio runtime. Dropping it stops it.
pub struct Server {
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds `options.bind` and starts serving `engine`'s models.
    pub fn start(engine: Engine, options: ServeOptions) -> std::io::Result<Server> {
        let listener = std::net::TcpListener::bind(options.bind)?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        if !address.ip().is_loopback() {
            tracing::warn!(
                %address,
                "listening beyond this computer: anyone who can reach this address can generate images and read results"
            );
        }
        let state = router::AppState {
            ctx: Arc::new(params::Context {
                limits: options.limits.clone(),
                model: engine.info().clone(),
            }),
            engine,
            safety: options.safety_check,
            saves: options.saves_images,
            loopback_only: address.ip().is_loopback(),
        };
        let app = router::router(state);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sd-serve")
            .enable_all()
            .build()?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sd-serve".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot listen");
                            return;
                        }
                    };
                    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
                    let serving = tokio::spawn(async move {
                        let shutdown = async {
                            let _ = drain_rx.await;
                        };
                        if let Err(e) = axum::serve(listener, app)
                            .with_graceful_shutdown(shutdown)
                            .await
                        {
                            tracing::error!(error = %e, "server stopped");
                        }
                    });
                    let _ = stop_rx.await;
                    let _ = drain_tx.send(());
                    // Open event streams would hold a graceful shutdown forever.
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), serving).await;
                });
                runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            })?;
        Ok(Server {
            address,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Blocks until the server stops (it stops when [`Server::stop`] is called from another
    /// handle, or never: the binary ends it with the process).
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Stops serving (open connections get two seconds) and waits for the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}
