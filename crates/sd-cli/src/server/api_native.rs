//! The native job API the page uses: submit, watch (server-sent events), cancel, fetch.
//!
//! `POST /api/v1/jobs` → 202 with the job; `GET /api/v1/jobs/{id}`; `GET
//! /api/v1/jobs/{id}/events` (events `queued`, `running`, `done`, `failed`, `cancelled`, each
//! carrying the job as JSON); `POST /api/v1/jobs/{id}/cancel`; `GET
//! /api/v1/jobs/{id}/images/{index}` (the PNG, `parameters` chunk included); `GET
//! /api/v1/info` (the models, schedulers and limits).

use super::error::{ApiError, ApiJson};
use super::job::{Job, Phase};
use super::params::{self, Context};
use super::router::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sd_runtime::pipeline::{SafetyVerdict, SchedulerKind, parse_rng};
use serde::Deserialize;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;

/// The native request. Unknown fields are refused (this API is ours; a typo should not pass
/// silently).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NativeRequest {
    prompt: String,
    #[serde(default)]
    negative_prompt: String,
    steps: Option<i64>,
    guidance_scale: Option<f64>,
    seed: Option<i64>,
    scheduler: Option<String>,
    rng: Option<String>,
    image_count: Option<i64>,
    width: Option<i64>,
    height: Option<i64>,
    image: Option<String>,
    strength: Option<f64>,
    mask: Option<String>,
    preview_every: Option<i64>,
    save: Option<bool>,
}

impl NativeRequest {
    /// The job this asks for: one generation of `image_count` images from one noise draw,
    /// as `sd generate` makes them.
    pub fn to_spec(&self, ctx: &Context, safety: bool) -> Result<super::job::JobSpec, ApiError> {
        let l = &ctx.limits;
        let mut warnings = Vec::new();
        let mut r = params::prompted(&self.prompt, &self.negative_prompt, l)?;
        r.steps = params::steps(self.steps, 20, l)?;
        r.guidance_scale = params::float_in(
            "guidance_scale",
            self.guidance_scale.unwrap_or(7.5),
            0.0,
            100.0,
        )?;
        r.seed = params::seed("seed", self.seed)?;
        if let Some(s) = &self.scheduler {
            r.scheduler = params::scheduler("scheduler", s)?;
        }
        if let Some(s) = &self.rng {
            r.rng = parse_rng(s).map_err(|e| ApiError::bad("rng", e.to_string()))?;
        }
        r.image_count = params::int_in(
            "image_count",
            self.image_count.unwrap_or(1),
            1,
            l.max_images as i64,
        )?;
        params::size("width", self.width, self.height, &ctx.model)?;
        if let Some(b64) = &self.image {
            params::require_image_to_image("image", &ctx.model)?;
            r.image = Some(params::image("image", b64, ctx, &mut warnings)?);
            r.strength = 0.5;
        }
        if let Some(b64) = &self.mask {
            if r.image.is_none() {
                return Err(ApiError::bad(
                    "mask",
                    "a mask needs a starting image (`image`)",
                ));
            }
            r.mask = Some(params::mask("mask", b64, false, ctx, &mut warnings)?);
            r.strength = 1.0;
        }
        if let Some(s) = self.strength {
            if r.image.is_none() {
                return Err(ApiError::bad(
                    "strength",
                    "strength applies to a starting image (`image`)",
                ));
            }
            r.strength = params::float_in("strength", s, 0.0, 1.0)?;
        }
        r.preview_every = params::int_in(
            "preview_every",
            self.preview_every.unwrap_or(0),
            0,
            r.steps as i64,
        )?;
        r.safety_check = safety;
        Ok(params::spec(vec![r], self.save.unwrap_or(true), warnings))
    }
}

/// `POST /api/v1/jobs`.
pub async fn submit(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<NativeRequest>,
) -> Result<Response, ApiError> {
    // Decoding and resizing images is blocking work: off the async threads.
    let (ctx, safety) = (app.ctx.clone(), app.safety);
    let spec = tokio::task::spawn_blocking(move || req.to_spec(&ctx, safety))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let job = app.engine.submit(spec)?;
    let body = job_view(&job, false);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/api/v1/jobs/{}", job.id))],
        Json(body),
    )
        .into_response())
}

/// `GET /api/v1/jobs`: the queued, running and kept jobs, oldest first.
pub async fn list(State(app): State<AppState>) -> Json<Value> {
    let jobs: Vec<Value> = app
        .engine
        .jobs()
        .iter()
        .map(|j| job_view(j, false))
        .collect();
    Json(json!({ "jobs": jobs }))
}

/// `GET /api/v1/jobs/{id}`.
pub async fn get(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = find(&app, &id)?;
    Ok(Json(job_view(&job, true)))
}

/// `POST /api/v1/jobs/{id}/cancel` (and `DELETE /api/v1/jobs/{id}`).
pub async fn cancel(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let uuid = parse_id(&id)?;
    let job = app
        .engine
        .cancel(&uuid)
        .ok_or_else(|| ApiError::no_job(&id))?;
    Ok(Json(job_view(&job, false)))
}

/// `GET /api/v1/jobs/{id}/events`: the job's phases as server-sent events, ending with the
/// final one. A preview image rides along (as a data URL) the first time it is seen.
pub async fn events(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let job = find(&app, &id)?;
    struct Watch {
        job: Arc<Job>,
        rx: tokio::sync::watch::Receiver<Phase>,
        first: bool,
        done: bool,
        preview_step: Option<usize>,
    }
    let rx = job.watch();
    let start = Watch {
        job,
        rx,
        first: true,
        done: false,
        preview_step: None,
    };
    let stream = futures_util::stream::unfold(start, |mut w| async move {
        if w.done {
            return None;
        }
        if !w.first && w.rx.changed().await.is_err() {
            w.done = true;
        }
        w.first = false;
        let phase = w.rx.borrow_and_update().clone();
        let mut view = job_view(&w.job, false);
        if let Phase::Running(r) = &phase
            && let Some(p) = &r.preview
            && w.preview_step != Some(p.step)
        {
            w.preview_step = Some(p.step);
            view["preview"] = json!(data_url(&p.png));
            view["preview_step"] = json!(p.step);
        }
        if phase.is_final() {
            w.done = true;
        }
        let event = Event::default().event(phase.name()).data(view.to_string());
        Some((Ok(event), w))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// `?download=1` asks for `Content-Disposition: attachment`.
#[derive(Debug, Deserialize)]
pub struct ImageQuery {
    #[serde(default)]
    download: Option<String>,
}

/// `GET /api/v1/jobs/{id}/images/{index}`: the PNG with its `parameters` chunk.
pub async fn image(
    State(app): State<AppState>,
    Path((id, index)): Path<(String, String)>,
    Query(q): Query<ImageQuery>,
) -> Result<Response, ApiError> {
    let job = find(&app, &id)?;
    let phase = job.phase();
    let Some(out) = phase.output() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("job {id} is {} and has no images yet", phase.name()),
        ));
    };
    let i: usize = index
        .parse()
        .map_err(|_| ApiError::bad("index", format!("image index `{index}` is not a number")))?;
    let image = out.images.get(i).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "job {id} made {} image(s); there is no image {i}",
                out.images.len()
            ),
        )
    })?;
    let Some(png) = &image.png else {
        return Err(ApiError::new(
            StatusCode::GONE,
            format!("image {i} of job {id} was withheld by the safety checker"),
        ));
    };
    let disposition = if q.download.is_some_and(|d| d != "0" && d != "false") {
        "attachment"
    } else {
        "inline"
    };
    Ok((
        [
            (header::CONTENT_TYPE, "image/png".to_string()),
            (
                header::CONTENT_DISPOSITION,
                content_disposition(disposition, &image.file_name),
            ),
        ],
        png.clone(),
    )
        .into_response())
}

/// `Content-Disposition` for `name`: an ASCII fallback (quotes, backslashes and non-ASCII made
/// `_`) and the exact name as RFC 5987 `filename*`.
fn content_disposition(kind: &str, name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// `GET /api/v1/info`: what the page needs to build its form.
pub async fn info(State(app): State<AppState>) -> Json<Value> {
    let schedulers: Vec<Value> = SchedulerKind::ALL
        .iter()
        .map(|k| json!({ "name": k.cli_name(), "label": k.a1111_name() }))
        .collect();
    Json(json!({
        "model": app.ctx.model,
        "schedulers": schedulers,
        "rngs": ["numpy", "torch", "nvidia"],
        "limits": app.ctx.limits,
        "safety_check": app.safety,
        "saves_images": app.saves,
    }))
}

/// `GET /health`.
pub async fn health(State(app): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "model": app.ctx.model.name,
        "busy": app.engine.current().is_some(),
        "queued": app.engine.queued(),
    }))
}

fn parse_id(id: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(id).map_err(|_| ApiError::no_job(id))
}

fn find(app: &AppState, id: &str) -> Result<Arc<Job>, ApiError> {
    let uuid = parse_id(id)?;
    app.engine.job(&uuid).ok_or_else(|| ApiError::no_job(id))
}

/// A PNG as a `data:` URL.
pub fn data_url(png: &[u8]) -> String {
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    )
}

fn safety_name(v: SafetyVerdict) -> &'static str {
    match v {
        SafetyVerdict::Clean => "clean",
        SafetyVerdict::Flagged => "flagged",
        SafetyVerdict::NotChecked => "not_checked",
    }
}

/// A job as the native API shows it; `with_preview` adds the newest preview as a data URL.
pub fn job_view(job: &Job, with_preview: bool) -> Value {
    let phase = job.phase();
    let created = job
        .created
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let first = &job.spec.runs[0];
    let mut v = json!({
        "id": job.id.to_string(),
        "number": job.number,
        "state": phase.name(),
        "created": created,
        "request": {
            "prompt": first.prompt,
            "negative_prompt": first.negative_prompt,
            "steps": first.steps,
            "guidance_scale": first.guidance_scale,
            "seed": first.seed,
            "scheduler": first.scheduler.cli_name(),
            "images": job.spec.image_count(),
            "strength": first.image.as_ref().map(|_| first.strength),
        },
    });
    match &phase {
        Phase::Queued { position } => v["position"] = json!(position),
        Phase::Running(r) => {
            v["step"] = json!(r.step);
            v["total"] = json!(r.total);
            v["it_per_s"] = json!(r.it_per_s);
            if let Some(eta) = r.eta_s() {
                v["eta_s"] = json!(eta);
            }
            if with_preview && let Some(p) = &r.preview {
                v["preview"] = json!(data_url(&p.png));
                v["preview_step"] = json!(p.step);
            }
        }
        Phase::Done(out) => output_view(job, out, &mut v),
        Phase::Failed(f) => {
            v["error"] = ApiError::from(f).body()["error"].clone();
        }
        Phase::Cancelled { step, output } => {
            v["step"] = json!(step);
            output_view(job, output, &mut v);
        }
    }
    v
}

/// The images (and size, time, warnings) of a finished or cancelled job, added to its view.
fn output_view(job: &Job, out: &super::job::JobOutput, v: &mut Value) {
    let images: Vec<Value> = out
        .images
        .iter()
        .map(|im| {
            json!({
                "index": im.index,
                "seed": im.seed,
                "safety": safety_name(im.safety),
                "file_name": im.file_name,
                "parameters": im.parameters,
                "url": im.png.as_ref().map(|_| format!("/api/v1/jobs/{}/images/{}", job.id, im.index)),
                "saved": im.saved_to.is_some(),
            })
        })
        .collect();
    v["images"] = json!(images);
    v["width"] = json!(out.width);
    v["height"] = json!(out.height);
    v["seconds"] = json!(out.seconds);
    v["warnings"] = json!(out.warnings);
}
