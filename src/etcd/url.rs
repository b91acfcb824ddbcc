//! `--store etcd://host:port[,host:port…][/prefix]`.

use std::fmt;

/// Most etcd members a store URL may list (etcd clusters have 3 or 5).
pub const MAX_ENDPOINTS: usize = 16;

/// Where flotilla's keys live when the URL names no prefix.
pub const DEFAULT_PREFIX: &str = "/flotilla/";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUrl {
    /// `host:port` of each etcd member.
    pub endpoints: Vec<String>,
    /// Every key flotilla writes starts with it (ends with `/`).
    pub prefix: String,
    /// TLS towards every member (`--store-cacert`/`--store-cert`/`--store-key`); `None` is
    /// plain HTTP/2.
    pub tls: Option<crate::tls::ClientPem>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("--store {url}: {message}")]
pub struct UrlError {
    url: String,
    message: String,
}

impl StoreUrl {
    pub fn parse(url: &str) -> Result<StoreUrl, UrlError> {
        let err = |message: String| UrlError {
            url: url.to_string(),
            message,
        };
        let rest = url.strip_prefix("etcd://").ok_or_else(|| {
            err("only etcd:// stores are supported (etcd://host:port[,host:port])".into())
        })?;
        let (hosts, prefix) = match rest.split_once('/') {
            Some((h, p)) if !p.is_empty() => (h, format!("/{}/", p.trim_end_matches('/'))),
            Some((h, _)) => (h, DEFAULT_PREFIX.to_string()),
            None => (rest, DEFAULT_PREFIX.to_string()),
        };
        let endpoints: Vec<String> = hosts.split(',').map(str::to_string).collect();
        if endpoints.len() > MAX_ENDPOINTS {
            return Err(err(format!(
                "{} etcd endpoints, at most {MAX_ENDPOINTS}",
                endpoints.len()
            )));
        }
        for e in &endpoints {
            let port = e.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>()));
            match port {
                Some((h, Ok(p))) if !h.is_empty() && p != 0 => {}
                _ => return Err(err(format!("`{e}` is not host:port"))),
            }
        }
        Ok(StoreUrl {
            endpoints,
            prefix,
            tls: None,
        })
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "etcd://{}{}", self.endpoints.join(","), self.prefix)?;
        if self.tls.is_some() {
            write!(f, " (TLS)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_endpoints_and_the_default_prefix() {
        let u = StoreUrl::parse("etcd://127.0.0.1:2379,etcd-b:2379").unwrap();
        assert_eq!(u.endpoints, ["127.0.0.1:2379", "etcd-b:2379"]);
        assert_eq!(u.prefix, "/flotilla/");
    }

    #[test]
    fn a_path_is_the_prefix() {
        let u = StoreUrl::parse("etcd://[::1]:2379/prod/edge").unwrap();
        assert_eq!(u.endpoints, ["[::1]:2379"]);
        assert_eq!(u.prefix, "/prod/edge/");
    }

    #[test]
    fn bad_urls_say_why() {
        for (url, message) in [
            ("http://a:1", "only etcd:// stores"),
            ("etcd://a", "`a` is not host:port"),
            ("etcd://a:0", "`a:0` is not host:port"),
            ("etcd://a:1,,b:2", "`` is not host:port"),
        ] {
            let e = StoreUrl::parse(url).unwrap_err().to_string();
            assert!(e.starts_with(&format!("--store {url}: ")), "{e}");
            assert!(e.contains(message), "{e}");
        }
        let many = format!("etcd://{}", vec!["a:1"; MAX_ENDPOINTS + 1].join(","));
        assert!(
            StoreUrl::parse(&many)
                .unwrap_err()
                .to_string()
                .contains("at most 16")
        );
    }
}
