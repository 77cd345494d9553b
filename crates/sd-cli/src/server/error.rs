//! Errors as every API answers them: an HTTP status and OpenAI's error object,
//! `{"error": {"message", "type", "param", "code"}}`, which the page shows as it is.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

/// An API error: status, message and the request field at fault.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for a person.
    pub message: String,
    /// The request field at fault (`steps`, `init_images[0]`, …).
    pub param: Option<String>,
}

impl ApiError {
    /// A 400 about `param`.
    pub fn bad(param: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            param: Some(param.into()),
        }
    }

    /// An error with this status and no field.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            param: None,
        }
    }

    /// A 404 for an unknown job.
    pub fn no_job(id: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no job {id} (unknown, or finished long enough ago to be forgotten)"),
        )
    }

    /// OpenAI's error `type` for this status.
    fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            401 | 403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            400..=499 => "invalid_request_error",
            _ => "server_error",
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind(),
                "param": self.param,
                "code": null,
            }
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.param {
            Some(p) => write!(f, "{} ({p}): {}", self.status, self.message),
            None => write!(f, "{}: {}", self.status, self.message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

impl From<super::engine::EngineError> for ApiError {
    fn from(e: super::engine::EngineError) -> Self {
        use super::engine::EngineError as E;
        let status = match e {
            E::QueueFull { .. } => StatusCode::TOO_MANY_REQUESTS,
            E::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<&super::job::JobFailure> for ApiError {
    fn from(f: &super::job::JobFailure) -> Self {
        ApiError {
            status: StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: f.message.clone(),
            param: f.field.clone(),
        }
    }
}

/// A JSON body whose every rejection (not JSON, wrong content type, a field of the wrong
/// type, too large) is an [`ApiError`], naming the field when one is at fault.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<serde_json::Value>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(from_value(&v)?)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    let status = r.status();
    let text = r.body_text();
    match r {
        JsonRejection::JsonSyntaxError(_) => ApiError::new(
            status,
            format!("the request body is not valid JSON: {text}"),
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            status,
            "send the request body as JSON with `Content-Type: application/json`",
        ),
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            status,
            format!("the request body is larger than this server accepts ({text})"),
        ),
        _ => ApiError::new(status, text),
    }
}

/// Reads `value` as `T`, naming the field at fault (`steps: invalid type: string "x", …`).
pub fn from_value<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: format!("the request body does not fit: {path}: {}", e.inner()),
            param: (path != ".").then_some(path),
        }
    })
}
