//! What the tests need from the machine besides Rust and a Docker engine:
//! installed once per test run when it can be (as root, or through `sudo -n`,
//! with apt-get); otherwise every test stops at once with the command to run.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

/// A Debian package and how to tell it is there.
struct Need {
    package: &'static str,
    present: fn() -> bool,
}

fn on_path(program: &str) -> bool {
    which::which(program).is_ok()
}

const NEEDS: &[Need] = &[
    // Test images are built FROM scratch with the host's static busybox.
    Need {
        package: "busybox-static",
        present: || {
            ["/bin/busybox", "/usr/bin/busybox"]
                .iter()
                .any(|p| Path::new(p).exists())
        },
    },
    // Users who reach docker only through `sudo -n docker`.
    Need {
        package: "sudo",
        present: || on_path("sudo"),
    },
    // The probe tests copy the host's curl (and its libraries) into an image.
    Need {
        package: "curl",
        present: || on_path("curl"),
    },
    Need {
        package: "util-linux",
        present: || on_path("setpriv"),
    },
    Need {
        package: "passwd",
        present: || on_path("useradd"),
    },
    // Test hosts (tests/hosts.rs): network namespaces with their own sshd,
    // reached with OpenSSH's client.
    Need {
        package: "openssh-server",
        present: || Path::new("/usr/sbin/sshd").exists(),
    },
    Need {
        package: "openssh-client",
        present: || on_path("ssh") && on_path("ssh-keygen"),
    },
    Need {
        package: "iproute2",
        present: || on_path("ip"),
    },
    // One test host drops all traffic, as a dead host does.
    Need {
        package: "iptables",
        present: || on_path("iptables"),
    },
    // Compose releases run under the compose plugin when the machine has it
    // (.ci/compose-v2 installs it), else under Debian's Compose v1.
    Need {
        package: "docker-compose",
        present: || {
            on_path("docker-compose")
                || Command::new("docker")
                    .args(["compose", "version"])
                    .output()
                    .is_ok_and(|o| o.status.success())
        },
    },
    // The process tests look for leftovers with pgrep and pkill.
    Need {
        package: "procps",
        present: || on_path("pgrep") && on_path("pkill"),
    },
];

/// Panics, in every test that asks, when the machine cannot run the tests.
pub(crate) fn ready() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(why) = READY.get_or_init(prepare) {
        panic!("{why}");
    }
}

fn prepare() -> Result<(), String> {
    let root = nix::unistd::geteuid().is_root();
    let missing: Vec<&str> = NEEDS
        .iter()
        .filter(|n| !(n.present)())
        .map(|n| n.package)
        .collect();
    if !missing.is_empty() {
        let list = missing.join(" ");
        let sudo = !root
            && on_path("sudo")
            && Command::new("sudo")
                .args(["-n", "true"])
                .output()
                .is_ok_and(|o| o.status.success());
        if !(root || sudo) || !on_path("apt-get") {
            return Err(format!(
                "the tests need these Debian packages: {list}; run: sudo apt-get install -y {list}"
            ));
        }
        for args in [
            vec!["update", "-qq"],
            [&["install", "-y", "-qq"][..], &missing].concat(),
        ] {
            let mut command = if sudo {
                let mut c = Command::new("sudo");
                c.args(["-n", "apt-get"]);
                c
            } else {
                Command::new("apt-get")
            };
            let out = command
                .args(["-o", "DPkg::Lock::Timeout=300"])
                .args(&args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .output()
                .map_err(|e| format!("apt-get: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "apt-get {} failed: {}; run: sudo apt-get install -y {list}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
    }
    if !root {
        return Err(
            "the tests create users and switch to them: run them as root, e.g. `sudo -E env \"PATH=$PATH\" cargo test --locked`"
                .to_owned(),
        );
    }
    Ok(())
}
