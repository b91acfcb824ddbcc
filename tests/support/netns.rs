//! Network namespaces the tests create (`unshare -n`), for rules that only apply to addresses
//! beyond loopback (a plaintext xDS port on 192.0.2.1) and for iptables rules a test must not
//! apply to the host.
//!
//! A namespace is held open by a `sleep` started under `unshare --net`, with loopback up and
//! the test's addresses on `lo`; dropping the [`Netns`] kills it, and the namespace goes with
//! the last process in it. Code runs inside with [`Netns::run`] (a thread that joined the
//! namespace, with its own Tokio runtime: every socket it opens and every process it starts is
//! inside, so the usual harness — `Flotilla`, `Envoy`, `Backend`, reqwest — works unchanged), or
//! one command with [`Netns::command`] (`nsenter`). A machine that does not allow namespaces
//! fails the test loudly: these tests never skip.

use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

pub struct Netns {
    holder: Child,
}

impl Netns {
    /// A new network namespace with loopback up and each of `addresses` (CIDR, such as
    /// `192.0.2.1/32`) added to `lo`.
    pub fn new(addresses: &[&str]) -> Netns {
        let mut script = String::from("set -e; ip link set lo up; ");
        for a in addresses {
            script.push_str(&format!("ip addr add {a} dev lo; "));
        }
        script.push_str("echo ready; exec sleep infinity");
        let mut holder = Command::new("unshare")
            .args(["--net", "--", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run `unshare` (util-linux) to create a network namespace: {e}")
            });
        let mut line = String::new();
        let stdout = holder.stdout.take().expect("stdout");
        let _ = BufReader::new(stdout).read_line(&mut line);
        if line.trim() != "ready" {
            let _ = holder.kill();
            let _ = holder.wait();
            let mut stderr = String::new();
            if let Some(mut e) = holder.stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
            panic!(
                "cannot create a network namespace with {addresses:?} (`unshare --net` and `ip` \
                 from iproute2 must be allowed; these tests never skip): {}",
                stderr.trim()
            );
        }
        Netns { holder }
    }

    /// The namespace's handle, `/proc/<holder>/ns/net`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.holder.id()))
    }

    /// Runs `f` to completion on a thread inside the namespace, on a Tokio runtime of its own.
    /// Children started there (the harness kills them on drop) stay in the namespace.
    pub fn run<F, Fut, T>(&self, f: F) -> T
    where
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = T>,
        T: Send,
    {
        let path = self.path();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    enter(&path);
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime")
                        .block_on(f())
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// `program` run inside the namespace (through `nsenter`, which execs it: killing the
    /// child kills the program), killed on drop.
    pub fn command(&self, program: &str) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("nsenter");
        c.arg(format!("--net={}", self.path().display()))
            .arg("--")
            .arg(program)
            .kill_on_drop(true);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Moves the calling thread into the network namespace at `path`.
fn enter(path: &std::path::Path) {
    let ns = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    rustix::thread::move_into_link_name_space(
        ns.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .unwrap_or_else(|e| panic!("setns({}): {e}", path.display()));
}

/// A port free right now on `ip`, inside the namespace of the calling thread (in a namespace
/// of its own a test is alone, so the port stays free until it binds it).
pub fn free_addr_on(ip: IpAddr) -> SocketAddr {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("bind {ip}:0: {e}"))
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
