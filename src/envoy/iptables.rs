//! The iptables rules of a transparent mesh sidecar (`flotilla sidecar iptables`), as
//! `iptables-restore --noflush` input for the nat table.
//!
//! Outbound: every TCP connection a process other than the proxy makes is redirected to the
//! sidecar's outbound listener (`flotilla bootstrap --transparent`), except to 127.0.0.1 (the
//! app reaching its own sidecar or itself; the sidecar reaching the app) and to excluded
//! ports. The proxy's own connections (by UID) are never redirected, or they would loop.
//! Inbound: TCP connections arriving from outside the host go to the inbound listener (mTLS),
//! except on excluded ports. Istio's `istio-iptables` and Consul's `redirect-traffic` do the
//! same; the chains are flotilla's own (`FLOTILLA_*`) so that removing them touches nothing
//! else.
//!
//! iptables-restore applies a table in one commit: the rules are in place whole, or not at
//! all (nothing half-applied when permission is missing or a rule is refused).

use std::fmt::Write as _;

/// What the rules redirect where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// The UID Envoy runs as: its connections are never redirected.
    pub proxy_uid: u32,
    pub outbound_port: u16,
    pub inbound_port: u16,
    /// Ports never redirected, in either direction (ssh, a health probe port, …).
    pub exclude_ports: Vec<u16>,
}

/// `--exclude-ports` entries at most.
pub const MAX_EXCLUDED_PORTS: usize = 64;

pub const DEFAULT_INBOUND_PORT: u16 = 15006;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RedirectError {
    #[error("--exclude-ports: {0} ports; at most {MAX_EXCLUDED_PORTS} are accepted")]
    TooManyExcluded(usize),
    #[error("--exclude-ports: `{0}` is not a port (1-65535)")]
    BadPort(String),
    #[error("--outbound-port and --inbound-port are both {0}: they must differ")]
    SamePorts(u16),
    #[error("--exclude-ports: {0} is the {1} port: it must be redirected")]
    ExcludedProxyPort(u16, &'static str),
    #[error(
        "--proxy-uid {0}: {1}; run Envoy as a user of its own (Istio uses 1337) and name its UID"
    )]
    BadProxyUid(u32, &'static str),
}

/// The chains the rules add (removed by [`clean`]).
const OUTPUT: &str = "FLOTILLA_OUTPUT";
const REDIRECT: &str = "FLOTILLA_REDIRECT";
const INBOUND: &str = "FLOTILLA_INBOUND";
const IN_REDIRECT: &str = "FLOTILLA_IN_REDIRECT";

/// The jumps from the built-in chains into flotilla's.
const JUMPS: [(&str, &str); 2] = [("PREROUTING", INBOUND), ("OUTPUT", OUTPUT)];

/// Reads `--exclude-ports 22,8080` (a comma-separated list; repeats are kept once).
pub fn parse_ports(text: &str) -> Result<Vec<u16>, RedirectError> {
    let mut ports = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if ports.len() >= MAX_EXCLUDED_PORTS {
            return Err(RedirectError::TooManyExcluded(text.split(',').count()));
        }
        let port: u16 = part
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| RedirectError::BadPort(crate::util::clip(part).into_owned()))?;
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    Ok(ports)
}

impl Redirect {
    pub fn check(&self) -> Result<(), RedirectError> {
        // (uid_t)-1 is no user: the owner match would never exclude Envoy, whose own
        // connections would loop back into it.
        if self.proxy_uid == u32::MAX {
            return Err(RedirectError::BadProxyUid(u32::MAX, "(uid_t)-1 is no user"));
        }
        if self.outbound_port == self.inbound_port {
            return Err(RedirectError::SamePorts(self.inbound_port));
        }
        if self.exclude_ports.len() > MAX_EXCLUDED_PORTS {
            return Err(RedirectError::TooManyExcluded(self.exclude_ports.len()));
        }
        for (port, which) in [
            (self.outbound_port, "outbound"),
            (self.inbound_port, "inbound"),
        ] {
            if self.exclude_ports.contains(&port) {
                return Err(RedirectError::ExcludedProxyPort(port, which));
            }
        }
        Ok(())
    }

    /// What the operator should know about flags that work but weaken the mesh.
    pub fn warning(&self) -> Option<&'static str> {
        (self.proxy_uid == 0).then_some(
            "--proxy-uid 0: connections of every process running as root are not redirected, \
             so an app running as root bypasses the mesh; run Envoy as a user of its own",
        )
    }

    /// The rules, as `iptables-restore --noflush` input.
    pub fn rules(&self) -> String {
        let mut out = self.header("redirect");
        out.push_str("*nat\n");
        for chain in [INBOUND, IN_REDIRECT, OUTPUT, REDIRECT] {
            let _ = writeln!(out, ":{chain} - [0:0]");
        }
        let _ = writeln!(
            out,
            "-A {REDIRECT} -p tcp -j REDIRECT --to-ports {}",
            self.outbound_port
        );
        let _ = writeln!(
            out,
            "-A {IN_REDIRECT} -p tcp -j REDIRECT --to-ports {}",
            self.inbound_port
        );
        for port in &self.exclude_ports {
            let _ = writeln!(out, "-A {INBOUND} -p tcp --dport {port} -j RETURN");
        }
        let _ = writeln!(out, "-A {INBOUND} -p tcp -j {IN_REDIRECT}");
        let _ = writeln!(
            out,
            "-A {OUTPUT} -m owner --uid-owner {} -j RETURN",
            self.proxy_uid
        );
        let _ = writeln!(out, "-A {OUTPUT} -d 127.0.0.1/32 -j RETURN");
        for port in &self.exclude_ports {
            let _ = writeln!(out, "-A {OUTPUT} -p tcp --dport {port} -j RETURN");
        }
        let _ = writeln!(out, "-A {OUTPUT} -j {REDIRECT}");
        for (builtin, chain) in JUMPS {
            let _ = writeln!(out, "-A {builtin} -p tcp -j {chain}");
        }
        out.push_str("COMMIT\n");
        out
    }

    fn header(&self, what: &str) -> String {
        format!(
            "# flotilla sidecar iptables ({what}): proxy uid {}, outbound port {}, inbound port {}\n",
            self.proxy_uid, self.outbound_port, self.inbound_port
        )
    }
}

/// What removes the rules again (`--clean`): the jumps, then flotilla's chains. Like the
/// rules, one commit: if they are not there, nothing is changed and iptables-restore says so.
pub fn clean() -> String {
    let mut out = "# flotilla sidecar iptables (clean)\n*nat\n".to_string();
    for (builtin, chain) in JUMPS {
        let _ = writeln!(out, "-D {builtin} -p tcp -j {chain}");
    }
    for chain in [INBOUND, IN_REDIRECT, OUTPUT, REDIRECT] {
        let _ = writeln!(out, "-F {chain}");
    }
    for chain in [INBOUND, IN_REDIRECT, OUTPUT, REDIRECT] {
        let _ = writeln!(out, "-X {chain}");
    }
    out.push_str("COMMIT\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect() -> Redirect {
        Redirect {
            proxy_uid: 1337,
            outbound_port: 15001,
            inbound_port: 15006,
            exclude_ports: vec![22, 9901],
        }
    }

    #[test]
    fn the_rules_are_golden() {
        assert_eq!(
            redirect().rules(),
            "\
# flotilla sidecar iptables (redirect): proxy uid 1337, outbound port 15001, inbound port 15006
*nat
:FLOTILLA_INBOUND - [0:0]
:FLOTILLA_IN_REDIRECT - [0:0]
:FLOTILLA_OUTPUT - [0:0]
:FLOTILLA_REDIRECT - [0:0]
-A FLOTILLA_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A FLOTILLA_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A FLOTILLA_INBOUND -p tcp --dport 22 -j RETURN
-A FLOTILLA_INBOUND -p tcp --dport 9901 -j RETURN
-A FLOTILLA_INBOUND -p tcp -j FLOTILLA_IN_REDIRECT
-A FLOTILLA_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A FLOTILLA_OUTPUT -d 127.0.0.1/32 -j RETURN
-A FLOTILLA_OUTPUT -p tcp --dport 22 -j RETURN
-A FLOTILLA_OUTPUT -p tcp --dport 9901 -j RETURN
-A FLOTILLA_OUTPUT -j FLOTILLA_REDIRECT
-A PREROUTING -p tcp -j FLOTILLA_INBOUND
-A OUTPUT -p tcp -j FLOTILLA_OUTPUT
COMMIT
"
        );
    }

    #[test]
    fn clean_is_golden() {
        assert_eq!(
            clean(),
            "\
# flotilla sidecar iptables (clean)
*nat
-D PREROUTING -p tcp -j FLOTILLA_INBOUND
-D OUTPUT -p tcp -j FLOTILLA_OUTPUT
-F FLOTILLA_INBOUND
-F FLOTILLA_IN_REDIRECT
-F FLOTILLA_OUTPUT
-F FLOTILLA_REDIRECT
-X FLOTILLA_INBOUND
-X FLOTILLA_IN_REDIRECT
-X FLOTILLA_OUTPUT
-X FLOTILLA_REDIRECT
COMMIT
"
        );
    }

    #[test]
    fn without_excluded_ports_only_the_proxy_and_loopback_return() {
        let r = Redirect {
            exclude_ports: Vec::new(),
            ..redirect()
        };
        let rules = r.rules();
        assert!(!rules.contains("--dport"), "{rules}");
        assert_eq!(rules.matches("-j RETURN").count(), 2, "{rules}");
    }

    #[test]
    fn bad_flags_are_refused() {
        let same = Redirect {
            inbound_port: 15001,
            ..redirect()
        };
        assert_eq!(same.check(), Err(RedirectError::SamePorts(15001)));
        let excluded = Redirect {
            exclude_ports: vec![15006],
            ..redirect()
        };
        assert_eq!(
            excluded.check(),
            Err(RedirectError::ExcludedProxyPort(15006, "inbound"))
        );
        assert_eq!(redirect().check(), Ok(()));
        let nobody = Redirect {
            proxy_uid: u32::MAX,
            ..redirect()
        };
        assert!(matches!(
            nobody.check(),
            Err(RedirectError::BadProxyUid(u32::MAX, _))
        ));
        let root = Redirect {
            proxy_uid: 0,
            ..redirect()
        };
        assert_eq!(root.check(), Ok(()));
        assert!(root.warning().is_some_and(|w| w.contains("root")));
        assert_eq!(redirect().warning(), None);
        assert_eq!(parse_ports("22, 80,22"), Ok(vec![22, 80]));
        assert_eq!(parse_ports(""), Ok(vec![]));
        assert_eq!(parse_ports("22,0"), Err(RedirectError::BadPort("0".into())));
        assert_eq!(
            parse_ports("ssh"),
            Err(RedirectError::BadPort("ssh".into()))
        );
        let many: Vec<String> = (1..=65).map(|p| p.to_string()).collect();
        assert!(matches!(
            parse_ports(&many.join(",")),
            Err(RedirectError::TooManyExcluded(65))
        ));
    }
}
