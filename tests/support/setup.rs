//! The common shape of an end-to-end test: flotilla, one Envoy in front of named backends,
//! and the macro that runs a test over both xDS protocols (SotW and delta).

use std::collections::BTreeMap;

use crate::support::backend::Backend;
use crate::support::envoy::{Envoy, Xds};
use crate::support::flotilla::Flotilla;
use crate::support::free_addr;

/// flotilla + one Envoy in front of named backends, with `clusters`/`routes` YAML written
/// by the caller (`{listen}` is replaced by the listener address).
pub struct Setup {
    pub backends: BTreeMap<String, Backend>,
    pub listen: std::net::SocketAddr,
    pub flotilla: Flotilla,
    pub envoy: Envoy,
}

impl Setup {
    pub async fn new(
        names: &[&str],
        xds: Xds,
        yaml: impl Fn(&BTreeMap<String, Backend>, std::net::SocketAddr) -> String,
    ) -> Setup {
        let mut backends = BTreeMap::new();
        for n in names {
            backends.insert(n.to_string(), Backend::start(n).await);
        }
        let listen = free_addr();
        let flotilla = Flotilla::start(&yaml(&backends, listen)).await;
        let envoy = Envoy::start(&flotilla, "edge-1", "edge", xds).await;
        envoy.wait_listener(listen).await;
        Setup {
            backends,
            listen,
            flotilla,
            envoy,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listen)
    }

    pub fn addr(&self, name: &str) -> String {
        self.backends[name].address()
    }

    /// GET `path` through Envoy; the status (None: no answer).
    pub async fn status_of(&self, path: &str) -> Option<u16> {
        crate::support::client::http()
            .get(self.url(path))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    /// Waits until GET `path` through Envoy answers 200 (the route is in place); the answer.
    pub async fn wait_answers(&self, path: &str) -> reqwest::Response {
        let http = crate::support::client::http();
        crate::support::wait::until(
            &format!("{path} to answer 200"),
            std::time::Duration::from_secs(20),
            || async {
                http.get(self.url(path))
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status() == 200)
            },
        )
        .await
    }
}

/// Runs each named `async fn(Xds)` as two tests, `sotw::name` and `delta::name`.
// Not every target that includes tests/support (benches) runs tests over both protocols.
#[allow(unused_macros)]
macro_rules! both_protocols {
    ($($name:ident),* $(,)?) => {
        mod sotw {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(crate::support::envoy::Xds::Sotw).await;
                }
            )*
        }
        mod delta {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(crate::support::envoy::Xds::Delta).await;
                }
            )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use both_protocols;
