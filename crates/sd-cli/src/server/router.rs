//! The routes, the shared state, and the guards every request passes: the Host check on a
//! loopback server, the body limit, JSON for every error, and the security headers.

use super::engine::Engine;
use super::error::ApiError;
use super::job::Job;
use super::params::Context;
use super::{api_a1111, api_native, api_openai, assets};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;

/// What every handler sees.
#[derive(Clone)]
pub struct AppState {
    /// The queue and worker.
    pub engine: Engine,
    /// Limits and the models' facts.
    pub ctx: Arc<Context>,
    /// Whether generated images pass the safety checker.
    pub safety: bool,
    /// Whether the server writes images to an output folder.
    pub saves: bool,
    /// Answer only requests whose `Host` is a loopback name (the server is bound to loopback).
    pub loopback_only: bool,
}

/// Cancels a job when dropped before [`CancelOnDrop::disarm`]: a synchronous caller that
/// hangs up stops its job at the next step.
pub struct CancelOnDrop {
    engine: Engine,
    id: uuid::Uuid,
    armed: bool,
}

impl CancelOnDrop {
    /// Guards `job`.
    pub fn new(engine: &Engine, job: &Job) -> Self {
        CancelOnDrop {
            engine: engine.clone(),
            id: job.id,
            armed: true,
        }
    }

    /// The caller got its answer: nothing to cancel.
    pub fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            tracing::info!(id = %self.id, "caller went away; cancelling its job");
            self.engine.cancel(&self.id);
        }
    }
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    let max_body = state.ctx.limits.max_body_bytes;
    Router::new()
        .route("/", get(assets::index))
        .route("/app.js", get(assets::script))
        .route("/style.css", get(assets::style))
        .route("/openapi.json", get(assets::openapi))
        .route("/health", get(api_native::health))
        .route("/api/v1/info", get(api_native::info))
        .route(
            "/api/v1/jobs",
            post(api_native::submit).get(api_native::list),
        )
        .route(
            "/api/v1/jobs/{id}",
            get(api_native::get).delete(api_native::cancel),
        )
        .route("/api/v1/jobs/{id}/events", get(api_native::events))
        .route("/api/v1/jobs/{id}/cancel", post(api_native::cancel))
        .route("/api/v1/jobs/{id}/images/{index}", get(api_native::image))
        .route("/sdapi/v1/txt2img", post(api_a1111::txt2img))
        .route("/sdapi/v1/img2img", post(api_a1111::img2img))
        .route("/sdapi/v1/samplers", get(api_a1111::samplers))
        .route("/sdapi/v1/sd-models", get(api_a1111::sd_models))
        .route("/sdapi/v1/options", get(api_a1111::options))
        .route("/sdapi/v1/progress", get(api_a1111::progress))
        .route("/sdapi/v1/interrupt", post(api_a1111::interrupt))
        .route("/v1/images/generations", post(api_openai::generations))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(middleware::map_response(json_errors))
        .with_state(state)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no such page or endpoint: {} {} (GET /openapi.json lists them)",
            req.method(),
            req.uri().path()
        ),
    )
}

/// Refuses a foreign or missing `Host` on a loopback server (DNS rebinding), a state-changing
/// request from another site (cross-site request forgery), and a declared body over the limit
/// (before reading it); adds the security headers.
async fn guard(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if let Err(e) = check_origin(&req, app.loopback_only) {
        return e.into_response();
    }
    let limit = app.ctx.limits.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared
        && n > limit as u64
    {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is {n} bytes; this server accepts up to {limit}"),
        )
        .into_response();
    }
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

fn check_origin(req: &Request, loopback_only: bool) -> Result<(), ApiError> {
    let forbid = |m: String| Err(ApiError::new(StatusCode::FORBIDDEN, m));
    let host = req.headers().get(header::HOST);
    if loopback_only {
        match host {
            None => {
                return forbid(
                    "this server answers only to localhost; the request named no host".into(),
                );
            }
            Some(h) if !is_loopback_host(h) => {
                return forbid(format!(
                    "this server answers only to localhost; the request named host `{}`",
                    h.to_str().unwrap_or("?")
                ));
            }
            Some(_) => {}
        }
    }
    let safe = matches!(req.method().as_str(), "GET" | "HEAD" | "OPTIONS");
    if safe {
        return Ok(());
    }
    let headers = req.headers();
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
    {
        return forbid(
            "a page of another site may not send requests that change this server".into(),
        );
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let authority = origin.split_once("://").map(|(_, a)| a).unwrap_or("");
        let same = host
            .and_then(|h| h.to_str().ok())
            .is_some_and(|h| h.eq_ignore_ascii_case(authority));
        if !same {
            return forbid(format!(
                "requests that change this server must come from its own page; this one came from `{origin}`"
            ));
        }
    }
    Ok(())
}

fn is_loopback_host(host: &HeaderValue) -> bool {
    let Ok(h) = host.to_str() else {
        return false;
    };
    let name = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        h.rsplit_once(':').map(|(n, _)| n).unwrap_or(h)
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name == "::1"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Any error answer that is not JSON yet (axum's own: 405, a bad path or query, a body over
/// the limit) becomes the JSON error every API uses.
async fn json_errors(res: Response) -> Response {
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status.as_u16() < 400 || is_json {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let message = if text.trim().is_empty() {
        match status {
            StatusCode::METHOD_NOT_ALLOWED => {
                let allow = parts
                    .headers
                    .get(header::ALLOW)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if allow.is_empty() {
                    "this endpoint does not take that method (GET /openapi.json lists them)"
                        .to_string()
                } else {
                    format!("this endpoint does not take that method; it takes {allow}")
                }
            }
            s => s.canonical_reason().unwrap_or("error").to_string(),
        }
    } else {
        text
    };
    let mut out = ApiError::new(status, message).into_response();
    for (k, v) in parts.headers.iter() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;
    use axum::http::HeaderValue;

    #[test]
    fn only_loopback_names_pass() {
        for ok in [
            "localhost",
            "localhost:7860",
            "127.0.0.1:80",
            "127.1.2.3",
            "[::1]:7860",
            "app.localhost",
        ] {
            assert!(is_loopback_host(&HeaderValue::from_static(ok)), "{ok}");
        }
        for bad in [
            "example.com",
            "evil.com:7860",
            "192.168.1.2:7860",
            "localhost.evil.com",
            "[::2]:80",
            "127.0.0.1.nip.io",
        ] {
            assert!(!is_loopback_host(&HeaderValue::from_static(bad)), "{bad}");
        }
    }
}
