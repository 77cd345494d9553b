//! `sd serve`: loads the pipeline once and serves the page and the HTTP APIs until stopped.

use anyhow::{Context, Result, bail};
use sd_cli::server::{Engine, EngineOptions, Limits, ServeOptions, Server};
use sd_runtime::RtBackend;
use sd_runtime::pipeline::PipelineOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Arguments of `sd serve`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    models: crate::model_args::ModelArgs,
    /// Where to listen. Anything but a loopback address lets other computers in (warned).
    #[arg(long, default_value = "127.0.0.1:7860")]
    bind: SocketAddr,
    /// Where generated images are written (the only place the server writes).
    #[arg(long, default_value = "outputs")]
    output_path: PathBuf,
    /// Keep images in memory only; write nothing.
    #[arg(long)]
    no_save: bool,
    /// Do not run the safety checker.
    #[arg(long)]
    disable_safety: bool,
    /// The most denoising steps a request may ask for.
    #[arg(long, default_value_t = Limits::default().max_steps)]
    max_steps: usize,
    /// The most images one request may make.
    #[arg(long, default_value_t = Limits::default().max_images)]
    max_images: usize,
    /// The most jobs waiting behind the running one.
    #[arg(long, default_value_t = Limits::default().max_queued)]
    max_queued: usize,
    /// Finished jobs whose results stay in memory (older ones are forgotten; their files stay).
    #[arg(long, default_value_t = Limits::default().kept_jobs)]
    kept_jobs: usize,
    /// Stop when standard input reaches its end: for a supervisor or test that starts `sd serve`
    /// as a child and wants it gone when it goes (it closes the pipe, even by dying).
    #[arg(long)]
    watch_stdin: bool,
    /// The largest request body, in MiB.
    #[arg(long, default_value_t = Limits::default().max_body_bytes >> 20)]
    max_body_mib: usize,
}

/// Runs `sd serve`.
pub fn run(a: Args) -> Result<()> {
    if a.max_steps == 0 || a.max_steps > sd_runtime::pipeline::MAX_STEPS {
        bail!(
            "--max-steps must be 1 to {}",
            sd_runtime::pipeline::MAX_STEPS
        );
    }
    if a.max_images == 0 || a.max_images > sd_runtime::pipeline::MAX_IMAGES {
        bail!(
            "--max-images must be 1 to {}",
            sd_runtime::pipeline::MAX_IMAGES
        );
    }
    if a.max_queued == 0 {
        bail!("--max-queued must be at least 1");
    }
    if a.max_body_mib == 0 || a.max_body_mib > 1024 {
        bail!("--max-body-mib must be 1 to 1024");
    }
    if a.watch_stdin {
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            eprintln!("standard input closed; stopping");
            std::process::exit(0);
        });
    }
    let models = a.models.resolve()?;
    let folder = &models.folder;
    let limits = Limits {
        max_steps: a.max_steps,
        max_images: a.max_images,
        max_queued: a.max_queued,
        max_body_bytes: a.max_body_mib << 20,
        kept_jobs: a.kept_jobs.max(1),
        ..Limits::default()
    };
    let engine_options = EngineOptions {
        model_name: models.name.clone(),
        output: (!a.no_save).then(|| a.output_path.clone()),
        max_queued: limits.max_queued,
        kept_jobs: limits.kept_jobs,
    };
    eprintln!("loading the models in {} …", folder.display());
    let engine = match a.models.device {
        crate::run::Device::Cpu => {
            start::<sd_runtime::Cpu>(folder, a.models.pipeline_options(&models)?, engine_options)?
        }
        #[cfg(feature = "cuda")]
        crate::run::Device::Cuda => {
            let mut o = a.models.pipeline_options::<sd_runtime::Cpu>(&models)?;
            o.engine = sd_runtime::pipeline::Engine::Cuda { gpu: 0 };
            start::<sd_runtime::Cpu>(folder, o, engine_options)?
        }
        #[cfg(feature = "cuda-burn")]
        crate::run::Device::CudaBurn => {
            start::<sd_runtime::Cuda>(folder, a.models.pipeline_options(&models)?, engine_options)?
        }
        #[allow(unreachable_patterns)]
        other => return Err(crate::run::not_built(other)),
    };
    let info = engine.info().clone();
    let options = ServeOptions {
        bind: a.bind,
        limits,
        safety_check: !a.disable_safety,
        saves_images: !a.no_save,
    };
    let server =
        Server::start(engine, options).with_context(|| format!("listening on {}", a.bind))?;
    let address = server.address();
    if !address.ip().is_loopback() {
        eprintln!(
            "warning: listening on {address}, beyond this computer: anyone who can reach it can generate images and read the results"
        );
    }
    eprintln!(
        "{} ({}x{}) ready; images go to {}",
        info.name,
        info.width,
        info.height,
        if a.no_save {
            "memory only".to_string()
        } else {
            a.output_path.display().to_string()
        }
    );
    // The one line on stdout: scripts (and the tests) read the address from it.
    println!("listening on http://{address}");
    std::io::stdout().flush().ok();
    server.wait();
    Ok(())
}

fn start<B>(
    folder: &std::path::Path,
    options: PipelineOptions<B>,
    engine_options: EngineOptions,
) -> Result<Engine>
where
    B: RtBackend + 'static,
    PipelineOptions<B>: Send,
{
    Engine::start::<B>(folder, options, engine_options)
        .with_context(|| format!("starting the generation engine on {}", folder.display()))
}
