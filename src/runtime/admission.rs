//! Who may register which addresses into which cluster.
//!
//! Registration is how autoscaled instances join, so a registered address is where Envoy
//! sends real traffic, public clients included. So:
//! - a cluster takes registrations only if it says so (`registrations:` present, opt-in);
//! - under mTLS a registration stream may register only into clusters whose
//!   `registrations.from` names its fleet (any fleet could otherwise join any cluster);
//! - the unspecified address (which Envoy reads as "this host"), link-local addresses and the
//!   cloud metadata services (credentials, over plain HTTP) are refused unless the cluster's
//!   `registrations.allow_addresses` says otherwise;
//! - the admin interfaces of the Envoys flotilla knows of (announced in their node metadata by
//!   the bootstraps flotilla writes) are refused always: registered, they put Envoy's
//!   /config_dump and POST /quitquitquit behind a public listener.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::RuntimeError;
use crate::config::model::{Cluster, Registrations};

/// Node metadata key under which a bootstrap written by `flotilla bootstrap` announces the
/// Envoy's admin address (`ip:port`).
pub const ADMIN_ADDRESS_METADATA: &str = "flotilla.admin_address";

/// Who asks to register.
#[derive(Debug, Clone, Copy)]
pub enum Registrant<'a> {
    /// The admin API, with the admin token (or on loopback without one): the operator.
    Operator,
    /// A registration stream, with the fleets of its verified client certificate's
    /// identities (None: no mTLS, so no identity).
    Stream(Option<&'a [String]>),
}

/// The cluster's registration rules, if `who` may register into `cluster` at all.
pub fn open<'c>(
    name: &str,
    cluster: &'c Cluster,
    who: Registrant<'_>,
) -> Result<&'c Registrations, RuntimeError> {
    let Some(rules) = &cluster.registrations else {
        return Err(RuntimeError::Forbidden(format!(
            "cluster `{name}` takes no registrations (add `registrations:` to it to let endpoints register)"
        )));
    };
    match (who, &rules.from) {
        (Registrant::Operator, _) | (Registrant::Stream(None), None) => Ok(rules),
        (Registrant::Stream(Some(fleets)), Some(from))
            if fleets.iter().any(|f| from.contains(f)) =>
        {
            Ok(rules)
        }
        (Registrant::Stream(Some(fleets)), _) => Err(RuntimeError::Forbidden(format!(
            "identity of fleet {} may not register into cluster `{name}` (clusters.{name}.registrations.from names the fleets that may)",
            fleets.join(", ")
        ))),
        (Registrant::Stream(None), Some(_)) => Err(RuntimeError::Forbidden(format!(
            "cluster `{name}` takes registrations only from the identities its registrations.from names; this stream has no client certificate"
        ))),
    }
}

/// The addresses that stand for an Envoy admin interface announced as `announced`
/// (`ip:port`) by an Envoy connected from `peer`. An unspecified IP listens on every address
/// of the Envoy's host: its loopback addresses and the address it connects from.
pub fn admin_addresses(announced: &str, peer: Option<IpAddr>) -> Vec<SocketAddr> {
    // Port 0 (Envoy picks one) announces nothing flotilla can match.
    let Ok(addr) = crate::config::parse_socket_address(announced) else {
        return Vec::new();
    };
    if !addr.ip().is_unspecified() {
        return vec![addr];
    }
    let port = addr.port();
    let mut out = vec![
        SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port),
        SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port),
    ];
    out.extend(peer.map(|ip| SocketAddr::new(ip.to_canonical(), port)));
    out
}

/// `Err` when `address` is the admin interface of an Envoy flotilla knows of.
pub fn not_an_envoy_admin(
    address: SocketAddr,
    admins: &HashSet<SocketAddr>,
) -> Result<(), RuntimeError> {
    let canonical = SocketAddr::new(address.ip().to_canonical(), address.port());
    if admins.contains(&canonical) {
        return Err(RuntimeError::Forbidden(format!(
            "{canonical} is the admin interface of a connected Envoy; it is never registered"
        )));
    }
    Ok(())
}

/// `Err` when `address` is one of flotilla's own listening addresses (`own`: the port and
/// what it is). Registered, flotilla's admin API (whose mutations need no token from
/// loopback) or its xDS port would be reachable through a public listener, and a TCP health
/// check passes. A port listening on 0.0.0.0 or :: stands for every address of this host:
/// loopback, and any address a socket can bind here.
pub fn not_flotilla(
    address: SocketAddr,
    own: &[(SocketAddr, &'static str)],
) -> Result<(), RuntimeError> {
    let ip = address.ip().to_canonical();
    let local = |ip: IpAddr| {
        ip.is_loopback() || ip.is_unspecified() || std::net::UdpSocket::bind((ip, 0)).is_ok()
    };
    for (o, what) in own {
        if o.port() != address.port() {
            continue;
        }
        let hit = if o.ip().is_unspecified() {
            local(ip)
        } else {
            o.ip().to_canonical() == ip
        };
        if hit {
            return Err(RuntimeError::Forbidden(format!(
                "{address} is flotilla's own {what} port; it is never registered"
            )));
        }
    }
    Ok(())
}

/// Metadata services outside the link-local ranges: AWS's IPv6 endpoint, Alibaba Cloud's.
const METADATA: [IpAddr; 2] = [
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
];

/// Why `ip` may not register by default, if it may not. Hostname endpoints apply the same
/// rule to DNS answers (`crate::dns::Answer`).
pub(crate) fn refused(ip: IpAddr) -> Option<&'static str> {
    let ip = ip.to_canonical();
    if METADATA.contains(&ip) {
        return Some("a cloud metadata service");
    }
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => Some("unspecified"),
        IpAddr::V4(v4) if v4.is_link_local() => Some("link-local (and home to metadata services)"),
        IpAddr::V4(v4) if v4.is_broadcast() || v4.is_multicast() => Some("not a unicast address"),
        IpAddr::V6(v6) if v6.is_unspecified() => Some("unspecified"),
        IpAddr::V6(v6) if v6.is_unicast_link_local() => Some("link-local"),
        IpAddr::V6(v6) if v6.is_multicast() => Some("not a unicast address"),
        _ => None,
    }
}

/// `Err` with the reason when `ip` may not register into a cluster with `rules`.
pub(super) fn check(ip: IpAddr, rules: &Registrations) -> Result<(), String> {
    let Some(why) = refused(ip) else {
        return Ok(());
    };
    let canonical = ip.to_canonical();
    if rules
        .allow_addresses
        .iter()
        .any(|net| net.contains(&ip) || net.contains(&canonical))
    {
        return Ok(());
    }
    Err(format!(
        "{ip} is {why}: refused for registration unless the cluster's \
         registrations.allow_addresses includes it"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(registrations: Option<&str>) -> Cluster {
        let mut yaml = "version: 1\nclusters:\n  web:\n    endpoints: [127.0.0.1:1]\n".to_string();
        if let Some(r) = registrations {
            yaml += &format!("    registrations: {r}\n");
        }
        crate::config::parse_str("t.yaml", &yaml).unwrap().clusters["web"].clone()
    }

    #[test]
    fn registrations_are_opt_in_and_bound_to_identities() {
        let workers = ["workers".to_string()];
        let batch = ["batch".to_string()];
        let closed = cluster(None);
        let open_ = cluster(Some("{}"));
        let from = cluster(Some("{ from: [workers] }"));
        for (c, who, ok) in [
            (&closed, Registrant::Operator, false),
            (&closed, Registrant::Stream(None), false),
            (&closed, Registrant::Stream(Some(&workers)), false),
            (&open_, Registrant::Operator, true),
            (&open_, Registrant::Stream(None), true),
            (&open_, Registrant::Stream(Some(&workers)), false),
            (&from, Registrant::Operator, true),
            (&from, Registrant::Stream(None), false),
            (&from, Registrant::Stream(Some(&workers)), true),
            (&from, Registrant::Stream(Some(&batch)), false),
        ] {
            let got = open("web", c, who);
            assert_eq!(got.is_ok(), ok, "{:?} {who:?}: {got:?}", c.registrations);
            if let Err(e) = got {
                assert!(matches!(e, RuntimeError::Forbidden(_)), "{e}");
            }
        }
    }

    #[test]
    fn flotillas_own_ports_are_refused() {
        let own = [
            ("127.0.0.1:18000".parse().unwrap(), "xDS"),
            ("0.0.0.0:9900".parse().unwrap(), "admin"),
        ];
        for (addr, refused) in [
            ("127.0.0.1:18000", true),
            ("[::ffff:127.0.0.1]:18000", true),
            ("127.0.0.2:18000", false),
            ("127.0.0.1:18001", false),
            ("127.0.0.1:9900", true),
            ("127.0.0.9:9900", true),
            ("[::1]:9900", true),
            // Not an address of this host.
            ("192.0.2.1:9900", false),
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            let got = not_flotilla(addr, &own);
            assert_eq!(got.is_err(), refused, "{addr}: {got:?}");
            if let Err(e) = got {
                assert!(e.to_string().contains("flotilla's own"), "{e}");
            }
        }
    }

    #[test]
    fn envoy_admin_addresses_are_refused() {
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        let admins: HashSet<SocketAddr> = admin_addresses("127.0.0.1:9901", Some(peer))
            .into_iter()
            .chain(admin_addresses("0.0.0.0:9902", Some(peer)))
            .collect();
        for (addr, refused) in [
            ("127.0.0.1:9901", true),
            ("[::ffff:127.0.0.1]:9901", true),
            ("127.0.0.1:9902", true),
            ("[::1]:9902", true),
            ("10.0.0.9:9902", true),
            ("10.0.0.9:9901", false),
            ("127.0.0.1:8080", false),
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(
                not_an_envoy_admin(addr, &admins).is_err(),
                refused,
                "{addr}"
            );
        }
        assert!(admin_addresses("nonsense", None).is_empty());
    }

    #[test]
    fn refused_by_default() {
        for (ip, refused_) in [
            ("10.0.0.7", false),
            ("127.0.0.1", false),
            ("2001:db8::1", false),
            ("0.0.0.0", true),
            ("::", true),
            ("169.254.169.254", true),
            ("169.254.0.1", true),
            ("::ffff:169.254.169.254", true),
            ("fe80::1", true),
            ("febf::1", true),
            ("fec0::1", false),
            ("fd00:ec2::254", true),
            ("100.100.100.200", true),
            ("255.255.255.255", true),
            ("224.0.0.1", true),
            ("ff02::1", true),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(refused(ip).is_some(), refused_, "{ip}");
        }
    }

    #[test]
    fn allowed_by_the_cluster() {
        let rules = Registrations {
            allow_addresses: vec!["169.254.0.0/16".parse().unwrap(), "::/128".parse().unwrap()],
            ..Registrations::default()
        };
        for (ip, ok) in [
            ("169.254.169.254", true),
            ("::ffff:169.254.1.1", true),
            ("::", true),
            ("0.0.0.0", false),
            ("fe80::1", false),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(check(ip, &rules).is_ok(), ok, "{ip}");
        }
        let err = check("0.0.0.0".parse().unwrap(), &rules).unwrap_err();
        assert!(err.contains("allow_addresses"), "{err}");
    }
}
