//! Who may read the admin API (state, nodes, events, traffic, metrics, dashboard).
//!
//! On loopback anyone local may, as with any local admin socket. Beyond loopback the reads
//! show every fleet's configuration and Envoys, so they need the admin token too, unless
//! `--admin-public-read` opens them on purpose. `/healthz` and `/readyz` stay open for probes.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::AdminState;
use super::errors::error;
use super::mutations::bearer_matches;

#[derive(Debug, Clone)]
pub enum Reads {
    /// Loopback, or `--admin-public-read`.
    Open,
    /// Callers must send `Authorization: Bearer <token>`.
    Token(String),
    /// Beyond loopback with no token: refused.
    Refused,
}

impl Reads {
    pub fn new(token: Option<String>, admin_listen: std::net::SocketAddr, public: bool) -> Reads {
        if public || admin_listen.ip().is_loopback() {
            return Reads::Open;
        }
        match token.filter(|t| !t.is_empty()) {
            Some(t) => Reads::Token(t),
            None => Reads::Refused,
        }
    }
}

/// Middleware in front of every reading route but the probes.
pub async fn authorize(State(s): State<AdminState>, req: Request, next: Next) -> Response {
    match &s.reads {
        Reads::Open => next.run(req).await,
        Reads::Refused => error(
            StatusCode::FORBIDDEN,
            "reads are refused: the admin API listens beyond loopback and no token is configured \
             (set --admin-token, or --admin-public-read to open reads on purpose)",
        ),
        Reads::Token(token) if bearer_matches(&req, token) => next.run(req).await,
        Reads::Token(_) => {
            let mut resp = error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (the admin API listens beyond loopback; \
                 --admin-public-read opens reads)",
            );
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Bearer".parse().expect("static header"),
            );
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_need_the_token_beyond_loopback_unless_opened() {
        let loopback = "127.0.0.1:18080".parse().unwrap();
        let public = "0.0.0.0:18080".parse().unwrap();
        assert!(matches!(Reads::new(None, loopback, false), Reads::Open));
        assert!(matches!(Reads::new(None, public, true), Reads::Open));
        assert!(matches!(Reads::new(None, public, false), Reads::Refused));
        assert!(matches!(
            Reads::new(Some(String::new()), public, false),
            Reads::Refused
        ));
        assert!(matches!(Reads::new(Some("t".into()), public, false), Reads::Token(t) if t == "t"));
    }
}
