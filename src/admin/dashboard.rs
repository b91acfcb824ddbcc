//! The live dashboard at `/`: one page and its two assets, compiled into the binary.
//!
//! The page is plain HTML, CSS and JavaScript with hand-written SVG charts, so it needs no
//! build step, no framework and no network beyond flotilla itself: it works on an air-gapped
//! admin network and can never drift from the binary that serves its data. It polls the JSON
//! API (`/api/v1/state`, `/nodes`, `/traffic`, `/events`, `/mesh`, `/mesh/graph`) and keeps its chart history in the
//! browser.
//!
//! The routes take no state, so tests can serve the same page in front of fixture data.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const STYLE_CSS: &str = include_str!("dashboard/style.css");
/// The mesh's service graph, drawn from `/api/v1/mesh/graph` (its own poll).
const MESH_GRAPH_JS: &str = include_str!("dashboard/mesh_graph.js");

/// Only flotilla's own origin, no inline script or style: the page cannot load anything from a
/// CDN by accident, and a value shown on it (an error message, a NACK) cannot become markup
/// that runs.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /` and `GET /assets/{name}`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{*name}", get(asset))
}

/// One embedded file: its name under `/assets/`, content type and text.
pub fn asset_named(name: &str) -> Option<(&'static str, &'static str)> {
    match name {
        "app.js" => Some(("text/javascript; charset=utf-8", APP_JS)),
        "style.css" => Some(("text/css; charset=utf-8", STYLE_CSS)),
        "mesh_graph.js" => Some(("text/javascript; charset=utf-8", MESH_GRAPH_JS)),
        _ => None,
    }
}

async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX_HTML)
}

async fn asset(Path(name): Path<String>) -> Response {
    match asset_named(&name) {
        Some((content_type, body)) => page(content_type, body),
        None => (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    }
}

/// `no-cache`: the browser may keep a copy but must revalidate, so a page left open across an
/// upgrade picks up the new assets on its next load.
fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                HeaderName::from_static("referrer-policy"),
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The "no CDN" rule, checked on what is compiled in: no asset names another origin.
    #[test]
    fn assets_load_nothing_from_another_origin() {
        for (name, text) in [
            ("index.html", INDEX_HTML),
            ("app.js", APP_JS),
            ("style.css", STYLE_CSS),
            ("mesh_graph.js", MESH_GRAPH_JS),
        ] {
            for needle in ["http://", "https://", "//cdn", "@import"] {
                // The SVG namespace is an identifier, not something fetched.
                let hits = text
                    .match_indices(needle)
                    .filter(|(i, _)| !text[*i..].starts_with("http://www.w3.org/2000/svg"))
                    .count();
                assert_eq!(hits, 0, "{name} contains {needle}");
            }
        }
    }

    #[test]
    fn index_links_exactly_the_embedded_assets() {
        assert!(INDEX_HTML.contains("src=\"/assets/app.js\""));
        assert!(INDEX_HTML.contains("href=\"/assets/style.css\""));
        assert!(asset_named("app.js").is_some());
        assert!(asset_named("style.css").is_some());
        assert!(INDEX_HTML.contains("src=\"/assets/mesh_graph.js\""));
        assert!(asset_named("mesh_graph.js").is_some());
        assert!(asset_named("../Cargo.toml").is_none());
    }
}
