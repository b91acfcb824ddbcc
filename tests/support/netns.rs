//! A network namespace a test creates and enters: loopback only, iptables rules of its own.
//!
//! `unshare -n` makes the namespace (held by a `sleep` killed on drop); the test's thread
//! joins it with setns, so everything it then starts — tokio worker threads, in-process
//! backends, flotilla, Envoy, curl — lives there. Nothing the test does reaches the host's
//! network or its iptables.

use std::os::fd::AsFd;
use std::process::{Command, Output, Stdio};

/// The namespace, alive while this is.
pub struct NetNs {
    holder: std::process::Child,
}

impl NetNs {
    /// Creates a namespace with loopback up and moves the calling thread into it. Call it
    /// before starting a tokio runtime: threads started afterwards are in it too.
    pub fn enter() -> NetNs {
        let holder = Command::new("unshare")
            .args(["--net", "sleep", "3600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare --net (util-linux; needs root)");
        let path = format!("/proc/{}/ns/net", holder.id());
        // unshare has made the namespace once its child's differs from ours.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let ns = loop {
            let ours = std::fs::read_link("/proc/thread-self/ns/net").ok();
            if let (Ok(f), Ok(theirs)) = (std::fs::File::open(&path), std::fs::read_link(&path))
                && Some(theirs) != ours
            {
                break f;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "unshare made no network namespace in 10s"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        rustix::thread::move_into_link_name_space(
            ns.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("setns into the test's network namespace");
        run_ok("ip", &["link", "set", "lo", "up"]);
        NetNs { holder }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// The iptables-restore binary: scripts/install-iptables installs Debian's iptables.
pub fn iptables_restore() -> String {
    let bin = std::env::var("IPTABLES_RESTORE").unwrap_or_else(|_| "iptables-restore".into());
    let found = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{bin} not found: run scripts/install-iptables (or set IPTABLES_RESTORE)"
    );
    bin
}

/// Runs `program args` as `uid` (and its group), with no supplementary groups: an app that
/// is not the proxy.
pub fn run_as(uid: u32, program: &str, args: &[&str]) -> Output {
    let id = uid.to_string();
    Command::new("setpriv")
        .args(["--reuid", &id, "--regid", &id, "--clear-groups", program])
        .args(args)
        .output()
        .expect("setpriv (util-linux)")
}

/// Runs a command that must succeed; its stdout.
pub fn run_ok(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
