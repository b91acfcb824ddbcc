//! The Debian package is checked by installing it: cargo-deb packs the binary this test run
//! built (`--profile dev --no-build`; scripts/package-deb packs the dist one the same way),
//! `dpkg --root` installs it into an empty system tree, and what it installed runs:
//! `flotilla --version`, `flotilla validate` of the shipped /etc/flotilla, and
//! `systemd-analyze verify` of the shipped unit.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::repo_root;

/// cargo-deb from `$CARGO_DEB`, else the one scripts/install-cargo-deb installs (scripts/test
/// runs it). Missing cargo-deb is a failure, never a skip.
fn cargo_deb() -> PathBuf {
    if let Some(path) = std::env::var_os("CARGO_DEB") {
        return PathBuf::from(path);
    }
    let out = Command::new(repo_root().join("scripts/install-cargo-deb"))
        .output()
        .expect("scripts/install-cargo-deb");
    assert!(
        out.status.success(),
        "scripts/install-cargo-deb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// Builds the .deb of this test run's binary into `dir`; its path.
fn build_deb(dir: &Path) -> PathBuf {
    run(Command::new(cargo_deb())
        .args([
            "--no-build",
            "--profile",
            "dev",
            "--fast",
            "--locked",
            "--output",
        ])
        .arg(dir)
        .current_dir(repo_root()));
    let mut debs: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("output dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(
        debs.len(),
        1,
        "one .deb expected in {}: {debs:?}",
        dir.display()
    );
    debs.remove(0)
}

#[test]
fn the_deb_installs_a_working_flotilla_with_its_unit_and_config() {
    let work = tempfile::tempdir().expect("temp dir");
    let deb = build_deb(work.path());

    let info = text(&run(Command::new("dpkg-deb").arg("--info").arg(&deb)));
    assert!(info.contains("Package: flotilla"), "{info}");
    assert!(
        info.contains("Conffiles") || info.contains("conffiles"),
        "{info}"
    );
    let contents = text(&run(Command::new("dpkg-deb").arg("--contents").arg(&deb)));
    for path in [
        "./usr/bin/flotilla",
        "./usr/lib/systemd/system/flotilla.service",
        "./etc/flotilla/flotilla.yaml",
        "./usr/share/doc/flotilla/examples/envoy.service",
    ] {
        assert!(
            contents.contains(path),
            "{path} missing from the package:\n{contents}"
        );
    }

    // An empty system tree with its own dpkg database: installing there touches nothing of
    // the machine running the tests.
    let root = work.path().join("root");
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(dir)).expect("dpkg dirs");
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").expect("dpkg status");
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args([
            "--force-depends",
            "--force-not-root",
            "--force-script-chrootless",
        ])
        .arg("--install")
        .arg(&deb));
    let listed = text(&run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--listfiles", "flotilla"])));
    assert!(listed.contains("/usr/bin/flotilla"), "{listed}");

    let flotilla = root.join("usr/bin/flotilla");
    let version = text(&run(Command::new(&flotilla).arg("--version")));
    assert_eq!(
        version.trim(),
        format!("flotilla {}", env!("CARGO_PKG_VERSION")),
        "installed flotilla --version"
    );
    let validated = text(&run(Command::new(&flotilla)
        .arg("validate")
        .arg(root.join("etc/flotilla"))));
    assert!(
        validated.contains("ok (1 clusters, 1 listeners"),
        "{validated}"
    );

    // The unit as installed, its ExecStart pointing into the tree (verify needs it to exist).
    let unit = std::fs::read_to_string(root.join("usr/lib/systemd/system/flotilla.service"))
        .expect("installed unit");
    assert!(unit.contains("ExecStart=/usr/bin/flotilla serve --config /etc/flotilla"));
    let units = work.path().join("units");
    std::fs::create_dir_all(&units).expect("units dir");
    std::fs::write(
        units.join("flotilla.service"),
        unit.replace("/usr/bin/flotilla", &flotilla.display().to_string()),
    )
    .expect("unit copy");
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(units.join("flotilla.service"))
        .output()
        .expect("systemd-analyze (Debian package systemd; scripts/test installs it)");
    let said = text(&verify);
    assert!(
        verify.status.success() && said.trim().is_empty(),
        "systemd-analyze verify of the installed unit:\n{said}"
    );
}
