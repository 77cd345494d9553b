//! OpenAI's `POST /v1/images/generations`: `prompt`, `n`, `size` ("WxH" or "auto"),
//! `response_format` ("b64_json", the default here as for gpt-image-1, or "url"); the answer
//! is `{"created", "data": [{"b64_json"} | {"url"}]}`. `model`, `quality`, `style`, `user`
//! and the like are accepted and ignored.

use super::error::{ApiError, ApiJson};
use super::job::Phase;
use super::params;
use super::router::{AppState, CancelOnDrop};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

/// The fields read.
#[derive(Debug, Deserialize)]
pub struct ImagesRequest {
    prompt: String,
    n: Option<i64>,
    size: Option<String>,
    response_format: Option<String>,
    output_format: Option<String>,
}

fn parse_size(s: &str) -> Result<(Option<i64>, Option<i64>), ApiError> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok((None, None));
    }
    let bad = || {
        ApiError::bad(
            "size",
            format!("size `{s}` is not WIDTHxHEIGHT (e.g. 512x512) or auto"),
        )
    };
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let w = w.trim().parse::<i64>().map_err(|_| bad())?;
    let h = h.trim().parse::<i64>().map_err(|_| bad())?;
    Ok((Some(w), Some(h)))
}

/// `POST /v1/images/generations`.
pub async fn generations(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ImagesRequest>,
) -> Result<Json<Value>, ApiError> {
    let ctx = &app.ctx;
    let l = &ctx.limits;
    if req.prompt.trim().is_empty() {
        return Err(ApiError::bad("prompt", "prompt is empty"));
    }
    let format = req.response_format.as_deref().unwrap_or("b64_json");
    if format != "b64_json" && format != "url" {
        return Err(ApiError::bad(
            "response_format",
            format!("response_format `{format}`: choose b64_json or url"),
        ));
    }
    if let Some(f) = req.output_format.as_deref()
        && !f.eq_ignore_ascii_case("png")
    {
        return Err(ApiError::bad(
            "output_format",
            format!("output_format `{f}`: this server writes png"),
        ));
    }
    let (w, h) = parse_size(req.size.as_deref().unwrap_or("auto"))?;
    params::size("size", w, h, &ctx.model)?;
    let mut r = params::prompted(&req.prompt, "", l)?;
    r.steps = params::steps(None, 20, l)?;
    r.seed = params::random_seed();
    r.safety_check = app.safety;
    let n = params::int_in("n", req.n.unwrap_or(1), 1, l.max_images as i64)?;
    let runs = params::one_seed_per_image(r, n, "n", l)?;
    let job = app.engine.submit(params::spec(runs, false, Vec::new()))?;
    let guard = CancelOnDrop::new(&app.engine, &job);
    let phase = job.finished().await;
    guard.disarm();
    let out = match phase {
        Phase::Done(out) => out,
        Phase::Failed(f) => return Err(ApiError::from(&f)),
        other => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("the job was {} before it finished", other.name()),
            ));
        }
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let b64 = base64::engine::general_purpose::STANDARD;
    let data: Vec<Value> = out
        .images
        .iter()
        .filter_map(|im| {
            let png = im.png.as_ref()?;
            Some(if format == "url" {
                json!({ "url": format!("http://{host}/api/v1/jobs/{}/images/{}", job.id, im.index) })
            } else {
                json!({ "b64_json": b64.encode(png) })
            })
        })
        .collect();
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(Json(json!({ "created": created, "data": data })))
}
