//! The bootstrap a proxyless gRPC client reads from `GRPC_XDS_BOOTSTRAP`
//! (`flotilla bootstrap --grpc`): where flotilla is and who the client is (gRFC A27).

use serde::Serialize;

/// What a gRPC client needs to reach flotilla. `node.cluster` picks the fleet, as for Envoy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GrpcBootstrap {
    pub xds_servers: Vec<XdsServer>,
    pub node: GrpcNode,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct XdsServer {
    /// A gRPC target (`host:port`).
    pub server_uri: String,
    pub channel_creds: Vec<ChannelCreds>,
    /// `xds_v3`: gRPC speaks the v3 API only when the server lists it.
    pub server_features: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelCreds {
    #[serde(rename = "type")]
    pub kind: String,
    /// For `tls` (gRFC A65): the file-watcher certificate provider's files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GrpcNode {
    pub id: String,
    pub cluster: String,
    /// Always written (gRFC A27's node has one): at least one gRPC library refuses a
    /// bootstrap without it. Empty fields: flotilla does not place clients in zones.
    pub locality: GrpcLocality,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct GrpcLocality {
    pub region: String,
    pub zone: String,
    pub sub_zone: String,
}

/// `insecure` channel credentials for a plaintext xDS port; with `tls`, gRFC A65's `tls`
/// credentials (mTLS when a client certificate is given), which gRPC re-reads as they change.
pub fn grpc_bootstrap(
    node_id: &str,
    fleet: &str,
    xds: &str,
    tls: Option<&crate::envoy::xds_tls::XdsClientTls>,
) -> GrpcBootstrap {
    let creds = match tls {
        None => ChannelCreds {
            kind: "insecure".to_string(),
            config: None,
        },
        Some(t) => {
            let mut config = serde_json::json!({ "ca_certificate_file": t.ca });
            if let Some((cert, key)) = &t.cert_and_key {
                config["certificate_file"] = cert.as_str().into();
                config["private_key_file"] = key.as_str().into();
            }
            ChannelCreds {
                kind: "tls".to_string(),
                config: Some(config),
            }
        }
    };
    GrpcBootstrap {
        xds_servers: vec![XdsServer {
            server_uri: xds.to_string(),
            channel_creds: vec![creds],
            server_features: vec!["xds_v3".to_string()],
        }],
        node: GrpcNode {
            id: node_id.to_string(),
            cluster: fleet.to_string(),
            locality: GrpcLocality::default(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_server_the_v3_feature_and_the_node() {
        let b = grpc_bootstrap("greeter-client-1", "edge", "127.0.0.1:18000", None);
        let json = serde_json::to_value(&b).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "xds_servers": [{
                    "server_uri": "127.0.0.1:18000",
                    "channel_creds": [{ "type": "insecure" }],
                    "server_features": ["xds_v3"],
                }],
                "node": {
                    "id": "greeter-client-1",
                    "cluster": "edge",
                    "locality": { "region": "", "zone": "", "sub_zone": "" },
                },
            })
        );
    }

    #[test]
    fn tls_credentials_name_the_certificate_provider_files() {
        let tls = crate::envoy::xds_tls::XdsClientTls {
            ca: "/certs/ca.pem".into(),
            cert_and_key: Some(("/certs/edge.pem".into(), "/certs/edge.key".into())),
        };
        let b = grpc_bootstrap("c1", "edge", "xds.local:18000", Some(&tls));
        let json = serde_json::to_value(&b).expect("json");
        assert_eq!(
            json["xds_servers"][0]["channel_creds"],
            serde_json::json!([{
                "type": "tls",
                "config": {
                    "ca_certificate_file": "/certs/ca.pem",
                    "certificate_file": "/certs/edge.pem",
                    "private_key_file": "/certs/edge.key",
                },
            }])
        );
    }
}
