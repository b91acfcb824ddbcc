//! The mutating admin calls: drain, weight overrides, registrations; and who may make them.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::AdminState;
use super::errors::error;
use crate::runtime::RuntimeError;

/// Who may call the mutating endpoints.
#[derive(Debug, Clone)]
pub enum Mutations {
    /// Callers must send `Authorization: Bearer <token>`.
    Token(String),
    /// No token configured and the admin server listens on loopback only: local callers are
    /// trusted, as with any local admin socket.
    Loopback,
    /// No token configured and the admin server is reachable from elsewhere: refused.
    Refused,
}

impl Mutations {
    pub fn new(token: Option<String>, admin_listen: std::net::SocketAddr) -> Mutations {
        match token.filter(|t| !t.is_empty()) {
            Some(t) => Mutations::Token(t),
            None if admin_listen.ip().is_loopback() => Mutations::Loopback,
            None => Mutations::Refused,
        }
    }
}

/// Middleware in front of every mutating route.
pub async fn authorize(State(s): State<AdminState>, req: Request, next: Next) -> Response {
    match &s.mutations {
        Mutations::Loopback => next.run(req).await,
        Mutations::Refused => error(
            StatusCode::FORBIDDEN,
            "mutating calls are refused: the admin API listens beyond loopback and no token is \
             configured (set --admin-token or FLOTILLA_ADMIN_TOKEN)",
        ),
        Mutations::Token(token) => match bearer_matches(&req, token) {
            true => next.run(req).await,
            false => {
                let mut resp = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    "Bearer".parse().expect("static header"),
                );
                resp
            }
        },
    }
}

/// Whether the request carries `Authorization: Bearer <token>`.
pub(super) fn bearer_matches(req: &Request, token: &str) -> bool {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl IntoResponse for RuntimeError {
    fn into_response(self) -> Response {
        let status = match &self {
            RuntimeError::NoConfig => StatusCode::SERVICE_UNAVAILABLE,
            RuntimeError::UnknownCluster(_) | RuntimeError::UnknownEndpoint { .. } => {
                StatusCode::NOT_FOUND
            }
            RuntimeError::BadRequest(_) => StatusCode::BAD_REQUEST,
            RuntimeError::Configured { .. } | RuntimeError::Taken { .. } => StatusCode::CONFLICT,
            RuntimeError::Full { .. } | RuntimeError::Limit(_) => StatusCode::TOO_MANY_REQUESTS,
            RuntimeError::Forbidden(_) => StatusCode::FORBIDDEN,
            RuntimeError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            RuntimeError::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        error(status, self.to_string())
    }
}

fn bad_json(rejection: JsonRejection) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        format!("bad JSON body: {}", rejection.body_text()),
    )
}

pub async fn drain(
    State(s): State<AdminState>,
    Path((cluster, address)): Path<(String, String)>,
) -> Response {
    match s.runtime.drain(&cluster, &address, true).await {
        Ok(changed) => Json(
            json!({ "cluster": cluster, "address": address, "draining": true, "changed": changed }),
        )
        .into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn undrain(
    State(s): State<AdminState>,
    Path((cluster, address)): Path<(String, String)>,
) -> Response {
    match s.runtime.drain(&cluster, &address, false).await {
        Ok(changed) => Json(json!({ "cluster": cluster, "address": address, "draining": false, "changed": changed }))
            .into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightBody {
    weight: u32,
}

pub async fn set_weight(
    State(s): State<AdminState>,
    Path((cluster, address)): Path<(String, String)>,
    body: Result<Json<WeightBody>, JsonRejection>,
) -> Response {
    let body = match body {
        Ok(Json(b)) => b,
        Err(rejection) => return bad_json(rejection),
    };
    match s.runtime.set_weight(&cluster, &address, Some(body.weight)).await {
        Ok(changed) => Json(json!({ "cluster": cluster, "address": address, "weight": body.weight, "changed": changed }))
            .into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn clear_weight(
    State(s): State<AdminState>,
    Path((cluster, address)): Path<(String, String)>,
) -> Response {
    match s.runtime.set_weight(&cluster, &address, None).await {
        Ok(changed) => Json(
            json!({ "cluster": cluster, "address": address, "weight": null, "changed": changed }),
        )
        .into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    address: String,
    #[serde(default = "one")]
    weight: u32,
    /// How long the registration lives without a renewal, e.g. "10s".
    ttl: String,
}

fn one() -> u32 {
    1
}

pub async fn register(
    State(s): State<AdminState>,
    Path(cluster): Path<String>,
    body: Result<Json<Registration>, JsonRejection>,
) -> Response {
    let body = match body {
        Ok(Json(b)) => b,
        Err(rejection) => return bad_json(rejection),
    };
    let ttl: Duration = match crate::config::duration::parse(&body.ttl) {
        Ok(d) => d,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("ttl: {e}")),
    };
    if let Ok(address) = crate::config::parse_socket_address(&body.address)
        && let Err(e) =
            crate::runtime::admission::not_an_envoy_admin(address, &s.nodes.envoy_admins())
    {
        return e.into_response();
    }
    match s
        .runtime
        .lease(&cluster, &body.address, body.weight, ttl)
        .await
    {
        Ok(lease) => Json(lease).into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn deregister(
    State(s): State<AdminState>,
    Path((cluster, address)): Path<(String, String)>,
) -> Response {
    match s.runtime.end_lease(&cluster, &address).await {
        Ok(true) => Json(json!({ "cluster": cluster, "address": address, "registered": false }))
            .into_response(),
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            format!("{address} has no registration in `{cluster}`"),
        ),
        Err(e) => e.into_response(),
    }
}

/// Asks the instance holding a stream registration to leave: its stream runs the drain
/// handshake (DRAINING, wait for requests in flight, then the instance is told to exit).
pub async fn ask_to_leave(
    State(s): State<AdminState>,
    Path((cluster, address)): Path<(String, String)>,
) -> Response {
    match s.runtime.ask_to_leave(&cluster, &address) {
        Ok(asked) => Json(
            json!({ "cluster": cluster, "address": address, "leaving": true, "changed": asked }),
        )
        .into_response(),
        Err(e) => e.into_response(),
    }
}
