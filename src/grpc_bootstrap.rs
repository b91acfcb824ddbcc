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
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GrpcNode {
    pub id: String,
    pub cluster: String,
}

/// flotilla's xDS port is plaintext gRPC, hence `insecure` channel credentials.
pub fn grpc_bootstrap(node_id: &str, fleet: &str, xds: &str) -> GrpcBootstrap {
    GrpcBootstrap {
        xds_servers: vec![XdsServer {
            server_uri: xds.to_string(),
            channel_creds: vec![ChannelCreds {
                kind: "insecure".to_string(),
            }],
            server_features: vec!["xds_v3".to_string()],
        }],
        node: GrpcNode {
            id: node_id.to_string(),
            cluster: fleet.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_server_the_v3_feature_and_the_node() {
        let b = grpc_bootstrap("greeter-client-1", "edge", "127.0.0.1:18000");
        let json = serde_json::to_value(&b).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "xds_servers": [{
                    "server_uri": "127.0.0.1:18000",
                    "channel_creds": [{ "type": "insecure" }],
                    "server_features": ["xds_v3"],
                }],
                "node": { "id": "greeter-client-1", "cluster": "edge" },
            })
        );
    }
}
