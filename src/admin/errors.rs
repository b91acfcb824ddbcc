//! The admin API's errors are JSON, `{"error": "<what is wrong>"}`, whoever produced them:
//! the handlers, axum's extractors and router (bad UTF-8 in a path parameter, 404, 405), or
//! the URL length check.

use axum::Json;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The longest URL (path and query) the admin server reads; beyond it, 414. hyper refuses
/// longer request lines still (64 KiB) with an empty 414 before any of this runs.
pub const MAX_URL: usize = 8 * 1024;
/// An error body longer than this is not one of axum's messages: it is cut.
const MAX_MESSAGE: usize = 1024;

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Paths whose errors stay plain text, as documented: the probes.
fn plain(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// Middleware around the whole router: refuses over-long URLs and turns every error
/// response that is not JSON yet into the API's JSON error.
pub(crate) async fn json_errors(req: Request, next: Next) -> Response {
    let url = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if url > MAX_URL {
        return error(
            StatusCode::URI_TOO_LONG,
            format!("the URL is {url} bytes long; at most {MAX_URL} are read"),
        );
    }
    let keep_plain = plain(req.uri().path());
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if keep_plain || is_json || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, MAX_MESSAGE)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    let mut out = error(status, message);
    // 405 keeps its `Allow`; 401 its `WWW-Authenticate`.
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}
