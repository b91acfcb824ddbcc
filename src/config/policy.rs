//! What a configuration may name on the hosts, beyond what its schema says: which files may be
//! served as certificates and keys, and where Envoy may be told to write access logs.
//!
//! A config is written by people who may not hold the keys of the machine flotilla runs on:
//! a `tls.key` naming flotilla's own `--xds-tls-key` (or `/etc/ssl/private/…`) would hand it
//! to every Envoy of a fleet over SDS, and an access-log `path` naming `/etc/passwd` or
//! `/proc/sysrq-trigger` makes every Envoy append to it. So certificate and key files must
//! resolve (after symlinks) inside the config's own directory or a `--secrets-dir`, flotilla's
//! own key files are never servable, and access logs go under `--access-log-dir` prefixes.

use std::path::{Path, PathBuf};

/// Access-log directory when no `--access-log-dir` is given.
pub const DEFAULT_ACCESS_LOG_DIR: &str = "/var/log/envoy/";

/// Access-log paths always accepted: Envoy's own output streams.
pub const STANDARD_STREAMS: [&str; 2] = ["/dev/stdout", "/dev/stderr"];

/// `--secrets-dir` and `--access-log-dir` values at most (each flag).
pub const MAX_POLICY_DIRS: usize = 64;

/// Where a config's files may be (`serve`/`validate`/`render` flags). The default confines
/// certificates to the config's directory and access logs to [`DEFAULT_ACCESS_LOG_DIR`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadPolicy {
    /// Directories besides the config's own whose files may be served as certificates and
    /// keys (`--secrets-dir`, repeatable).
    pub secrets_dirs: Vec<PathBuf>,
    /// flotilla's own private keys (`--xds-tls-key`, `--admin-tls-key`, `--store-key`, and the
    /// mesh CA key): never served, wherever they are.
    pub own_keys: Vec<PathBuf>,
    /// Prefixes access-log files must be under (`--access-log-dir`, repeatable); empty means
    /// [`DEFAULT_ACCESS_LOG_DIR`]. [`STANDARD_STREAMS`] are always accepted.
    pub access_log_dirs: Vec<PathBuf>,
    /// serve's `--dns-server`: the DNS servers Envoy is told to resolve names with where it
    /// resolves them itself (`resolve: envoy`, remote JWKS), like flotilla does. Empty: Envoy's
    /// own resolver configuration. Not a restriction, but a fact about the hosts every load
    /// needs (see `Config::envoy_dns_servers`).
    pub dns_servers: Vec<std::net::SocketAddr>,
    /// Why no private key may be served at all, if none may (`serve` on a plaintext xDS port
    /// beyond loopback without `--allow-plaintext-secrets`).
    pub no_private_keys: Option<String>,
}

impl LoadPolicy {
    /// Checks the flag values: absolute directories, at most [`MAX_POLICY_DIRS`] of each.
    pub fn check(&self) -> Result<(), String> {
        for (flag, dirs) in [
            ("--secrets-dir", &self.secrets_dirs),
            ("--access-log-dir", &self.access_log_dirs),
        ] {
            if dirs.len() > MAX_POLICY_DIRS {
                return Err(format!("{flag}: at most {MAX_POLICY_DIRS} directories"));
            }
            if let Some(d) = dirs.iter().find(|d| !d.is_absolute()) {
                return Err(format!(
                    "{flag} {}: expected an absolute directory",
                    d.display()
                ));
            }
        }
        Ok(())
    }

    /// Whether `file` (as resolved from the YAML that names it, in `config_dir`) may be served
    /// as a certificate, CA, key or JWKS: `Err` says why not. Symlinks are followed before the
    /// check, so a link inside the directory to a key elsewhere is refused.
    pub fn servable(&self, file: &Path, config_dir: &Path) -> Result<(), String> {
        let real = std::fs::canonicalize(file).map_err(|e| e.to_string())?;
        let own = self
            .own_keys
            .iter()
            .filter_map(|k| std::fs::canonicalize(k).ok())
            .any(|k| k == real);
        if own {
            return Err(
                "this is one of flotilla's own private keys (--xds-tls-key, --admin-tls-key, \
                 --store-key, --mesh-ca-key): it is never served to Envoys"
                    .to_string(),
            );
        }
        let inside = std::iter::once(config_dir)
            .chain(self.secrets_dirs.iter().map(PathBuf::as_path))
            .filter_map(|d| std::fs::canonicalize(d).ok())
            .any(|d| real.starts_with(&d));
        if !inside {
            return Err(format!(
                "resolves to {}, outside the config's directory and every --secrets-dir: \
                 certificate, key and JWKS files are served only from there",
                crate::util::clip(&real.display().to_string())
            ));
        }
        Ok(())
    }

    /// Whether Envoy may be told to write an access log at `path`; `Err` says why not.
    pub fn access_log(&self, path: &str) -> Result<(), String> {
        if path.chars().any(char::is_control) {
            return Err("a path without control characters (a newline, a tab…)".to_string());
        }
        if STANDARD_STREAMS.contains(&path) {
            return Ok(());
        }
        let p = Path::new(path);
        // By text: `Path::components` drops `.` and folds `//` silently.
        if path
            .split('/')
            .skip(1)
            .any(|c| matches!(c, "" | "." | ".."))
        {
            return Err("a path without `.`, `..` or `//` components".to_string());
        }
        let default = [PathBuf::from(DEFAULT_ACCESS_LOG_DIR)];
        let dirs = if self.access_log_dirs.is_empty() {
            &default[..]
        } else {
            &self.access_log_dirs[..]
        };
        if dirs.iter().any(|d| p.starts_with(d) && p != d) {
            return Ok(());
        }
        let allowed: Vec<String> = dirs
            .iter()
            .map(|d| d.display().to_string())
            .chain(STANDARD_STREAMS.iter().map(|s| s.to_string()))
            .collect();
        Err(format!(
            "access logs are written under {} (serve/validate --access-log-dir adds directories)",
            allowed.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_log_paths_are_confined() {
        let default = LoadPolicy::default();
        for (path, ok) in [
            ("/var/log/envoy/a.json", true),
            ("/var/log/envoy/sub/a.json", true),
            ("/dev/stdout", true),
            ("/dev/stderr", true),
            ("/etc/passwd", false),
            ("/dev/sda", false),
            ("/proc/sysrq-trigger", false),
            ("/var/log/envoy", false),
            ("/var/log/envoy-x/a", false),
            ("/var/log/envoy/../../../etc/passwd", false),
            ("/var/log/envoy/./a", false),
            ("/var/log/envoy/a\nb", false),
            ("/var/log/envoy/a\u{1b}[31m", false),
        ] {
            assert_eq!(default.access_log(path).is_ok(), ok, "{path:?}");
        }
        let custom = LoadPolicy {
            access_log_dirs: vec![PathBuf::from("/srv/logs")],
            ..LoadPolicy::default()
        };
        assert!(custom.access_log("/srv/logs/a.json").is_ok());
        assert!(custom.access_log("/dev/stdout").is_ok());
        let err = custom.access_log("/var/log/envoy/a.json").unwrap_err();
        assert!(err.contains("/srv/logs, /dev/stdout, /dev/stderr"), "{err}");
    }

    #[test]
    fn secrets_are_confined_after_symlinks_and_own_keys_never_served() {
        let root = tempfile::tempdir().unwrap();
        let conf = root.path().join("conf");
        let elsewhere = root.path().join("elsewhere");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::write(conf.join("a.pem"), "x").unwrap();
        std::fs::write(elsewhere.join("k.key"), "x").unwrap();
        std::os::unix::fs::symlink(elsewhere.join("k.key"), conf.join("link.key")).unwrap();
        let p = LoadPolicy::default();
        assert!(p.servable(&conf.join("a.pem"), &conf).is_ok());
        let err = p.servable(&conf.join("link.key"), &conf).unwrap_err();
        assert!(err.contains("outside the config's directory"), "{err}");
        assert!(p.servable(&conf.join("../elsewhere/k.key"), &conf).is_err());
        let with_dir = LoadPolicy {
            secrets_dirs: vec![elsewhere.clone()],
            ..LoadPolicy::default()
        };
        assert!(with_dir.servable(&conf.join("link.key"), &conf).is_ok());
        let own = LoadPolicy {
            own_keys: vec![elsewhere.join("k.key")],
            ..with_dir
        };
        let err = own.servable(&conf.join("link.key"), &conf).unwrap_err();
        assert!(err.contains("flotilla's own private keys"), "{err}");
        let err = own.servable(&elsewhere.join("k.key"), &conf).unwrap_err();
        assert!(err.contains("flotilla's own private keys"), "{err}");
    }

    #[test]
    fn flag_values_are_checked() {
        let relative = LoadPolicy {
            secrets_dirs: vec![PathBuf::from("certs")],
            ..LoadPolicy::default()
        };
        assert!(relative.check().unwrap_err().contains("absolute"));
        assert!(LoadPolicy::default().check().is_ok());
    }
}
