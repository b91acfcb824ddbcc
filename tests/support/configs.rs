//! Configs many tests share.

use std::net::SocketAddr;

/// One cluster `web` with the given endpoints (YAML list items), one listener routing all to it.
pub fn web(listen: SocketAddr, endpoints: &str) -> String {
    format!(
        "version: 1
clusters:
  web: {{ endpoints: [{endpoints}], registrations: {{}} }}
listeners:
  public:
    address: {listen}
    routes: [ {{ to: web }} ]
"
    )
}
