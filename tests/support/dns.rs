//! A real DNS server: Debian's dnsmasq (scripts/install-dnsmasq) on a free loopback port,
//! answering from a hosts file the test rewrites (SIGHUP reloads it), authoritative for
//! `.test` (names not in the file NXDOMAIN, missing types NODATA), with every name under
//! `nx.test` answered NXDOMAIN.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::{free_addr, print_log_tail};

/// The dnsmasq binary: `DNSMASQ_BIN`, else what scripts/install-dnsmasq prints (it installs
/// dnsmasq if missing).
pub fn dnsmasq_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("DNSMASQ_BIN") {
        return PathBuf::from(bin);
    }
    let out = std::process::Command::new(super::repo_root().join("scripts/install-dnsmasq"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/install-dnsmasq");
    assert!(out.status.success(), "scripts/install-dnsmasq failed");
    PathBuf::from(String::from_utf8(out.stdout).expect("path").trim())
}

pub struct Dnsmasq {
    pub addr: SocketAddr,
    /// The TTL of every answer from the hosts file.
    pub ttl: Duration,
    hosts: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Dnsmasq {
    /// Starts dnsmasq answering from `hosts` (lines of `ip name`) with a 1 s TTL.
    pub async fn start(hosts: &str) -> Dnsmasq {
        let dir = tempfile::tempdir().expect("temp dir");
        let hosts_file = dir.path().join("hosts");
        std::fs::write(&hosts_file, hosts).expect("write hosts");
        let mut d = Dnsmasq {
            addr: free_addr(),
            ttl: Duration::from_secs(1),
            hosts: hosts_file,
            log: dir.path().join("dnsmasq.log"),
            child: None,
            _dir: dir,
        };
        let log = std::fs::File::create(&d.log).expect("log file");
        let child = Command::new(dnsmasq_bin())
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--user=root",
                "--log-queries",
                "--log-facility=-",
                "--address=/nx.test/",
                // Authoritative for `.test`: a type a name has no record of (AAAA here) is
                // answered NODATA, as a real zone's server does, not REFUSED for want of an
                // upstream server.
                "--local=/test/",
            ])
            .arg(format!("--port={}", d.addr.port()))
            .arg(format!("--addn-hosts={}", d.hosts.display()))
            .arg(format!("--local-ttl={}", d.ttl.as_secs()))
            .arg(format!(
                "--pid-file={}",
                d._dir.path().join("pid").display()
            ))
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn dnsmasq");
        d.child = Some(child);
        let log = d.log.clone();
        super::wait::until("dnsmasq listening", Duration::from_secs(10), || {
            let log = log.clone();
            async move {
                std::fs::read_to_string(&log)
                    .ok()
                    .filter(|l| l.contains("started"))
                    .map(|_| ())
            }
        })
        .await;
        d
    }

    /// Rewrites the hosts file and has dnsmasq read it again (SIGHUP).
    pub fn set_hosts(&self, hosts: &str) {
        std::fs::write(&self.hosts, hosts).expect("write hosts");
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .expect("dnsmasq is running");
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -HUP dnsmasq");
    }

    /// Waits until dnsmasq answers `ip` for `name` (it reads its hosts file again on SIGHUP,
    /// in its own time), asking it the way flotilla does (flotilla's resolver, no cache): the
    /// moment a changed answer is out, from which a test times who follows it.
    pub async fn wait_answer(&self, name: &str, ip: std::net::IpAddr) {
        use flotilla::dns::Lookup as _;
        let lookup = flotilla::dns::HickoryLookup::new(&[self.addr]).expect("resolver");
        super::wait::until(
            &format!("dnsmasq to answer {ip} for {name}"),
            Duration::from_secs(10),
            || async {
                let answer = lookup.lookup(name).await.ok()?;
                answer.addresses.contains(&ip).then_some(())
            },
        )
        .await;
    }

    /// Stops dnsmasq: every lookup fails from now on.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
            let _ = child.wait().await;
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_log_tail("dnsmasq", &self.log, 40);
        }
    }
}
