//! The open-files limit, which caps how many Envoys can connect: every xDS connection is a file
//! descriptor. A shell's default soft limit (1,024) would stop a 50,000-connection fleet at
//! about a thousand, silently from the Envoys' side (their connections wait in the listen
//! backlog). So `serve` raises its soft limit as far as the hard limit allows, as Go's runtime
//! and nginx do, and says so — by name — when even the hard limit is below what
//! `--xds-max-connections` asks for.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use tracing::{info, warn};

/// Descriptors kept for flotilla's own files besides xDS connections: the admin port and its
/// clients, config and state files, file watches, etcd, health checks, DNS.
pub(crate) const RESERVED: u64 = 1024;

/// The soft and hard open-files limits now (`None`: unlimited).
pub(crate) fn limits() -> (Option<u64>, Option<u64>) {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    (current, maximum)
}

/// The soft limit needed for `max_connections` connections and the reserve, and what
/// `raise_for` would set, given the current `soft` and `hard` limits.
fn plan(max_connections: usize, soft: Option<u64>, hard: Option<u64>) -> (u64, Option<u64>) {
    let wanted = (max_connections as u64).saturating_add(RESERVED);
    let soft_now = soft.unwrap_or(u64::MAX);
    if soft_now >= wanted {
        return (wanted, None);
    }
    let new = hard.map_or(wanted, |h| h.min(wanted));
    (wanted, (new > soft_now).then_some(new))
}

/// Raises the soft open-files limit towards `max_connections` + [`RESERVED`] (never above the
/// hard limit), logging what it did; warns naming the limit when that is not enough.
pub(crate) fn raise_for(max_connections: usize) {
    let (soft, hard) = limits();
    let (wanted, new) = plan(max_connections, soft, hard);
    let raised = new.filter(|&to| {
        let set = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(to),
                maximum: hard,
            },
        );
        match &set {
            Ok(()) => info!(
                from = soft.unwrap_or(0),
                to, "raised the open-files soft limit for xDS connections"
            ),
            Err(e) => warn!(error = %e, "could not raise the open-files soft limit"),
        }
        set.is_ok()
    });
    let now = raised.or(soft).unwrap_or(u64::MAX);
    if now >= wanted {
        return;
    }
    warn!(
        open_files_limit = now,
        hard_limit = hard.map_or("unlimited".to_string(), |h| h.to_string()),
        max_connections,
        "the open-files limit is below --xds-max-connections + {RESERVED} for flotilla's own \
         files: past about {} xDS connections accept fails (EMFILE) and new Envoys wait; raise \
         the limit (ulimit -n, systemd LimitNOFILE=) or lower --xds-max-connections",
        now.saturating_sub(RESERVED)
    );
}

/// Whether an accept error means the descriptors ran out (the process's or the system's).
pub(crate) fn exhausted(e: &std::io::Error) -> bool {
    e.raw_os_error().is_some_and(|c| {
        c == rustix::io::Errno::MFILE.raw_os_error() || c == rustix::io::Errno::NFILE.raw_os_error()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_soft_limit_that_is_enough_is_left_alone() {
        assert_eq!(plan(1000, Some(4096), Some(4096)), (2024, None));
        assert_eq!(plan(1000, None, None), (2024, None));
    }

    #[test]
    fn a_low_soft_limit_is_raised_to_what_is_wanted_within_the_hard_limit() {
        assert_eq!(
            plan(50_000, Some(1024), Some(1 << 20)),
            (51_024, Some(51_024))
        );
        assert_eq!(plan(50_000, Some(1024), None), (51_024, Some(51_024)));
        assert_eq!(
            plan(50_000, Some(1024), Some(20_000)),
            (51_024, Some(20_000))
        );
        // A hard limit at the soft one leaves nothing to raise.
        assert_eq!(plan(50_000, Some(1024), Some(1024)), (51_024, None));
    }

    #[test]
    fn descriptor_exhaustion_is_told_from_other_accept_errors() {
        assert!(exhausted(&std::io::Error::from_raw_os_error(
            rustix::io::Errno::MFILE.raw_os_error()
        )));
        assert!(exhausted(&std::io::Error::from_raw_os_error(
            rustix::io::Errno::NFILE.raw_os_error()
        )));
        assert!(!exhausted(&std::io::Error::from(
            std::io::ErrorKind::ConnectionReset
        )));
    }
}
