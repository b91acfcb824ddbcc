//! Typed reads from YAML nodes that report what is wrong and carry on.
//!
//! Each reader returns `None` after recording a diagnostic, so a decoder can keep going and
//! report every mistake in one run instead of stopping at the first.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::diagnostic::Sink;
use super::duration;
use super::shape::Object;
use super::yaml::{Node, Value};

/// The entries of a YAML map whose keys have been checked against the schema.
pub(crate) struct Fields<'n> {
    entries: &'n [(Node, Node)],
    path: String,
    object: &'static Object,
}

impl<'n> Fields<'n> {
    /// Reads `node` as a map that may only hold the keys of `object` (the table the JSON
    /// Schema is generated from); unknown keys are reported with a suggestion when one is
    /// close ("did you mean `policy`?").
    pub(crate) fn read(
        sink: &mut Sink,
        node: &'n Node,
        path: &str,
        object: &'static Object,
    ) -> Option<Fields<'n>> {
        #[cfg(test)]
        seen::record(object);
        let Value::Map(entries) = &node.value else {
            sink.error(node, path, format!("expected a map, found {}", node.kind()));
            return None;
        };
        for (key, _) in entries {
            match key.as_str() {
                Some(k) if object.field(k).is_some() => {}
                Some(k) => {
                    let field = join(path, k);
                    let allowed: Vec<&str> = object.names().collect();
                    sink.error(key, &field, unknown_field_message(k, &allowed));
                }
                None => sink.error(key, path, "map keys must be strings"),
            }
        }
        Some(Fields {
            entries,
            path: path.to_string(),
            object,
        })
    }

    /// `node` (the value of `key`) as a whole number within the bounds the table gives `key`.
    pub(crate) fn integer(&self, sink: &mut Sink, node: &Node, key: &str) -> Option<u64> {
        let (min, max) = self.object.integer_bounds(key);
        integer(sink, node, &self.path(key), min, max)
    }

    pub(crate) fn u32(&self, sink: &mut Sink, node: &Node, key: &str) -> Option<u32> {
        self.integer(sink, node, key)
            .and_then(|n| u32::try_from(n).ok())
    }

    /// `node` (the value of `key`) as a duration within the bounds the table gives `key`.
    pub(crate) fn duration(&self, sink: &mut Sink, node: &Node, key: &str) -> Option<Duration> {
        let (min, max) = self.object.duration_bounds(key);
        duration_in(sink, node, &self.path(key), min, max)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// The key node for `key`, to point at a name rather than its value.
    pub(crate) fn key_node(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(k, _)| k)
    }

    pub(crate) fn path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Keys present, in the order written.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &'n str> {
        self.entries.iter().filter_map(|(k, _)| k.as_str())
    }
}

/// Which tables the decoder read with, so a test can prove each one is part of the schema.
#[cfg(test)]
pub(crate) mod seen {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use crate::config::shape::Object;

    thread_local! {
        static SEEN: RefCell<BTreeMap<&'static str, usize>> = const { RefCell::new(BTreeMap::new()) };
    }

    pub(crate) fn record(object: &'static Object) {
        let address = std::ptr::from_ref(object) as usize;
        SEEN.with(|s| s.borrow_mut().insert(object.name, address));
    }

    /// Table name → its address, for every table read on this thread.
    pub(crate) fn take() -> BTreeMap<&'static str, usize> {
        SEEN.with(|s| std::mem::take(&mut *s.borrow_mut()))
    }
}

fn unknown_field_message(key: &str, allowed: &[&str]) -> String {
    let closest = allowed
        .iter()
        .map(|a| (strsim::levenshtein(key, a), *a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 3))
        .min();
    match closest {
        Some((_, a)) => format!("unknown field `{key}` (did you mean `{a}`?)"),
        None => format!(
            "unknown field `{key}` (expected one of: {})",
            allowed.join(", ")
        ),
    }
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Entries of a map whose keys are names chosen by the operator (cluster names, headers, …).
pub(crate) fn named_entries<'n>(
    sink: &mut Sink,
    node: &'n Node,
    path: &str,
) -> Option<&'n [(Node, Node)]> {
    match &node.value {
        Value::Map(entries) => Some(entries),
        Value::Null => Some(&[]),
        _ => {
            sink.error(node, path, format!("expected a map, found {}", node.kind()));
            None
        }
    }
}

pub(crate) fn list<'n>(sink: &mut Sink, node: &'n Node, path: &str) -> Option<&'n [Node]> {
    match &node.value {
        Value::Seq(items) => Some(items),
        Value::Null => Some(&[]),
        _ => {
            sink.error(
                node,
                path,
                format!("expected a list, found {}", node.kind()),
            );
            None
        }
    }
}

pub(crate) fn string(sink: &mut Sink, node: &Node, path: &str) -> Option<String> {
    match node.as_str() {
        Some(s) => Some(s.to_string()),
        None => {
            sink.error(
                node,
                path,
                format!("expected a string, found {}", node.kind()),
            );
            None
        }
    }
}

pub(crate) fn non_empty_string(sink: &mut Sink, node: &Node, path: &str) -> Option<String> {
    let s = string(sink, node, path)?;
    if s.is_empty() {
        sink.error(node, path, "must not be empty");
        return None;
    }
    Some(s)
}

pub(crate) fn boolean(sink: &mut Sink, node: &Node, path: &str) -> Option<bool> {
    match &node.value {
        Value::Scalar {
            text,
            quoted: false,
        } if text == "true" => Some(true),
        Value::Scalar {
            text,
            quoted: false,
        } if text == "false" => Some(false),
        _ => {
            sink.error(node, path, "expected true or false");
            None
        }
    }
}

/// An unsigned integer within `min..=max`.
pub(crate) fn integer(sink: &mut Sink, node: &Node, path: &str, min: u64, max: u64) -> Option<u64> {
    let parsed = match &node.value {
        Value::Scalar {
            text,
            quoted: false,
        } => text.parse::<u64>().ok(),
        _ => None,
    };
    match parsed {
        Some(n) if (min..=max).contains(&n) => Some(n),
        Some(n) => {
            sink.error(node, path, format!("{n} is out of range ({min}..={max})"));
            None
        }
        None => {
            sink.error(
                node,
                path,
                format!(
                    "expected a whole number ({min}..={max}), found {}",
                    describe(node)
                ),
            );
            None
        }
    }
}

/// A duration within `min..=max`.
pub(crate) fn duration_in(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    min: Duration,
    max: Duration,
) -> Option<Duration> {
    let text = string(sink, node, path)?;
    match duration::parse(&text) {
        Ok(d) if d >= min && d <= max => Some(d),
        Ok(_) => {
            sink.error(
                node,
                path,
                format!(
                    "{text} is out of range ({}..={})",
                    duration::format(min),
                    duration::format(max)
                ),
            );
            None
        }
        Err(e) => {
            sink.error(node, path, e);
            None
        }
    }
}

/// An `ip:port` socket address (`127.0.0.1:8080`, `[::1]:8080`). Hostnames are refused: Envoy
/// takes EDS endpoints and listener addresses as IPs, and flotilla does not resolve names.
pub(crate) fn socket_address(sink: &mut Sink, node: &Node, path: &str) -> Option<SocketAddr> {
    let text = string(sink, node, path)?;
    match parse_socket_address(&text) {
        Ok(addr) => Some(addr),
        Err(e) => {
            sink.error(node, path, e);
            None
        }
    }
}

/// An endpoint address `ip:port` (`[v6]:port`). An IPv4-mapped IPv6 address
/// (`[::ffff:127.0.0.1]:80`) is read as the IPv4 address it maps, so that one endpoint has one
/// spelling (a registration of the mapped form is the configured `127.0.0.1:80`). Errors
/// repeat at most [`crate::util::MAX_ECHO`] bytes of the input.
pub fn parse_socket_address(text: &str) -> Result<SocketAddr, String> {
    use crate::util::clip;
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("`{}` is not an address: expected ip:port", clip(text)))?;
    let port: u64 = port
        .parse()
        .map_err(|_| format!("`{}` is not a port number", clip(port)))?;
    if port == 0 || port > 65535 {
        return Err(format!("port {port} out of range (1..=65535)"));
    }
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ip: IpAddr = host.parse().map_err(|_| {
        format!(
            "`{}` is not an IP address (hostnames are not resolved; write the IP)",
            clip(host)
        )
    })?;
    if let (IpAddr::V6(_), false) = (ip, text.starts_with('[')) {
        return Err(format!("IPv6 addresses need brackets: [{host}]:{port}"));
    }
    Ok(SocketAddr::new(ip.to_canonical(), port as u16))
}

fn describe(node: &Node) -> String {
    match node.as_str() {
        Some(s) => format!("`{s}`"),
        None => node.kind().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses() {
        assert_eq!(
            parse_socket_address("127.0.0.1:8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            parse_socket_address("[::1]:80").unwrap(),
            "[::1]:80".parse().unwrap()
        );
        assert_eq!(
            parse_socket_address("[::ffff:127.0.0.1]:80").unwrap(),
            "127.0.0.1:80".parse().unwrap(),
            "a mapped address is its IPv4 address"
        );
        let long = format!("{}:80", "1".repeat(1 << 20));
        assert!(parse_socket_address(&long).unwrap_err().len() < 300);
        assert!(
            parse_socket_address("127.0.0.1:99999")
                .unwrap_err()
                .contains("port 99999 out of range")
        );
        assert!(parse_socket_address("127.0.0.1:0").is_err());
        assert!(
            parse_socket_address("api.local:80")
                .unwrap_err()
                .contains("not an IP")
        );
        assert!(parse_socket_address("127.0.0.1").is_err());
        assert!(parse_socket_address("::1:80").is_err());
    }

    #[test]
    fn unknown_field_suggests_the_closest() {
        let msg = unknown_field_message("polcy", &["policy", "endpoints"]);
        assert_eq!(msg, "unknown field `polcy` (did you mean `policy`?)");
        let msg = unknown_field_message("zzz", &["policy", "endpoints"]);
        assert!(msg.contains("expected one of: policy, endpoints"), "{msg}");
    }
}
