//! The HTTP surface: the page and its assets, `GET /healthz`, `GET /openapi.json`, and the
//! JSON API under `/v1` (documented in `openapi.json`). Uploads are multipart form data;
//! nothing in a request names a file on the server, and uploads stay in memory.
use super::config::Limits;
use super::error::ApiError;
use super::model_info::ModelInfo;
use super::upload::{check_header, check_segment_header, Header};
use super::worker::{no_segmentation_model, Answer, Queue, Task, Ticket, Upload};
use axum::extract::multipart::{Multipart, MultipartError};
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub struct AppState {
    pub info: ModelInfo,
    pub segment_model: Option<serde_json::Value>,
    pub queue: Queue,
    pub limits: Limits,
    pub token: Option<String>,
    pub min_side: u32,
}

type Shared = State<Arc<AppState>>;

pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/v1/diagnose", post(diagnose))
        .route("/v1/explain", post(explain))
        .route("/v1/segment", post(segment))
        .route("/v1/models", get(models))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/", get(page))
        .route("/assets/app.js", get(script))
        .route("/assets/app.css", get(style))
        .route("/openapi.json", get(openapi))
        .route("/healthz", get(healthz))
        .merge(api)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.limits.max_upload_bytes))
        .with_state(state)
}

async fn page() -> Html<&'static str> {
    Html(include_str!("assets/index.html"))
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("assets/app.js"),
    )
}

async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/app.css"),
    )
}

async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; the API is described at /openapi.json",
    )
}

async fn healthz(State(s): Shared) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "model": s.info.name,
        "version": s.info.version,
        "queue": s.queue.state(),
    }))
}

async fn models(State(s): Shared) -> Json<serde_json::Value> {
    let l = &s.limits;
    Json(serde_json::json!({
        "classifier": s.info,
        "segmentation": s.segment_model,
        "limits": {
            "max_upload_bytes": l.max_upload_bytes,
            "max_pixels": l.max_pixels,
            "max_photos": l.max_photos,
            "min_side": s.min_side,
            "queue": l.queue,
            "timeout_seconds": l.timeout.as_secs_f64(),
            "picture_side": l.picture_side,
            "formats": ["image/jpeg", "image/png", "image/tiff"],
        },
    }))
}

/// `Authorization: Bearer <token>` on `/v1/*` when the server was given a token.
async fn require_token(State(s): Shared, request: Request, next: Next) -> Response {
    if let Some(token) = &s.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
            let mut r = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this server needs 'Authorization: Bearer <token>' (the token given to `myoscope serve --token-file`)",
            )
            .into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static"));
            return r;
        }
    }
    next.run(request).await
}

/// Compares without an early exit, so the time taken does not reveal how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, Deserialize)]
struct Flags {
    heat_maps: Option<bool>,
    check_stain: Option<bool>,
}

/// The multipart form: files (any field with a file name, or named photo/photos/image) and
/// text fields.
struct Form {
    uploads: Vec<Upload>,
    fields: BTreeMap<String, String>,
}

fn too_large(limits: &Limits) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "upload_too_large",
        format!(
            "the upload is larger than this server takes ({} MB in one request); send fewer or smaller photos",
            limits.max_upload_bytes >> 20
        ),
    )
}

fn multipart_error(e: MultipartError, limits: &Limits) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large(limits)
    } else {
        ApiError::bad_request(
            "bad_multipart",
            format!("the upload is not valid multipart/form-data: {e}"),
        )
    }
}

/// How an endpoint checks a file's header before accepting it.
type HeaderCheck = fn(&str, &[u8], &Limits) -> Result<Header, ApiError>;

async fn read_form(
    mut multipart: Multipart,
    limits: &Limits,
    max_files: usize,
    check: HeaderCheck,
) -> Result<Form, ApiError> {
    let mut form = Form {
        uploads: Vec::new(),
        fields: BTreeMap::new(),
    };
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| multipart_error(e, limits))?
    {
        let field_name = field.name().unwrap_or("").to_string();
        let file_name = field.file_name().map(display_name);
        let is_file =
            file_name.is_some() || matches!(field_name.as_str(), "photo" | "photos" | "image");
        let bytes = field
            .bytes()
            .await
            .map_err(|e| multipart_error(e, limits))?;
        if is_file {
            if form.uploads.len() == max_files {
                return Err(ApiError::bad_request(
                    "too_many_photos",
                    format!("at most {max_files} photo(s) per request (one slide)"),
                ));
            }
            let name = file_name.unwrap_or_else(|| format!("photo {}", form.uploads.len() + 1));
            let header = check(&name, &bytes, limits)?;
            form.uploads.push(Upload {
                name,
                bytes,
                header,
            });
        } else {
            let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                ApiError::bad_request("bad_field", format!("field '{field_name}' is not text"))
            })?;
            form.fields.insert(field_name, text.trim().to_string());
        }
    }
    if form.uploads.is_empty() {
        return Err(ApiError::bad_request(
            "no_photos",
            "no photo in the request: send multipart/form-data with one or more 'photo' file fields",
        ));
    }
    Ok(form)
}

/// A client's file name for display: the last path component, printable, at most 120
/// characters (never used to open anything).
fn display_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    let clean: String = last.chars().filter(|c| !c.is_control()).take(120).collect();
    if clean.trim().is_empty() {
        "photo".into()
    } else {
        clean
    }
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
}

async fn discard(mut multipart: Multipart) {
    while let Ok(Some(mut field)) = multipart.next_field().await {
        while let Ok(Some(_chunk)) = field.chunk().await {}
    }
}

/// Admission, the upload (under its own time limit), the worker (under the request's).
async fn handle(
    s: &AppState,
    headers: &HeaderMap,
    multipart: Multipart,
    max_files: usize,
    check: HeaderCheck,
    make: impl FnOnce(Form) -> Result<Task, ApiError>,
) -> Result<Json<Answer>, ApiError> {
    // An announced size over the limit is refused before anything is read.
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > s.limits.max_upload_bytes as u64) {
        return Err(too_large(&s.limits));
    }
    let ticket: Ticket = match s.queue.admit() {
        Ok(t) => t,
        Err(busy) => {
            // A client that did not ask `Expect: 100-continue` is already sending its photos;
            // answering and closing now would break its pipe before it reads the 503. Read the
            // body and throw it away (chunk by chunk: nothing is kept), for a few seconds at
            // most, then answer.
            if !expects_continue(headers) {
                let _ = tokio::time::timeout(Duration::from_secs(5), discard(multipart)).await;
            }
            return Err(busy);
        }
    };
    let form = tokio::time::timeout(
        s.limits.upload_timeout,
        read_form(multipart, &s.limits, max_files, check),
    )
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "upload_timeout",
            format!(
                "the upload took longer than {} s",
                s.limits.upload_timeout.as_secs()
            ),
        )
    })??;
    let task = make(form)?;
    let rx = s.queue.submit(ticket, task)?;
    match tokio::time::timeout(s.limits.timeout, rx).await {
        Ok(Ok(answer)) => answer.map(Json),
        Ok(Err(_)) => Err(ApiError::internal("the worker dropped the case")),
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!(
                "the case took longer than {} s; try fewer photos or a less busy moment",
                s.limits.timeout.as_secs()
            ),
        )),
    }
}

async fn diagnose(
    State(s): Shared,
    headers: HeaderMap,
    Query(flags): Query<Flags>,
    multipart: Multipart,
) -> Result<Json<Answer>, ApiError> {
    let max = s.limits.max_photos;
    handle(&s, &headers, multipart, max, check_header, |form| {
        Ok(Task::Diagnose {
            slide: form
                .fields
                .get("slide")
                .filter(|v| !v.is_empty())
                .cloned()
                .unwrap_or_else(|| "slide".into()),
            photos: form.uploads,
            heat_maps: flags.heat_maps.unwrap_or(true),
            check_stain: flags.check_stain.unwrap_or(true),
        })
    })
    .await
}

async fn explain(
    State(s): Shared,
    headers: HeaderMap,
    Query(flags): Query<Flags>,
    multipart: Multipart,
) -> Result<Json<Answer>, ApiError> {
    let max = s.limits.max_photos;
    handle(&s, &headers, multipart, max, check_header, |form| {
        Ok(Task::Explain {
            class: form.fields.get("class").filter(|v| !v.is_empty()).cloned(),
            photos: form.uploads,
            check_stain: flags.check_stain.unwrap_or(true),
        })
    })
    .await
}

async fn segment(
    State(s): Shared,
    headers: HeaderMap,
    multipart: Multipart,
) -> Result<Json<Answer>, ApiError> {
    if s.segment_model.is_none() {
        return Err(no_segmentation_model());
    }
    handle(
        &s,
        &headers,
        multipart,
        1,
        check_segment_header,
        |mut form| {
            let min_area = match form.fields.get("min_area") {
                Some(v) => v.parse().map_err(|_| {
                    ApiError::bad_request(
                        "bad_field",
                        format!("min_area must be a whole number of pixels, got '{v}'"),
                    )
                })?,
                None => 10,
            };
            Ok(Task::Segment {
                channel: form
                    .fields
                    .get("channel")
                    .filter(|v| !v.is_empty())
                    .cloned(),
                min_area,
                upload: form.uploads.remove(0),
            })
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_file_names_are_only_labels() {
        assert_eq!(display_name("../../etc/passwd"), "passwd");
        assert_eq!(display_name("C:\\photos\\slide 1.jpg"), "slide 1.jpg");
        assert_eq!(display_name("a\u{0}b\nc.png"), "abc.png");
        assert_eq!(display_name("/"), "photo");
    }

    #[test]
    fn openapi_documents_every_route() {
        let doc: serde_json::Value = serde_json::from_str(include_str!("openapi.json")).unwrap();
        for path in [
            "/healthz",
            "/v1/models",
            "/v1/diagnose",
            "/v1/explain",
            "/v1/segment",
        ] {
            assert!(doc["paths"][path].is_object(), "{path}");
        }
        let codes: Vec<&str> = doc["components"]["schemas"]["Error"]["properties"]["error"]
            ["properties"]["code"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(codes, super::super::error::ERROR_CODES);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
