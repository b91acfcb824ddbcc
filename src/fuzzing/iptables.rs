//! `flotilla sidecar iptables` flags, as the pure rule generator reads them
//! (`crate::envoy::iptables`): `--exclude-ports` text and the ports and UID around it.
//!
//! Input: 4 bytes of proxy UID, 2 of outbound port, 2 of inbound port (big-endian; clap has
//! already refused port 0), then the `--exclude-ports` text (UTF-8, as clap hands it over).

use crate::envoy::iptables::{MAX_EXCLUDED_PORTS, Redirect, parse_ports};

/// Whatever the flags, the rules are well-formed iptables-restore input that names only the
/// flags' numbers: a list is parsed into unique, non-zero ports, at most
/// [`MAX_EXCLUDED_PORTS`]; an error is short (it quotes the input clipped); the rules are
/// one `*nat` table with one `COMMIT`, and each excluded port returns in both directions.
pub fn sidecar_iptables(data: &[u8]) {
    let Some((head, text)) = data.split_at_checked(8) else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let proxy_uid = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let (outbound_port, inbound_port) = (
        u16::from_be_bytes([head[4], head[5]]),
        u16::from_be_bytes([head[6], head[7]]),
    );
    if outbound_port == 0 || inbound_port == 0 {
        return;
    }
    let exclude_ports = match parse_ports(text) {
        Ok(p) => p,
        Err(e) => {
            assert!(e.to_string().len() < 1024, "a long error: {e}");
            return;
        }
    };
    assert!(exclude_ports.len() <= MAX_EXCLUDED_PORTS, "too many ports");
    assert!(!exclude_ports.contains(&0), "port 0");
    let mut seen = exclude_ports.clone();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), exclude_ports.len(), "a port twice");
    let redirect = Redirect {
        proxy_uid,
        outbound_port,
        inbound_port,
        exclude_ports,
    };
    if let Err(e) = redirect.check() {
        assert!(e.to_string().len() < 1024, "a long error: {e}");
        return;
    }
    let rules = redirect.rules();
    let lines: Vec<&str> = rules.lines().collect();
    assert_eq!(lines.iter().filter(|l| **l == "*nat").count(), 1, "{rules}");
    assert_eq!(lines.last(), Some(&"COMMIT"), "{rules}");
    for line in &lines[1..] {
        assert!(
            line.starts_with("-A FLOTILLA_")
                || line.starts_with(":FLOTILLA_")
                || *line == "*nat"
                || *line == "COMMIT"
                || *line == "-A PREROUTING -p tcp -j FLOTILLA_INBOUND"
                || *line == "-A OUTPUT -p tcp -j FLOTILLA_OUTPUT",
            "an unexpected line: {line}"
        );
        assert!(line.is_ascii(), "{line}");
    }
    for port in &redirect.exclude_ports {
        let returns = format!("-p tcp --dport {port} -j RETURN");
        assert_eq!(rules.matches(&returns).count(), 2, "{rules}");
    }
    assert!(rules.contains(&format!("--uid-owner {proxy_uid} -j RETURN")));
}

/// Flags as an operator gives them: ssh and a probe excluded, spaces, repeats, none, and
/// refused lists (a name, port 0, 65536, the inbound port itself).
pub(super) fn seeds() -> Vec<Vec<u8>> {
    let seed = |uid: u32, outbound: u16, inbound: u16, text: &str| {
        let mut s = uid.to_be_bytes().to_vec();
        s.extend_from_slice(&outbound.to_be_bytes());
        s.extend_from_slice(&inbound.to_be_bytes());
        s.extend_from_slice(text.as_bytes());
        s
    };
    vec![
        seed(1337, 15001, 15006, "22,15090"),
        seed(1337, 15001, 15006, ""),
        seed(0, 15001, 15006, " 22 , 80,22,,"),
        seed(101, 16001, 16006, "ssh"),
        seed(101, 15001, 15006, "22,0"),
        seed(101, 15001, 15006, "65536"),
        seed(101, 15001, 15006, "15006"),
        seed(101, 15001, 15001, "22"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The corpus starts from these seeds (`fuzz/corpus/sidecar_iptables/seed-*`).
    #[test]
    fn the_seeds_are_in_the_corpus_and_run_clean() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/sidecar_iptables");
        for (i, seed) in seeds().iter().enumerate() {
            let file = dir.join(format!("seed-{i:03}"));
            assert_eq!(
                std::fs::read(&file).ok().as_ref(),
                Some(seed),
                "{}",
                file.display()
            );
            sidecar_iptables(seed);
        }
        // Short inputs and bytes that are not UTF-8 are not flags.
        sidecar_iptables(b"\0\0");
        sidecar_iptables(b"\0\0\0\0\0\x01\0\x02\xff");
    }

    proptest::proptest! {
        /// The invariants on stable, over lists an operator might type: numbers (some out of
        /// range), names, spaces and stray commas.
        #[test]
        fn any_list_of_ports_keeps_the_invariants(
            uid in proptest::prelude::any::<u32>(),
            outbound in 1u16..,
            inbound in 1u16..,
            parts in proptest::collection::vec("( ?[0-9]{1,6} ?|[a-z]{1,4}|)", 0..80),
        ) {
            let mut input = uid.to_be_bytes().to_vec();
            input.extend_from_slice(&outbound.to_be_bytes());
            input.extend_from_slice(&inbound.to_be_bytes());
            input.extend_from_slice(parts.join(",").as_bytes());
            sidecar_iptables(&input);
        }
    }
}
