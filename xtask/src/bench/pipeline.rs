//! `cargo xtask bench pipeline [--full]`: text-to-image end to end, beside diffusers on the
//! same CPU.
//!
//! The model (sd1-tiny, or with `--full` the random-weight SD 1.5 folder of
//! `cargo xtask reference --full sd15`) is converted once with the `sd convert` binary (text
//! encoder, UNet, VAE decoder; SPLIT_EINSUM, fp16 weights). Then each side runs in its own
//! process, so that each has its own peak RSS (`VmHWM`):
//!
//! * ours: this binary again (`--worker-precision program|fp32`), which times
//!   [`Pipeline::load`] and [`Pipeline::generate`] separately;
//! * the peer: `xtask/bench/pipeline_peer.py` in the reference venv, diffusers'
//!   `StableDiffusionPipeline` in float32 with 2 torch threads, timed the same way.
//!
//! Both use the same prompt, negative prompt, seed (torch generator), steps, guidance and
//! schedulers. Sides are interleaved (ours in program precision, the peer, ours in fp32) and the
//! whole sequence repeats `--rounds` times, so that load from other processes falls on all
//! sides alike. Load and generation times are medians of `--runs` after `--warmup`; the table
//! gives the ratios ours / peer, the peak RSS of each process and the PSNR of our image
//! against diffusers' (and, for sd1-tiny, against the committed diffusers image in
//! `fixtures/pipelines/`).

use anyhow::{Context, Result, bail};
use sd_runtime::pipeline::{
    Control, GenerationRequest, Pipeline, PipelineOptions, SchedulerKind, image::RgbImage,
};
use sd_runtime::pipeline::{RngKind, SchedulerConfig};
use sd_runtime::{Cpu, Precision, psnr};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::rss;
use crate::venv;

/// The prompt of `xtask/reference/gen_pipelines.py`.
const PROMPT: &str = "a photo of an astronaut riding a horse on mars";
/// Its negative prompt.
const NEGATIVE: &str = "blurry, low quality, watermark";

/// Arguments of `cargo xtask bench pipeline`.
#[derive(clap::Args, Clone)]
pub struct Args {
    /// The full-size SD 1.5 architecture (target/full/sd15, random weights, 512×512) instead of
    /// sd1-tiny (256×256). Defaults change to one timed run after a 2-step warm-up, one load,
    /// one round.
    #[arg(long)]
    full: bool,
    /// A diffusers folder instead of the default model (relative paths from the workspace root).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Use these converted packages instead of converting the model (sd convert's `-o` folder).
    #[arg(long)]
    packages: Option<PathBuf>,
    /// Work folder for packages, images and the JSON summary
    /// [default: target/bench-pipeline/tiny, --full: target/bench-pipeline/sd15].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Schedulers, comma-separated (pndm, dpmpp, ddim, euler, euler-a, lms) [default: pndm,dpmpp;
    /// --full: pndm].
    #[arg(long, value_delimiter = ',')]
    schedulers: Vec<String>,
    /// Our compute precisions, comma-separated (program, fp32) [default: program,fp32].
    #[arg(long, value_delimiter = ',')]
    precisions: Vec<String>,
    /// Timed generations per scheduler per process [default: 5; --full: 1].
    #[arg(long)]
    runs: Option<usize>,
    /// Untimed generations before them [default: 1].
    #[arg(long)]
    warmup: Option<usize>,
    /// Steps of each warm-up generation [default: --steps; --full: 2].
    #[arg(long)]
    warmup_steps: Option<usize>,
    /// Timed loads per process, after one untimed load [default: 5; --full: 1 and no untimed
    /// load].
    #[arg(long)]
    load_runs: Option<usize>,
    /// How many times the whole interleaved sequence runs.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Inference steps.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Classifier-free guidance scale.
    #[arg(long, default_value_t = 7.5)]
    guidance: f32,
    /// Seed of the torch generator both sides draw the noise from.
    #[arg(long, default_value_t = 93)]
    seed: u64,
    /// Torch threads of the peer (and rayon threads of ours).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Skip the diffusers peer.
    #[arg(long)]
    no_peer: bool,
    /// Internal: run our side only, in this precision, and print its JSON result.
    #[arg(long, hide = true)]
    worker_precision: Option<String>,
}

/// Settings after the defaults of the chosen model are applied.
struct Plan {
    model: PathBuf,
    packages: PathBuf,
    out: PathBuf,
    schedulers: Vec<String>,
    precisions: Vec<String>,
    runs: usize,
    warmup: usize,
    warmup_steps: usize,
    load_runs: usize,
    load_warmup: usize,
}

impl Plan {
    fn new(a: &Args) -> Result<Plan> {
        let root = venv::workspace_root();
        let abs = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                root.join(p)
            }
        };
        let (default_model, name) = if a.full {
            ("target/full/sd15", "sd15")
        } else {
            ("fixtures/models/sd1-tiny", "tiny")
        };
        let model = abs(a.model.as_deref().unwrap_or(Path::new(default_model)));
        let out = abs(&a
            .out
            .clone()
            .unwrap_or_else(|| Path::new("target/bench-pipeline").join(name)));
        let packages = a
            .packages
            .as_deref()
            .map(abs)
            .unwrap_or_else(|| out.join("packages"));
        let or = |v: &[String], d: &[&str]| -> Vec<String> {
            if v.is_empty() {
                d.iter().map(|s| s.to_string()).collect()
            } else {
                v.to_vec()
            }
        };
        let plan = Plan {
            model,
            packages,
            out,
            schedulers: or(
                &a.schedulers,
                if a.full {
                    &["pndm"]
                } else {
                    &["pndm", "dpmpp"]
                },
            ),
            precisions: or(&a.precisions, &["program", "fp32"]),
            runs: a.runs.unwrap_or(if a.full { 1 } else { 5 }),
            warmup: a.warmup.unwrap_or(1),
            warmup_steps: a.warmup_steps.unwrap_or(if a.full { 2 } else { a.steps }),
            load_runs: a.load_runs.unwrap_or(if a.full { 1 } else { 5 }),
            load_warmup: usize::from(!a.full),
        };
        if plan.runs == 0 || plan.load_runs == 0 || a.rounds == 0 || a.steps == 0 {
            bail!("--runs, --load-runs, --rounds and --steps must be at least 1");
        }
        for s in &plan.schedulers {
            scheduler_kind(s)?;
        }
        for p in &plan.precisions {
            precision(p)?;
        }
        Ok(plan)
    }
}

fn scheduler_kind(name: &str) -> Result<SchedulerKind> {
    Ok(match name {
        "pndm" => SchedulerKind::Pndm,
        "dpmpp" => SchedulerKind::Dpmpp,
        "ddim" => SchedulerKind::Ddim,
        "euler" => SchedulerKind::Euler,
        "euler-a" => SchedulerKind::EulerAncestral,
        "lms" => SchedulerKind::Lms,
        _ => bail!("unknown scheduler `{name}` (pndm, dpmpp, ddim, euler, euler-a, lms)"),
    })
}

fn precision(name: &str) -> Result<Precision> {
    Ok(match name {
        "program" => Precision::Program,
        "fp32" => Precision::Fp32,
        _ => bail!("unknown precision `{name}` (program, fp32)"),
    })
}

/// The diffusers file name of a scheduler's committed sd1-tiny run in `fixtures/pipelines/`.
fn fixture_name(scheduler: &str) -> Option<&'static str> {
    match scheduler {
        "pndm" => Some("pndm"),
        "dpmpp" => Some("dpmsolver_multistep"),
        "ddim" => Some("ddim"),
        "euler" => Some("euler"),
        "euler-a" => Some("euler_ancestral"),
        "lms" => Some("lms"),
        _ => None,
    }
}

/// Runs the benchmark (or, with `--worker-precision`, our side of it).
pub fn run(a: Args) -> Result<()> {
    let plan = Plan::new(&a)?;
    if let Some(p) = &a.worker_precision {
        return worker(&a, &plan, p);
    }
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: a debug build of xtask times a debug build of sd-runtime; run \
             `cargo run --release -p xtask -- bench pipeline`"
        );
    }
    if !plan.model.join("model_index.json").is_file() {
        bail!(
            "{} is not a diffusers folder{}",
            plan.model.display(),
            if a.full {
                " (write it with `cargo xtask reference --full sd15`)"
            } else {
                ""
            }
        );
    }
    std::fs::create_dir_all(&plan.out)
        .with_context(|| format!("creating {}", plan.out.display()))?;
    let convert_s = if a.packages.is_none() {
        Some(convert(&plan)?)
    } else {
        None
    };
    let python = if a.no_peer {
        None
    } else {
        let root = venv::workspace_root();
        Some(venv::ensure(
            "reference-venv",
            &root.join("xtask/reference/requirements.txt"),
        )?)
    };

    // Interleaved: ours (first precision), the peer, ours (other precisions).
    let mut results: Vec<(String, Value, [f64; 2])> = Vec::new();
    for round in 0..a.rounds {
        let mut order: Vec<Option<&str>> = Vec::new();
        for (i, p) in plan.precisions.iter().enumerate() {
            order.push(Some(p.as_str()));
            if i == 0 && python.is_some() {
                order.push(None);
            }
        }
        if plan.precisions.is_empty() && python.is_some() {
            order.push(None);
        }
        for side in order {
            let before = load_average();
            let label = side.map_or("diffusers".to_string(), |p| format!("ours {p}"));
            eprintln!(
                "==> round {}/{}: {label} (load average {before:.2})",
                round + 1,
                a.rounds
            );
            let v = match side {
                Some(p) => run_ours(&a, p)?,
                None => run_peer(&a, &plan, python.as_deref().expect("peer venv"))?,
            };
            // Each side's result is kept on disk at once: a later side that fails or is
            // stopped does not lose it.
            let file = plan.out.join(format!(
                "result-{}-round{}.json",
                label.replace(' ', "-"),
                round + 1
            ));
            std::fs::write(&file, v.to_string())
                .with_context(|| format!("writing {}", file.display()))?;
            results.push((label, v, [before, load_average()]));
        }
    }
    let summary = report(&a, &plan, &results, convert_s)?;
    let path = plan.out.join("summary.json");
    std::fs::write(&path, serde_json::to_string_pretty(&summary)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("results and images: {}", plan.out.display());
    Ok(())
}

/// `sd convert` of the model's text encoder, UNet and VAE decoder into the packages folder
/// (existing packages are kept, as `sd convert` does without `--force`); returns its wall time.
fn convert(plan: &Plan) -> Result<f64> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(venv::workspace_root())
        .args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "sd-cli",
            "--",
            "convert",
        ])
        .arg("--model-version")
        .arg(&plan.model)
        .args([
            "--convert-text-encoder",
            "--convert-unet",
            "--convert-vae-decoder",
            "-o",
        ])
        .arg(&plan.packages);
    eprintln!(
        "==> sd convert {} -> {}",
        plan.model.display(),
        plan.packages.display()
    );
    let start = Instant::now();
    let status = cmd
        .status()
        .context("running cargo run -p sd-cli -- convert")?;
    if !status.success() {
        bail!("sd convert failed ({status})");
    }
    Ok(start.elapsed().as_secs_f64())
}

/// The 1-minute load average of the machine.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The arguments a worker or the peer needs to repeat this run's settings.
fn common_args(a: &Args) -> Vec<String> {
    let mut v = vec![
        format!("--steps={}", a.steps),
        format!("--guidance={}", a.guidance),
        format!("--seed={}", a.seed),
    ];
    let opt = |name: &str, value: Option<usize>| value.map(|n| format!("--{name}={n}"));
    v.extend(opt("runs", a.runs));
    v.extend(opt("warmup", a.warmup));
    v.extend(opt("warmup-steps", a.warmup_steps));
    v.extend(opt("load-runs", a.load_runs));
    v
}

/// Our side in a fresh process of this binary; returns its JSON.
fn run_ours(a: &Args, precision: &str) -> Result<Value> {
    let plan = Plan::new(a)?;
    let exe = std::env::current_exe().context("locating this binary")?;
    let mut cmd = Command::new(exe);
    cmd.args(["bench", "pipeline"])
        .args(common_args(a))
        .arg(format!("--worker-precision={precision}"))
        .arg("--model")
        .arg(&plan.model)
        .arg("--packages")
        .arg(&plan.packages)
        .arg("--out")
        .arg(&plan.out)
        .arg(format!("--schedulers={}", plan.schedulers.join(",")))
        .env("RAYON_NUM_THREADS", a.threads.to_string());
    if a.full {
        cmd.arg("--full");
    }
    child_json(cmd, "our pipeline")
}

/// The diffusers peer in the reference venv; returns its JSON.
fn run_peer(a: &Args, plan: &Plan, python: &Path) -> Result<Value> {
    let script = venv::workspace_root().join("xtask/bench/pipeline_peer.py");
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .args(common_args(a))
        .arg(format!("--runs={}", plan.runs))
        .arg(format!("--warmup={}", plan.warmup))
        .arg(format!("--warmup-steps={}", plan.warmup_steps))
        .arg(format!("--load-runs={}", plan.load_runs))
        .arg(format!("--load-warmup={}", plan.load_warmup))
        .arg(format!("--threads={}", a.threads))
        .arg(format!("--schedulers={}", plan.schedulers.join(",")))
        .arg("--prompt")
        .arg(PROMPT)
        .arg("--negative-prompt")
        .arg(NEGATIVE)
        .arg("--model")
        .arg(&plan.model)
        .arg("--out")
        .arg(&plan.out)
        .env("OMP_NUM_THREADS", a.threads.to_string())
        .env("MKL_NUM_THREADS", a.threads.to_string())
        .env("HF_HUB_OFFLINE", "1")
        .env("TOKENIZERS_PARALLELISM", "false");
    child_json(cmd, "the diffusers peer")
}

/// Runs `cmd` (stderr passed through) and parses the last line of its stdout as JSON.
fn child_json(mut cmd: Command, what: &str) -> Result<Value> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("starting {what}"))?;
    if !out.status.success() {
        bail!("{what} failed ({})", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| format!("{what} printed no JSON result"))?;
    serde_json::from_str(line).with_context(|| format!("parsing the result of {what}"))
}

/// Our side: loads the pipeline `load_runs` times (after `load_warmup` untimed loads), then
/// per scheduler `warmup` untimed and `runs` timed generations; writes the last image and
/// prints one JSON object (the same keys as the peer's).
fn worker(a: &Args, plan: &Plan, precision_name: &str) -> Result<()> {
    let precision = precision(precision_name)?;
    let scheduler_config = SchedulerConfig::from_json(
        &std::fs::read_to_string(plan.model.join("scheduler/scheduler_config.json"))
            .context("reading the model's scheduler config")?,
    )?;
    let options = || {
        let mut o: PipelineOptions<Cpu> = PipelineOptions::new(precision, Default::default());
        o.tokenizer = Some(plan.model.join("tokenizer"));
        o.scheduler_config = Some(scheduler_config.clone());
        o
    };
    let mut load_s = Vec::new();
    let mut pipe = None;
    for i in 0..plan.load_warmup + plan.load_runs {
        drop(pipe.take()); // the previous pipeline is freed before the next load
        let start = Instant::now();
        pipe = Some(Pipeline::load(&plan.packages, options())?);
        let dt = start.elapsed().as_secs_f64();
        if i >= plan.load_warmup {
            load_s.push(dt);
        }
    }
    let mut pipe = pipe.expect("at least one load");
    eprintln!(
        "[ours {precision_name}] loaded in {:.3} s",
        load_s.last().copied().unwrap_or_default()
    );
    let mut runs = serde_json::Map::new();
    for name in &plan.schedulers {
        let mut request = GenerationRequest::new(PROMPT);
        request.negative_prompt = NEGATIVE.into();
        request.seed = a.seed;
        request.guidance_scale = a.guidance;
        request.scheduler = scheduler_kind(name)?;
        request.rng = RngKind::Torch;
        request.safety_check = false;
        request.steps = plan.warmup_steps;
        for _ in 0..plan.warmup {
            pipe.generate(&request, &mut |_| Control::Continue)?;
        }
        request.steps = a.steps;
        let (mut total_s, mut denoise_s) = (Vec::new(), Vec::new());
        let mut last = None;
        for i in 0..plan.runs {
            let start = Instant::now();
            let g = pipe.generate(&request, &mut |p| {
                if a.full {
                    eprintln!(
                        "[ours {precision_name}] step {}/{} at {:.1} s",
                        p.step,
                        p.total,
                        p.elapsed.as_secs_f64()
                    );
                }
                Control::Continue
            })?;
            let total = start.elapsed().as_secs_f64();
            let denoise = g.denoise_time.as_secs_f64();
            eprintln!(
                "[ours {precision_name}] {name} run {}/{}: {total:.3} s (denoise {denoise:.3} s, {} UNet calls)",
                i + 1,
                plan.runs,
                g.timesteps.len()
            );
            total_s.push(total);
            denoise_s.push(denoise);
            last = Some(g);
        }
        let g = last.expect("at least one run");
        let image = g.images[0]
            .image
            .as_ref()
            .context("the generation returned no image")?;
        let raw = plan.out.join(format!("ours-{precision_name}-{name}.rgb"));
        std::fs::write(&raw, &image.data)?;
        write_png(
            image,
            &plan.out.join(format!("ours-{precision_name}-{name}.png")),
        )?;
        runs.insert(
            name.clone(),
            json!({
                "total_s": total_s, "denoise_s": denoise_s, "unet_calls": g.timesteps.len(),
                "width": g.width, "height": g.height, "image": raw,
            }),
        );
    }
    println!(
        "{}",
        json!({
            "load_s": load_s,
            "peak_rss": rss::peak_bytes()?,
            "threads": rayon_threads(),
            "runs": runs,
        })
    );
    Ok(())
}

/// The rayon pool size sd-runtime's kernels run on (`RAYON_NUM_THREADS`, else the cores).
fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn write_png(image: &RgbImage, path: &Path) -> Result<()> {
    let bytes = sd_runtime::pipeline::image::encode_png(image, &[])?;
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Median of a non-empty list.
fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Every number of the array `f` picks from each result of one side, in order.
fn gather(results: &[&Value], f: impl Fn(&Value) -> Option<&Value>) -> Vec<f64> {
    results
        .iter()
        .filter_map(|v| f(v)?.as_array())
        .flatten()
        .filter_map(Value::as_f64)
        .collect()
}

/// An image file written by a side (raw RGB bytes) as f32 values.
fn read_image(v: &Value) -> Option<Vec<f32>> {
    let bytes = std::fs::read(v.get("image")?.as_str()?).ok()?;
    Some(bytes.into_iter().map(f32::from).collect())
}

/// The committed diffusers image of sd1-tiny for this scheduler, when the model is sd1-tiny.
fn fixture_image(plan: &Plan, scheduler: &str) -> Option<Vec<f32>> {
    let root = venv::workspace_root();
    if plan.model != root.join("fixtures/models/sd1-tiny") {
        return None;
    }
    let file = root.join(format!(
        "fixtures/pipelines/{}.safetensors",
        fixture_name(scheduler)?
    ));
    let bytes = std::fs::read(file).ok()?;
    let st = safetensors::SafeTensors::deserialize(&bytes).ok()?;
    let t = st.tensor("image").ok()?;
    Some(t.data().iter().map(|&b| f32::from(b)).collect())
}

/// Prints the table and returns the summary (every raw number) for `summary.json`.
fn report(
    a: &Args,
    plan: &Plan,
    results: &[(String, Value, [f64; 2])],
    convert_s: Option<f64>,
) -> Result<Value> {
    let mut labels: Vec<&str> = Vec::new();
    for (l, _, _) in results {
        if !labels.contains(&l.as_str()) {
            labels.push(l);
        }
    }
    let of = |label: &str| -> Vec<&Value> {
        results
            .iter()
            .filter(|(l, _, _)| l == label)
            .map(|(_, v, _)| v)
            .collect()
    };
    let peer = of("diffusers");
    let loads: Vec<f64> = results.iter().flat_map(|(_, _, l)| *l).collect();
    let size = results
        .first()
        .and_then(|(_, v, _)| v["runs"].as_object()?.values().next().cloned())
        .map(|r| format!("{}×{}", r["width"], r["height"]))
        .unwrap_or_default();
    println!();
    println!(
        "text-to-image, {} ({size}), {} steps, guidance {}, seed {}, {} threads, {} round(s); \
         load: median of {} (after {} untimed), generation: median of {} per round (after {} \
         warm-up of {} steps); load average {:.1}–{:.1}{}",
        plan.model.file_name().unwrap_or_default().to_string_lossy(),
        a.steps,
        a.guidance,
        a.seed,
        a.threads,
        a.rounds,
        plan.load_runs,
        plan.load_warmup,
        plan.runs,
        plan.warmup,
        plan.warmup_steps,
        loads.iter().copied().fold(f64::INFINITY, f64::min),
        loads.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        convert_s.map_or(String::new(), |s| format!("; sd convert {s:.1} s")),
    );
    println!(
        "| side | scheduler | load (s) | load ratio | generate (s) | ratio | denoise (s) | per UNet \
         call (s) | rest (s) | peak RSS (MB) | PSNR vs diffusers (dB) | PSNR vs fixture (dB) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for sched in &plan.schedulers {
        let peer_load = median(&gather(&peer, |v| v.get("load_s")));
        let peer_total = median(&gather(&peer, |v| v["runs"][sched].get("total_s")));
        let peer_image = peer.last().and_then(|v| read_image(&v["runs"][sched]));
        let fixture = fixture_image(plan, sched);
        for label in &labels {
            let side = of(label);
            let load = median(&gather(&side, |v| v.get("load_s")));
            let total = median(&gather(&side, |v| v["runs"][sched].get("total_s")));
            let denoise = median(&gather(&side, |v| v["runs"][sched].get("denoise_s")));
            let calls = side
                .last()
                .and_then(|v| v["runs"][sched]["unet_calls"].as_f64())
                .unwrap_or(f64::NAN);
            let rss = side
                .iter()
                .filter_map(|v| v["peak_rss"].as_f64())
                .fold(0.0, f64::max);
            let image = side.last().and_then(|v| read_image(&v["runs"][sched]));
            let db = |want: &Option<Vec<f32>>| match (&image, want) {
                (Some(i), Some(w)) if i.len() == w.len() => format!("{:.2}", psnr(i, w)),
                _ => "—".into(),
            };
            let vs_peer = if *label == "diffusers" {
                "—".into()
            } else {
                db(&peer_image)
            };
            let ratio = |x: f64, y: f64| {
                if y.is_finite() && y > 0.0 {
                    format!("{:.2}×", x / y)
                } else {
                    "—".into()
                }
            };
            let spread = |xs: Vec<f64>| {
                let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                if xs.len() > 1 {
                    format!(" ({lo:.3}–{hi:.3})")
                } else {
                    String::new()
                }
            };
            println!(
                "| {label} | {sched} | {load:.3} | {} | {total:.3}{} | {} | {denoise:.3} | {:.3} | {:.3} | {:.0} | {vs_peer} | {} |",
                ratio(load, peer_load),
                spread(gather(&side, |v| v["runs"][sched].get("total_s"))),
                ratio(total, peer_total),
                denoise / calls,
                total - denoise,
                rss / 1e6,
                db(&fixture),
            );
            rows.push(json!({
                "side": label, "scheduler": sched, "load_s": load, "generate_s": total,
                "denoise_s": denoise, "unet_calls": calls, "peak_rss": rss,
                "psnr_vs_diffusers": vs_peer, "psnr_vs_fixture": db(&fixture),
            }));
        }
    }
    println!();
    Ok(json!({
        "model": plan.model, "packages": plan.packages, "steps": a.steps,
        "guidance": a.guidance, "seed": a.seed, "threads": a.threads, "rounds": a.rounds,
        "runs": plan.runs, "warmup": plan.warmup, "warmup_steps": plan.warmup_steps,
        "load_runs": plan.load_runs, "convert_s": convert_s, "rows": rows,
        "raw": results.iter().map(|(l, v, la)| json!({"side": l, "result": v,
            "load_average": la})).collect::<Vec<_>>(),
    }))
}
