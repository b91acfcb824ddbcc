//! Envoy's proto3 JSON: what `/config_dump` prints and what `flotilla render` prints.
//!
//! The Rust types from `envoy-types` carry no reflection, so JSON goes through prost-reflect
//! with the descriptor set those types were generated from (copied in by `build.rs`).

use std::sync::LazyLock;

use envoy_types::pb::google::protobuf::Any;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, SerializeOptions};

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(
        include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptors.bin")).as_slice(),
    )
    .expect("envoy-types ships a valid descriptor set")
});

/// The descriptors of every Envoy message, shared with the canonical encoder.
pub(crate) fn pool() -> &'static DescriptorPool {
    &POOL
}

#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("unknown message type `{0}`")]
    UnknownType(String),
    #[error("cannot decode {type_name}: {source}")]
    Decode {
        type_name: String,
        #[source]
        source: prost::DecodeError,
    },
    #[error("cannot convert {type_name} from JSON: {source}")]
    FromJson {
        type_name: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Proto field names (`connect_timeout`, not `connectTimeout`), as Envoy prints them.
const SERIALIZE: SerializeOptions = SerializeOptions::new().use_proto_field_name(true);

fn type_name(type_url: &str) -> &str {
    type_url.rsplit('/').next().unwrap_or(type_url)
}

/// An `Any` as JSON with its `@type`, the way Envoy shows resources in `/config_dump`.
pub fn any_to_json(any: &Any) -> Result<serde_json::Value, JsonError> {
    let name = type_name(&any.type_url);
    let descriptor = POOL
        .get_message_by_name(name)
        .ok_or_else(|| JsonError::UnknownType(name.to_string()))?;
    let message = DynamicMessage::decode(descriptor, any.value.as_slice()).map_err(|source| {
        JsonError::Decode {
            type_name: name.to_string(),
            source,
        }
    })?;
    let body = message
        .serialize_with_options(serde_json::value::Serializer, &SERIALIZE)
        .map_err(|source| JsonError::FromJson {
            type_name: name.to_string(),
            source,
        })?;
    let mut out = serde_json::Map::new();
    out.insert("@type".to_string(), any.type_url.clone().into());
    if let serde_json::Value::Object(fields) = body {
        out.extend(fields);
    }
    Ok(serde_json::Value::Object(out))
}

/// A message as JSON, without `@type`.
pub fn message_to_json<T: prost::Name>(message: &T) -> Result<serde_json::Value, JsonError> {
    let mut value = any_to_json(&super::pack(message))?;
    if let serde_json::Value::Object(fields) = &mut value {
        fields.remove("@type");
    }
    Ok(value)
}

/// Reads JSON that carries an `@type` (a resource from `/config_dump`, say) back into an `Any`
/// holding the binary encoding, so that it can be compared with what flotilla sent.
pub fn json_to_any(value: &serde_json::Value) -> Result<Any, JsonError> {
    let type_url = value
        .get("@type")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| JsonError::UnknownType("<missing @type>".to_string()))?;
    let name = type_name(type_url);
    let descriptor = POOL
        .get_message_by_name(name)
        .ok_or_else(|| JsonError::UnknownType(name.to_string()))?;
    let mut body = value.clone();
    if let serde_json::Value::Object(fields) = &mut body {
        fields.remove("@type");
    }
    let message = DynamicMessage::deserialize_with_options(
        descriptor,
        body,
        &DeserializeOptions::new().deny_unknown_fields(true),
    )
    .map_err(|source| JsonError::FromJson {
        type_name: name.to_string(),
        source,
    })?;
    Ok(Any {
        type_url: type_url.to_string(),
        value: prost::Message::encode_to_vec(&message),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::google::protobuf::Duration;

    #[test]
    fn renders_with_type_and_proto_field_names() {
        let cluster = Cluster {
            name: "api".into(),
            connect_timeout: Some(Duration {
                seconds: 1,
                nanos: 500_000_000,
            }),
            ..Default::default()
        };
        let json = any_to_json(&crate::envoy::pack(&cluster)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
                "name": "api",
                "connect_timeout": "1.500s"
            })
        );
        let back = json_to_any(&json).unwrap();
        assert_eq!(back, crate::envoy::pack(&cluster));
    }
}
