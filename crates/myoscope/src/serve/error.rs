//! Errors as the client sees them: an HTTP status, a stable machine-readable code and a
//! sentence a nurse or a script author can act on, always as JSON
//! (`{"error": {"code": ..., "message": ...}}`).
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Every `code` the server sends, in the order `openapi.json` lists them (a test keeps the
/// two equal; debug builds refuse a code missing here).
pub const ERROR_CODES: &[&str] = &[
    "unsupported_type",
    "too_many_pixels",
    "unreadable",
    "wrong_channels",
    "wrong_stain",
    "too_small",
    "too_many_photos",
    "no_photos",
    "upload_too_large",
    "bad_multipart",
    "bad_field",
    "bad_channel",
    "unknown_class",
    "unauthorized",
    "busy",
    "timeout",
    "upload_timeout",
    "no_segmentation_model",
    "segmentation_failed",
    "not_found",
    "internal",
];

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, for 503 (the queue is full).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        debug_assert!(
            ERROR_CODES.contains(&code),
            "undocumented error code {code}"
        );
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// The photo is well-formed HTTP but not something the model can read.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn busy(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "the server is working on as many cases as it queues; try again shortly",
            )
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": {"code": self.code, "message": self.message}
        });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}
