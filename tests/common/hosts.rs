//! Test hosts: network namespaces on a bridge of their own, each with its own
//! dockerd and sshd (`benches/hosts/hosts.sh`), reached as root with a key made
//! for them. Their names and addresses are fixed (rth1…, 10.77.0.11…), so tests
//! that use them take turns, across test binaries too; every trace goes when
//! the value is dropped, even after a failed assertion.

use std::fmt::Write as _;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Output};

use nix::fcntl::{Flock, FlockArg};

use super::repo;

pub(crate) struct Hosts {
    pub(crate) dir: PathBuf,
    pub(crate) count: usize,
    _turn: Flock<File>,
}

impl Hosts {
    /// Starts `count` hosts (at most 9), after the tests before have stopped theirs.
    pub(crate) fn up(count: usize) -> Self {
        Self::up_with(count, "")
    }

    /// [`Hosts::up`], with `sshd_config` lines added on every host.
    pub(crate) fn up_with(count: usize, sshd_extra: &str) -> Self {
        super::machine::ready();
        let turn = File::create("/tmp/runner-test-hosts.lock").expect("the hosts' turn file");
        let turn = Flock::lock(turn, FlockArg::LockExclusive).expect("wait for the hosts' turn");
        let dir = std::env::temp_dir().join(format!("rt-hosts-{}", std::process::id()));
        let script = repo().join("benches/hosts/hosts.sh");
        // Whatever a killed test run left.
        let _ = Command::new("sh")
            .arg(&script)
            .arg("down")
            .arg(&dir)
            .output();
        let hosts = Self {
            dir,
            count,
            _turn: turn,
        };
        let out = Command::new("sh")
            .arg(&script)
            .arg("up")
            .arg(count.to_string())
            .arg(&hosts.dir)
            .env("SSHD_EXTRA", sshd_extra)
            .output()
            .expect("run benches/hosts/hosts.sh");
        assert!(
            out.status.success(),
            "the test hosts did not come up: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        hosts
    }

    /// The ssh command runner must use to reach them (`RUNNER_SSH_COMMAND`).
    pub(crate) fn ssh_command(&self) -> String {
        format!("ssh -F {}", self.dir.join("ssh_config").display())
    }

    /// The address of host `i` (1-based).
    pub(crate) fn address(i: usize) -> String {
        format!("10.77.0.1{i}")
    }

    /// `[hosts.rthI]` for each host, reached as `user`, with role `web`.
    pub(crate) fn section(&self, user: &str) -> String {
        let mut out = String::new();
        for i in 1..=self.count {
            let _ = write!(
                out,
                "[hosts.rth{i}]\ndocker = \"ssh://{user}@{}\"\nroles = [\"web\"]\n",
                Self::address(i)
            );
        }
        out
    }

    /// The socket of host `i`'s own engine, for checks made from the test.
    fn socket(&self, i: usize) -> PathBuf {
        self.dir.join(format!("rth{i}/run/docker.sock"))
    }

    /// `docker ARGS` on host `i`'s engine.
    pub(crate) fn docker(&self, i: usize, args: &[&str]) -> Output {
        Command::new("docker")
            .args(args)
            .env(
                "DOCKER_HOST",
                format!("unix://{}", self.socket(i).display()),
            )
            .output()
            .expect("run docker")
    }

    /// Host `i`'s own /run (its /run/lock among it).
    pub(crate) fn run_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("rth{i}/run"))
    }

    /// Host `i`'s lock folder for `plan` in its /run/lock.
    pub(crate) fn lock_of(&self, i: usize, plan: &str) -> PathBuf {
        self.run_dir(i).join(format!("lock/runner-{plan}.lock"))
    }
}

/// Whether some process holds a `flock` on `path` now (the kernel's table).
pub(crate) fn flocked(path: &std::path::Path) -> bool {
    flock_holder(path).is_some()
}

/// The pid of the process that holds a `flock` on `path` (the kernel's table).
pub(crate) fn flock_holder(path: &std::path::Path) -> Option<i32> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::symlink_metadata(path).ok()?;
    let id = format!(
        "{:02x}:{:02x}:{}",
        nix::sys::stat::major(meta.dev()),
        nix::sys::stat::minor(meta.dev()),
        meta.ino()
    );
    std::fs::read_to_string("/proc/locks")
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&id.as_str()))
                .then(|| f.get(4)?.parse().ok())
                .flatten()
        })
}

/// The private folders runner made for its ssh sockets, still in the
/// temporary folder (each run removes its own).
pub(crate) fn socket_folders() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(std::env::temp_dir())
        .expect("temp dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("runner-ssh-"))
        .collect();
    names.sort();
    names
}

impl Hosts {}

impl Drop for Hosts {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .arg(repo().join("benches/hosts/hosts.sh"))
            .arg("down")
            .arg(&self.dir)
            .output();
    }
}
