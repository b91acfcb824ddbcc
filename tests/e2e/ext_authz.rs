//! External authorization (issue 25.3) through real Envoy, with a small HTTP authorization
//! service in the test: it allows, denies with its own status, headers and body, and stalls
//! on /slow so that the configured failure mode decides (deny → 403, allow → forwarded).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::support::backend::Backend;
use crate::support::envoy::{Envoy, Xds};
use crate::support::flotilla::Flotilla;
use crate::support::{client, free_addr, wait};

/// Allows `Authorization: Bearer let-me-in` with `x-tenant: acme` (a header Envoy sends only
/// because the YAML lists it), denies anything else with 401 + `x-reason`, stalls on /slow.
async fn decide(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path().starts_with("/slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
    let allowed =
        header("authorization") == Some("Bearer let-me-in") && header("x-tenant") == Some("acme");
    let response = if allowed {
        Response::builder()
            .status(200)
            .body(Full::new(Bytes::new()))
    } else {
        Response::builder()
            .status(401)
            .header("x-reason", "no entry")
            .body(Full::new(Bytes::from_static(b"denied by the test's authz")))
    };
    Ok(response.expect("response"))
}

async fn start_authz() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind authz");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), hyper::service::service_fn(decide))
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorization_service_allows_denies_and_its_failure_mode_applies() {
    let web = Backend::start("web").await;
    let authz = start_authz().await;
    let addr = free_addr();
    let yaml = format!(
        r#"
version: 1
clusters:
  web: {{ endpoints: ["{web}"] }}
  authz: {{ endpoints: ["{authz}"] }}
listeners:
  public:
    address: {addr}
    auth: {{ external: {{ cluster: authz, protocol: http, timeout: 1s, headers: [x-tenant] }} }}
    routes:
      - match: {{ prefix: /slow-deny }}
        to: web
        auth: {{ external: {{ cluster: authz, timeout: 300ms, failure: deny }} }}
      - match: {{ prefix: /slow-allow }}
        to: web
        auth: {{ external: {{ cluster: authz, timeout: 300ms, failure: allow }} }}
      - {{ match: {{ prefix: /open }}, to: web, auth: none }}
      - {{ to: web }}
"#,
        web = web.address()
    );
    let flotilla = Flotilla::start(&yaml).await;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", Xds::Sotw).await;
    envoy.wait_listener(addr).await;
    let http = client::http();
    let get = |path: &'static str, allowed: bool| {
        let http = http.clone();
        async move {
            let mut req = http.get(format!("http://{addr}{path}"));
            if allowed {
                req = req.bearer_auth("let-me-in").header("x-tenant", "acme");
            }
            req.send().await.ok()
        }
    };
    wait::until(
        "the exempt route answers",
        Duration::from_secs(20),
        || async {
            get("/open", false)
                .await
                .filter(|r| r.status() == 200)
                .map(|_| ())
        },
    )
    .await;

    let ok = get("/", true).await.expect("answer");
    assert_eq!(ok.status(), 200, "the service allows");
    let hits = web.hits();
    let denied = get("/", false).await.expect("answer");
    assert_eq!(
        denied.status(),
        401,
        "the service's status reaches the client"
    );
    assert_eq!(
        denied
            .headers()
            .get("x-reason")
            .and_then(|v| v.to_str().ok()),
        Some("no entry"),
        "the service's headers reach the client"
    );
    assert_eq!(
        denied.text().await.expect("body"),
        "denied by the test's authz"
    );
    assert_eq!(
        web.hits(),
        hits,
        "a denied request never reaches the backend"
    );

    let timed_out = get("/slow-deny", true).await.expect("answer");
    assert_eq!(
        timed_out.status(),
        403,
        "failure: deny answers 403 on a timeout"
    );
    let passed = get("/slow-allow", false).await.expect("answer");
    assert_eq!(passed.status(), 200, "failure: allow forwards on a timeout");
    assert_eq!(web.hits(), hits + 1);
}

mod grpc {
    //! The same decisions over gRPC (envoy.service.auth.v3.Authorization/Check, envoy-types'
    //! generated server).

    use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
    use envoy_types::pb::envoy::service::auth::v3::authorization_server::{
        Authorization, AuthorizationServer,
    };
    use envoy_types::pb::envoy::service::auth::v3::{
        CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse, check_response,
    };
    use envoy_types::pb::envoy::r#type::v3::HttpStatus;
    use envoy_types::pb::google::rpc::Status;

    use super::*;
    use crate::support::servers::serve_grpc;
    use crate::support::setup::Setup;

    struct Service;

    #[tonic::async_trait]
    impl Authorization for Service {
        async fn check(
            &self,
            request: tonic::Request<CheckRequest>,
        ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
            let headers = request
                .into_inner()
                .attributes
                .and_then(|a| a.request)
                .and_then(|r| r.http)
                .map(|h| h.headers)
                .unwrap_or_default();
            let allowed =
                headers.get("authorization").map(String::as_str) == Some("Bearer let-me-in");
            let response = if allowed {
                CheckResponse {
                    status: Some(Status::default()),
                    http_response: Some(check_response::HttpResponse::OkResponse(
                        OkHttpResponse::default(),
                    )),
                    ..Default::default()
                }
            } else {
                CheckResponse {
                    // PERMISSION_DENIED
                    status: Some(Status {
                        code: 7,
                        ..Default::default()
                    }),
                    http_response: Some(check_response::HttpResponse::DeniedResponse(
                        DeniedHttpResponse {
                            status: Some(HttpStatus { code: 401 }),
                            headers: vec![HeaderValueOption {
                                header: Some(HeaderValue {
                                    key: "x-reason".into(),
                                    value: "no entry over grpc".into(),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            }],
                            body: "denied over grpc".into(),
                        },
                    )),
                    ..Default::default()
                }
            };
            Ok(tonic::Response::new(response))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_grpc_authorization_service_allows_and_denies() {
        let authz = serve_grpc(tonic::service::Routes::new(AuthorizationServer::new(
            Service,
        )))
        .await;
        let s = Setup::new(&["web"], Xds::Sotw, |b, addr| {
            format!(
                r#"
version: 1
clusters:
  web: {{ endpoints: ["{web}"] }}
  authz: {{ endpoints: ["{authz}"], upstream_protocol: http2 }}
listeners:
  public:
    address: {addr}
    auth: {{ external: {{ cluster: authz, protocol: grpc, timeout: 1s }} }}
    routes:
      - {{ match: {{ prefix: /open }}, to: web, auth: none }}
      - {{ to: web }}
"#,
                web = b["web"].address()
            )
        })
        .await;
        s.wait_answers("/open").await;
        let http = client::http();
        let ok = http
            .get(s.url("/"))
            .bearer_auth("let-me-in")
            .send()
            .await
            .expect("answer");
        assert_eq!(ok.status(), 200, "the gRPC service allows");
        let denied = http.get(s.url("/")).send().await.expect("answer");
        assert_eq!(
            denied.status(),
            401,
            "the gRPC service's status reaches the client"
        );
        assert_eq!(
            denied
                .headers()
                .get("x-reason")
                .and_then(|v| v.to_str().ok()),
            Some("no entry over grpc")
        );
        assert_eq!(denied.text().await.expect("body"), "denied over grpc");
    }
}
