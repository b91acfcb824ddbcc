//! `auth.jwt.jwks`: the keys tokens are verified with. A file is read here, relative to the
//! YAML naming it, and checked as a JWK set (RFC 7517, by `jsonwebtoken`'s `jwk` module) so
//! that a broken rotation is refused like bad YAML and Envoy keeps the last good keys. An
//! https URL is handed to Envoy, which fetches it itself.

use std::path::Path;

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};

use crate::config::diagnostic::Sink;
use crate::config::load::read_capped;
use crate::config::model::{Jwks, RemoteJwks};
use crate::config::reader;
use crate::config::yaml::Node;

/// The most flotilla reads from one JWKS file (Envoy gets it inline in the listener).
pub const MAX_JWKS_BYTES: u64 = 64 * 1024;
/// Keys one JWKS may hold.
pub const MAX_JWKS_KEYS: usize = 64;
/// Longest JWKS URL.
pub const MAX_JWKS_URL: usize = 2_048;

/// Members of a JWK that only a private key has (RFC 7518 §6.2.2, §6.3.2, §6.4): a JWKS
/// flotilla sends to Envoy and shows in renders must hold none of them.
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

pub(crate) fn jwks(sink: &mut Sink, node: &Node, path: &str) -> Option<Jwks> {
    let value = reader::non_empty_string(sink, node, path)?;
    if value.starts_with("https://") || value.starts_with("http://") {
        return match remote(&value) {
            Ok(r) => Some(Jwks::Remote(r)),
            Err(e) => {
                sink.error(node, path, e);
                None
            }
        };
    }
    let base = node.loc.file.parent().unwrap_or(Path::new(""));
    let resolved = std::path::absolute(base.join(&value)).unwrap_or_else(|_| base.join(&value));
    // Confined like certificates: the file's contents go to every Envoy of the fleet (and to
    // `render`), so a config must not be able to name any file on the host.
    let config_dir = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
    if let Err(why) = sink.policy().servable(&resolved, &config_dir) {
        sink.error(node, path, format!("{}: {why}", resolved.display()));
        return None;
    }
    let mut budget = MAX_JWKS_BYTES;
    let bytes = match read_capped(&resolved, &mut budget) {
        Ok(bytes) => bytes,
        Err(crate::config::LoadError::TooLarge { path: p }) => {
            let message = format!("{}: larger than {MAX_JWKS_BYTES} bytes", p.display());
            sink.error(node, path, message);
            return None;
        }
        Err(e) => {
            sink.error(node, path, e.to_string());
            return None;
        }
    };
    match check(&bytes) {
        Ok(_) => Some(Jwks::File {
            path: resolved,
            // `check` parsed it as JSON, which is UTF-8.
            json: String::from_utf8_lossy(&bytes).into_owned(),
        }),
        Err(e) => {
            sink.error(node, path, format!("{}: {e}", resolved.display()));
            None
        }
    }
}

/// Checks a JWKS document: JSON, a JWK set with 1 to [`MAX_JWKS_KEYS`] public keys of a kind
/// Envoy verifies with (RSA, EC, OKP). Returns the number of keys. Errors in the JSON carry
/// their line and column in the file.
pub fn check(bytes: &[u8]) -> Result<usize, String> {
    let raw: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let set: JwkSet = serde_json::from_slice(bytes).map_err(|e| format!("not a JWK set: {e}"))?;
    if set.keys.is_empty() {
        return Err("no keys: a JWK set needs at least one key in `keys`".into());
    }
    if set.keys.len() > MAX_JWKS_KEYS {
        return Err(format!("{} keys: at most {MAX_JWKS_KEYS}", set.keys.len()));
    }
    let raw_keys = raw.get("keys").and_then(|k| k.as_array());
    for (i, key) in set.keys.iter().enumerate() {
        if let Some(member) = raw_keys
            .and_then(|k| k.get(i))
            .and_then(|k| k.as_object())
            .and_then(|k| PRIVATE_MEMBERS.iter().find(|m| k.contains_key(**m)))
        {
            return Err(format!(
                "keys[{i}] holds private key material (`{member}`): publish only public keys"
            ));
        }
        if matches!(key.algorithm, AlgorithmParameters::OctetKey(_)) {
            return Err(format!(
                "keys[{i}] is a shared secret (kty oct): use a public key (RSA, EC or OKP)"
            ));
        }
        if let Err(e) = jsonwebtoken::DecodingKey::from_jwk(key) {
            return Err(format!("keys[{i}] is not a usable key: {e}"));
        }
    }
    Ok(set.keys.len())
}

/// `https://host[:port]/path`: Envoy fetches the keys over TLS to `host`.
fn remote(url: &str) -> Result<RemoteJwks, String> {
    if url.len() > MAX_JWKS_URL {
        return Err(format!("a JWKS URL has at most {MAX_JWKS_URL} bytes"));
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!(
            "`{url}`: keys are fetched over https only (or give a file)"
        ));
    }
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("`{url}` has no host"))?;
    // Envoy sends no credentials from the URL, and the URL reaches every Envoy of the
    // fleet and `render`: a password in it would only leak.
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(format!(
            "`{}`: credentials in a JWKS URL are never sent, only shown; remove them",
            crate::util::clip(url)
        ));
    }
    if uri.port_u16() == Some(0) {
        return Err(format!("`{url}`: port 0 is no port"));
    }
    // The addresses DNS answers may not name (dropped there) are refused as literals too:
    // Envoy would fetch keys from its own host (0.0.0.0) or a metadata service.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Some(why) = bare
        .parse::<std::net::IpAddr>()
        .ok()
        .and_then(crate::runtime::admission::refused)
    {
        return Err(format!(
            "`{url}`: {bare} is {why}: not a place to fetch keys from"
        ));
    }
    Ok(RemoteJwks {
        url: url.to_string(),
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port: uri.port_u16().unwrap_or(443),
        // `jwks_ca` and `jwks_cache`, read beside `jwks`, replace these.
        ca: crate::config::model::TrustedCa::System,
        cache: super::auth::DEFAULT_JWKS_CACHE,
    })
}
