//! The GitOps reads of the admin API: `/api/v1/status`, `/api/v1/history` and
//! `/api/v1/resources` (what `flotilla diff --against` compares with).

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AdminState;
use crate::gitops::{diff, history, status, sync};

pub async fn status(State(s): State<AdminState>) -> Json<status::StatusView> {
    Json(status::status(
        &s.controller,
        &s.nodes.streams(),
        std::time::SystemTime::now(),
        &sync::Rules::default(),
    ))
}

#[derive(Serialize)]
pub struct HistoryView {
    /// Newest first.
    pub entries: Vec<history::Entry>,
}

pub async fn history(State(s): State<AdminState>) -> Json<HistoryView> {
    Json(HistoryView {
        entries: s.history.entries(),
    })
}

#[derive(serde::Deserialize)]
pub struct ResourcesQuery {
    fleet: Option<String>,
}

/// The served config's resources per fleet, as `flotilla render --fleet` prints them (no
/// health verdicts, private keys replaced), with the YAML location of each.
pub async fn resources(State(s): State<AdminState>, Query(q): Query<ResourcesQuery>) -> Response {
    let Some(config) = s.controller.config() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": "no valid configuration loaded yet" })),
        )
            .into_response();
    };
    let revision = s.controller.revision().map(|r| r.label());
    let built = tokio::task::spawn_blocking(move || match q.fleet {
        Some(f) => diff::fleet_resources(&config, &f).map(|r| diff::Served {
            revision,
            fleets: [(f, r)].into(),
        }),
        None => diff::served(&config, revision),
    })
    .await;
    match built {
        Ok(Ok(served)) => Json(served).into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(serde_json::json!({ "error": e.to_string() })),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(serde_json::json!({ "error": e.to_string() })),
        )
            .into_response(),
    }
}
