//! AUTOMATIC1111's API: `/sdapi/v1/txt2img`, `/img2img`, `/samplers`, `/progress`,
//! `/interrupt`, `/sd-models`, with its field names and base64 PNGs. Fields this server does
//! not use (`restore_faces`, `override_settings`, …) are ignored, as clients send many.

use super::error::{ApiError, ApiJson, from_value};
use super::job::{Job, Phase};
use super::params::{self, Context};
use super::router::{AppState, CancelOnDrop};
use axum::Json;
use axum::extract::{Query, State};
use base64::Engine as _;
use sd_runtime::pipeline::SchedulerKind;
use serde::Deserialize;
use serde_json::{Value, json};

/// The fields of `txt2img` / `img2img` this server reads.
#[derive(Debug, Deserialize)]
struct A1111Request {
    #[serde(default)]
    prompt: String,
    #[serde(default)]
    negative_prompt: String,
    steps: Option<i64>,
    cfg_scale: Option<f64>,
    seed: Option<i64>,
    sampler_name: Option<String>,
    sampler_index: Option<String>,
    scheduler: Option<String>,
    width: Option<i64>,
    height: Option<i64>,
    batch_size: Option<i64>,
    n_iter: Option<i64>,
    init_images: Option<Vec<String>>,
    denoising_strength: Option<f64>,
    mask: Option<String>,
    inpainting_mask_invert: Option<i64>,
    send_images: Option<bool>,
    save_images: Option<bool>,
}

impl A1111Request {
    fn to_spec(
        &self,
        ctx: &Context,
        safety: bool,
        img2img: bool,
    ) -> Result<super::job::JobSpec, ApiError> {
        let l = &ctx.limits;
        let mut warnings = Vec::new();
        let mut r = params::prompted(&self.prompt, &self.negative_prompt, l)?;
        r.steps = params::steps(self.steps, 50, l)?;
        r.guidance_scale =
            params::float_in("cfg_scale", self.cfg_scale.unwrap_or(7.0), 0.0, 100.0)?;
        r.seed = params::seed("seed", self.seed)?;
        r.scheduler = sampler(self)?;
        params::size("width", self.width, self.height, &ctx.model)?;
        let batch = params::int_in(
            "batch_size",
            self.batch_size.unwrap_or(1),
            1,
            l.max_images as i64,
        )?;
        let iterations =
            params::int_in("n_iter", self.n_iter.unwrap_or(1), 1, l.max_images as i64)?;
        if img2img {
            let images = self.init_images.as_deref().unwrap_or_default();
            let Some(first) = images.first() else {
                return Err(ApiError::bad(
                    "init_images",
                    "img2img needs one image in init_images",
                ));
            };
            if images.len() > 1 {
                warnings.push(format!(
                    "init_images holds {} images; the first is used",
                    images.len()
                ));
            }
            params::require_image_to_image("init_images", &ctx.model)?;
            r.image = Some(params::image("init_images[0]", first, ctx, &mut warnings)?);
            r.strength = params::float_in(
                "denoising_strength",
                self.denoising_strength.unwrap_or(0.75),
                0.0,
                1.0,
            )?;
            if let Some(m) = &self.mask {
                let invert = self.inpainting_mask_invert.unwrap_or(0) != 0;
                r.mask = Some(params::mask("mask", m, invert, ctx, &mut warnings)?);
            }
        } else if self.init_images.is_some() {
            return Err(ApiError::bad(
                "init_images",
                "txt2img takes no init_images; send them to /sdapi/v1/img2img",
            ));
        }
        r.safety_check = safety;
        let runs = params::one_seed_per_image(r, batch * iterations, "batch_size", l)?;
        Ok(params::spec(
            runs,
            self.save_images.unwrap_or(false),
            warnings,
        ))
    }
}

/// `sampler_name` (or the older `sampler_index`), with A1111's separate `scheduler`
/// ("Karras" makes DPM++ 2M its Karras form).
fn sampler(r: &A1111Request) -> Result<SchedulerKind, ApiError> {
    let (field, name) = match (&r.sampler_name, &r.sampler_index) {
        (Some(n), _) => ("sampler_name", n.as_str()),
        (None, Some(n)) => ("sampler_index", n.as_str()),
        (None, None) => ("sampler_name", "Euler"),
    };
    let kind = params::scheduler(field, name)?;
    let karras = r
        .scheduler
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("karras"));
    Ok(match kind {
        SchedulerKind::Dpmpp if karras => SchedulerKind::DpmppKarras,
        k => k,
    })
}

/// `POST /sdapi/v1/txt2img`.
pub async fn txt2img(
    State(app): State<AppState>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    generate(app, body, false).await
}

/// `POST /sdapi/v1/img2img`.
pub async fn img2img(
    State(app): State<AppState>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    generate(app, body, true).await
}

async fn generate(app: AppState, body: Value, img2img: bool) -> Result<Json<Value>, ApiError> {
    if !body.is_object() {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "the request body must be a JSON object",
        ));
    }
    let req: A1111Request = from_value(&body)?;
    // Decoding and resizing images is blocking work: off the async threads.
    let (ctx, safety) = (app.ctx.clone(), app.safety);
    let (req, spec) = tokio::task::spawn_blocking(move || {
        let spec = req.to_spec(&ctx, safety, img2img);
        (req, spec)
    })
    .await
    .map_err(|e| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let spec = spec?;
    // The echo leaves the uploaded images out (as A1111 without `include_init_images`).
    let mut body = body;
    for key in ["init_images", "mask"] {
        if let Some(v) = body.get_mut(key) {
            *v = Value::Null;
        }
    }
    let job = app.engine.submit(spec)?;
    // A caller that hangs up cancels its job at the next step.
    let guard = CancelOnDrop::new(&app.engine, &job);
    let phase = job.finished().await;
    guard.disarm();
    let send_images = req.send_images.unwrap_or(true);
    let interrupted = matches!(phase, Phase::Cancelled { .. });
    match phase {
        Phase::Done(out) | Phase::Cancelled { output: out, .. } => {
            let b64 = base64::engine::general_purpose::STANDARD;
            let images: Vec<String> = if send_images {
                out.images
                    .iter()
                    .filter_map(|i| i.png.as_ref().map(|p| b64.encode(p)))
                    .collect()
            } else {
                Vec::new()
            };
            let batch = req.batch_size.unwrap_or(1).max(1) as usize;
            let info = info_text(&job, &out, &app.ctx.model.name, batch, interrupted);
            Ok(Json(
                json!({ "images": images, "parameters": body, "info": info }),
            ))
        }
        Phase::Failed(f) => Err(ApiError::from(&f)),
        _ => Err(ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "the job ended without a result",
        )),
    }
}

/// A1111's `info`: a JSON object in a string.
fn info_text(
    job: &Job,
    out: &super::job::JobOutput,
    model: &str,
    batch_size: usize,
    interrupted: bool,
) -> String {
    let first = &job.spec.runs[0];
    let (kept, withheld): (Vec<_>, Vec<_>) = out.images.iter().partition(|i| i.png.is_some());
    let seeds: Vec<u64> = kept.iter().map(|i| i.seed).collect();
    let infotexts: Vec<&str> = kept.iter().map(|i| i.parameters.as_str()).collect();
    let flagged: Vec<usize> = withheld.iter().map(|i| i.index).collect();
    json!({
        "prompt": first.prompt,
        "all_prompts": vec![&first.prompt; seeds.len()],
        "negative_prompt": first.negative_prompt,
        "all_negative_prompts": vec![&first.negative_prompt; seeds.len()],
        "seed": first.seed,
        "all_seeds": seeds,
        "subseed": -1,
        "width": out.width,
        "height": out.height,
        "sampler_name": first.scheduler.a1111_name(),
        "cfg_scale": first.guidance_scale,
        "steps": first.steps,
        "batch_size": batch_size,
        "n_iter": job.spec.runs.len() / batch_size.max(1),
        "denoising_strength": first.image.as_ref().map(|_| first.strength),
        "sd_model_name": model,
        "infotexts": infotexts,
        "safety_flagged": flagged,
        "warnings": out.warnings,
        "job": job.id.to_string(),
        "interrupted": interrupted,
    })
    .to_string()
}

/// `GET /sdapi/v1/samplers`.
pub async fn samplers() -> Json<Value> {
    let list: Vec<Value> = SchedulerKind::ALL
        .iter()
        .map(|k| json!({ "name": k.a1111_name(), "aliases": [k.cli_name()], "options": {} }))
        .collect();
    Json(Value::Array(list))
}

/// `GET /sdapi/v1/options`: the settings clients read first (the loaded model, the format).
pub async fn options(State(app): State<AppState>) -> Json<Value> {
    Json(json!({
        "sd_model_checkpoint": app.ctx.model.name,
        "samples_format": "png",
        "save_images": app.saves,
        "enable_pnginfo": true,
    }))
}

/// `GET /sdapi/v1/sd-models`: the one model this server loaded.
pub async fn sd_models(State(app): State<AppState>) -> Json<Value> {
    let m = &app.ctx.model;
    Json(json!([{
        "title": m.name,
        "model_name": m.name,
        "hash": null,
        "sha256": null,
        "filename": m.folder.display().to_string(),
        "config": null,
    }]))
}

/// `?skip_current_image=true` leaves the preview out.
#[derive(Debug, Deserialize)]
pub struct ProgressQuery {
    #[serde(default)]
    skip_current_image: Option<String>,
}

/// `GET /sdapi/v1/progress`: the running job's fraction done, ETA and newest preview.
pub async fn progress(State(app): State<AppState>, Query(q): Query<ProgressQuery>) -> Json<Value> {
    let skip = q
        .skip_current_image
        .as_deref()
        .is_some_and(|s| s != "false" && s != "0");
    let queued = app.engine.queued();
    let Some(job) = app.engine.current() else {
        return Json(json!({
            "progress": 0.0,
            "eta_relative": 0.0,
            "state": state(None, 0, 0, queued),
            "current_image": null,
            "textinfo": null,
        }));
    };
    let (step, total, eta, preview) = match job.phase() {
        Phase::Running(r) => (r.step, r.total, r.eta_s().unwrap_or(0.0), r.preview),
        _ => (0, 0, 0.0, None),
    };
    let progress = if total > 0 {
        step as f64 / total as f64
    } else {
        0.0
    };
    let image = match (&preview, skip) {
        (Some(p), false) => json!(base64::engine::general_purpose::STANDARD.encode(&p.png)),
        _ => Value::Null,
    };
    Json(json!({
        "progress": progress,
        "eta_relative": eta,
        "state": state(Some(&job), step, total, queued),
        "current_image": image,
        "textinfo": format!("step {step} of {total}"),
    }))
}

fn state(job: Option<&Job>, step: usize, total: usize, queued: usize) -> Value {
    json!({
        "skipped": false,
        "interrupted": job.is_some_and(|j| j.cancel_requested()),
        "job": job.map(|j| j.id.to_string()).unwrap_or_default(),
        "job_count": queued + usize::from(job.is_some()),
        "job_timestamp": job.map(|j| timestamp(j.created)).unwrap_or_else(|| "0".into()),
        "job_no": 0,
        "sampling_step": step,
        "sampling_steps": total,
    })
}

/// `YYYYmmddHHMMSS` in UTC, as A1111's `job_timestamp`.
fn timestamp(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `POST /sdapi/v1/interrupt`: cancels the running job.
pub async fn interrupt(State(app): State<AppState>) -> Json<Value> {
    let id = app.engine.current().map(|j| {
        app.engine.cancel(&j.id);
        j.id.to_string()
    });
    Json(json!({ "interrupted": id }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_civil_utc() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_764_636_245);
        assert_eq!(super::timestamp(t), "20251202004405");
        assert_eq!(super::timestamp(std::time::UNIX_EPOCH), "19700101000000");
    }
}
