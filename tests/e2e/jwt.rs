//! JWT authentication (issue 25.2) through real Envoy: tokens signed by a key the test
//! generates; missing, expired and tampered tokens get 401 with
//! `www-authenticate` (a valid token for another audience 403), a valid one reaches the backend with its claim in a header, `auth: none`
//! exempts a route, and a JWKS file rotation reaches Envoy.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::support::backend::Backend;
use crate::support::envoy::{Envoy, Xds};
use crate::support::flotilla::Flotilla;
use crate::support::{client, free_addr, wait};

pub(crate) const ISSUER: &str = "https://issuer.test";

/// An EC P-256 key made for the test: signs tokens; its public half is the JWK.
pub(crate) struct TestKey {
    kid: String,
    encoding: EncodingKey,
    jwk: serde_json::Value,
}

impl TestKey {
    pub(crate) fn new(kid: &str) -> TestKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let raw = pair.public_key_raw();
        assert_eq!(raw.len(), 65, "uncompressed P-256 point");
        TestKey {
            kid: kid.to_string(),
            encoding: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("pem"),
            jwk: serde_json::json!({
                "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
            }),
        }
    }

    pub(crate) fn token(&self, audience: &str, expires_in: i64) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        let claims = serde_json::json!({
            "iss": ISSUER, "aud": audience, "sub": "alice",
            "iat": now, "exp": now + expires_in,
        });
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).expect("sign")
    }
}

pub(crate) fn jwks(keys: &[&TestKey]) -> String {
    serde_json::json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_verified_and_a_jwks_rotation_reaches_envoy() {
    let web = Backend::start("web").await;
    let addr = free_addr();
    let (first, second) = (TestKey::new("first"), TestKey::new("second"));
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir(dir.path().join("config")).expect("config dir");
    let jwks_path = dir.path().join("config/jwks.json");
    std::fs::write(&jwks_path, jwks(&[&first])).expect("jwks");
    let config = dir.path().join("config/flotilla.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
version: 1
clusters:
  web: {{ endpoints: ["{web}"] }}
listeners:
  public:
    address: {addr}
    auth:
      jwt: {{ issuer: "{ISSUER}", audiences: [api], jwks: jwks.json, claims_to_headers: {{ sub: x-user }} }}
    routes:
      - {{ match: {{ prefix: /public }}, to: web, auth: none }}
      - {{ to: web }}
"#,
            web = web.address()
        ),
    )
    .expect("config");
    let flotilla = Flotilla::start_with(dir, config, &[]).await;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", Xds::Sotw).await;
    envoy.wait_listener(addr).await;
    let http = client::http();
    let get = |path: &'static str, token: Option<String>| {
        let http = http.clone();
        async move {
            let mut req = http.get(format!("http://{addr}{path}"));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            req.send().await.ok()
        }
    };
    wait::until(
        "the exempt route answers",
        Duration::from_secs(20),
        || async {
            get("/public", None)
                .await
                .filter(|r| r.status() == 200)
                .map(|_| ())
        },
    )
    .await;

    let valid = first.token("api", 600);
    let ok = get("/", Some(valid.clone())).await.expect("valid token");
    assert_eq!(ok.status(), 200, "a valid token passes");
    assert_eq!(
        ok.headers()
            .get("seen-x-user")
            .and_then(|v| v.to_str().ok()),
        Some("alice"),
        "the `sub` claim reaches the backend in x-user"
    );

    let mut tampered: Vec<String> = valid.split('.').map(str::to_string).collect();
    tampered[1] = URL_SAFE_NO_PAD
        .encode(br#"{"iss":"https://issuer.test","aud":"api","sub":"mallory","exp":99999999999}"#);
    let hits = web.hits();
    // Envoy answers a valid token for another audience 403 (authenticated, not allowed here).
    let other = get("/", Some(first.token("other", 600)))
        .await
        .expect("answer");
    assert_eq!(
        other.status(),
        403,
        "a token for another audience is refused"
    );
    for (what, token) in [
        ("a missing token", None),
        ("an expired token", Some(first.token("api", -600))),
        ("a tampered token", Some(tampered.join("."))),
        (
            "a token signed by an unknown key",
            Some(second.token("api", 600)),
        ),
    ] {
        let r = get("/", token).await.expect("answer");
        assert_eq!(r.status(), 401, "{what} is refused");
        assert!(
            r.headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("Bearer")),
            "{what}: 401 says how to authenticate: {:?}",
            r.headers()
        );
    }
    assert_eq!(web.hits(), hits, "refused requests never reach the backend");

    // Rotation: the file now holds the second key only (written whole, then renamed).
    let staging = jwks_path.with_extension("new");
    std::fs::write(&staging, jwks(&[&second])).expect("new jwks");
    std::fs::rename(&staging, &jwks_path).expect("rotate");
    let rotated = second.token("api", 600);
    wait::until(
        "a token signed by the new key is accepted",
        Duration::from_secs(20),
        || async {
            get("/", Some(rotated.clone()))
                .await
                .filter(|r| r.status() == 200)
                .map(|_| ())
        },
    )
    .await;
    let old = get("/", Some(first.token("api", 600)))
        .await
        .expect("answer");
    assert_eq!(old.status(), 401, "the retired key no longer verifies");

    // A broken rotation (not JSON) is refused: the last good keys stay.
    std::fs::write(&staging, "{ not json").expect("bad jwks");
    std::fs::rename(&staging, &jwks_path).expect("bad rotation");
    wait::until(
        "flotilla refuses the broken JWKS",
        Duration::from_secs(20),
        || async { flotilla.log().contains("not JSON").then_some(()) },
    )
    .await;
    let still = get("/", Some(second.token("api", 600)))
        .await
        .expect("answer");
    assert_eq!(still.status(), 200, "the last good keys keep verifying");
}
