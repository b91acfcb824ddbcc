//! Which addresses may register themselves into a cluster.
//!
//! Registration is how autoscaled instances join, so a registered address is where Envoy
//! sends real traffic: the unspecified address (which Envoy reads as "this host"), link-local
//! addresses and the cloud metadata services (credentials, over plain HTTP) are refused unless
//! the cluster's `registrations.allow_addresses` says otherwise.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::model::Registrations;

/// Metadata services outside the link-local ranges: AWS's IPv6 endpoint, Alibaba Cloud's.
const METADATA: [IpAddr; 2] = [
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
];

/// Why `ip` may not register by default, if it may not.
pub(super) fn refused(ip: IpAddr) -> Option<&'static str> {
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
