//! How runner's ssh reaches a host: its address (`ssh://[user@]host[:port]`,
//! read by `plan::address`), the ssh command (`RUNNER_SSH_COMMAND`, else `ssh`),
//! and the options runner always gives it.
//!
//! Runner never lowers ssh's guard: whatever the user's ssh configuration or
//! `RUNNER_SSH_COMMAND` says, an unknown or changed host key is refused. Its
//! own options stand right after the ssh program, before anything else the
//! command or a configuration file gives: for ssh the first value of an
//! option wins.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::plan::address::{Address, Authority};

/// Overrides the ssh command (e.g. `ssh -F deploy/ssh_config`), as
/// `GIT_SSH_COMMAND` does for git.
pub(crate) const SSH_COMMAND_ENV: &str = "RUNNER_SSH_COMMAND";

/// How long the TCP connection and the SSH handshake may take.
pub(crate) const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long the lock's answer and the docker probes may take on a host.
pub(super) const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What no configuration may change: host keys are checked against
/// `known_hosts` and nothing else (no DNS), and none is ever accepted on its own.
const GUARD: [&str; 4] = [
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    "VerifyHostKeyDNS=no",
];

/// A host reached over ssh, and the ssh command that reaches it.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) at: Authority,
    /// The ssh command's words, runner's guard in place.
    command: Vec<String>,
}

impl Target {
    /// The target of an `ssh://` address, with `command` (from [`ssh_command`]).
    pub(crate) fn new(address: &str, command: &[String]) -> Option<Self> {
        match crate::plan::address::parse(address) {
            Ok(Address::Ssh(at)) => Some(Self {
                at,
                command: command.to_vec(),
            }),
            _ => None,
        }
    }

    /// As written: `deploy@web1:2222`.
    pub(crate) fn shown(&self) -> String {
        self.at.shown()
    }

    /// `ssh` with runner's options through the control socket, then `extra`
    /// options, then the host; a remote command goes after.
    pub(crate) fn argv(&self, control: &Path, extra: &[&str]) -> Vec<String> {
        let mut argv = self.command.clone();
        argv.extend(
            [
                "-S",
                &control.display().to_string(),
                "-o",
                "BatchMode=yes",
                "-o",
                &format!("ConnectTimeout={}", CONNECT_TIMEOUT.as_secs()),
            ]
            .map(str::to_owned),
        );
        if let Some(user) = &self.at.user {
            argv.extend(["-l".to_owned(), user.clone()]);
        }
        if let Some(port) = self.at.port {
            argv.extend(["-p".to_owned(), port.to_string()]);
        }
        argv.extend(extra.iter().map(|&e| e.to_owned()));
        argv.extend(["--".to_owned(), self.at.host.clone()]);
        argv
    }
}

/// The ssh command's words, runner's guard right after the ssh program:
/// `RUNNER_SSH_COMMAND`, else `ssh`. A `RUNNER_SSH_COMMAND` that does not read
/// as a command line is an error that names it, never a silent `ssh`.
pub(crate) fn ssh_command() -> Result<Vec<String>, String> {
    let words = match std::env::var(SSH_COMMAND_ENV) {
        Err(std::env::VarError::NotPresent) => vec!["ssh".to_owned()],
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(format!("{SSH_COMMAND_ENV} is not valid UTF-8"));
        }
        Ok(text) => match shlex::split(&text) {
            Some(words) if !words.is_empty() => words,
            Some(_) => return Err(format!("{SSH_COMMAND_ENV} is set but empty")),
            None => {
                return Err(format!(
                    "{SSH_COMMAND_ENV} `{}` does not read as a command line (an unclosed quote, or a trailing `\\`)",
                    printable(&text)
                ));
            }
        },
    };
    Ok(guarded(words))
}

/// `words` with runner's guard right after the ssh program (the first word
/// named `ssh`, else the first word: a wrapper such as `sshpass -p … ssh`
/// keeps its own words first).
fn guarded(mut words: Vec<String>) -> Vec<String> {
    let program = words
        .iter()
        .position(|w| Path::new(w).file_name().is_some_and(|n| n == "ssh"))
        .unwrap_or(0);
    let at = (program + 1).min(words.len());
    words.splice(at..at, GUARD.map(str::to_owned));
    words
}

/// Starts a helper process in a process group of its own (a Ctrl-C on the
/// terminal is runner's to handle), ended by the kernel when runner ends.
pub(super) fn spawn(
    argv: &[String],
    stdin: Stdio,
    stdout: Stdio,
    stderr: Stdio,
) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt as _;
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("empty command"))?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    // SAFETY: `set_pdeathsig` is a single prctl(2) call, async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                .map_err(std::io::Error::from)
        });
    }
    crate::process::spawn_helper(|| command.spawn(), |c| Some(c.id()))
}

/// Waits for a helper and lets its process id go.
pub(super) fn reap(child: &mut Child) {
    let _ = child.wait();
    crate::process::forget_helper(child.id());
}

/// Text from a host (or the operator's environment), fit for the operator's terminal: control characters
/// (escape sequences among them) are shown escaped, never sent raw.
pub(crate) fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A command for the host's shell, its words quoted.
pub(crate) fn remote(words: &[&str]) -> String {
    shlex::try_join(words.iter().copied()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_text_is_shown_with_its_control_characters_escaped() {
        assert_eq!(
            printable("run 1\u{1b}]0;pwned\u{7}\nby é"),
            "run 1\\u{1b}]0;pwned\\u{7}\\nby é"
        );
    }

    #[test]
    fn the_host_goes_after_a_double_dash() {
        let target = Target::new("ssh://deploy@web1:2222", &guarded(vec!["ssh".into()]))
            .expect("an ssh address");
        let argv = target.argv(Path::new("/s/c"), &[]);
        let tail: Vec<&str> = argv.iter().rev().take(2).map(String::as_str).collect();
        assert_eq!(tail, ["web1", "--"]);
        assert!(argv.windows(2).any(|w| w == ["-l", "deploy"]));
        assert!(argv.windows(2).any(|w| w == ["-p", "2222"]));
        assert_eq!(Target::new("tcp://web1:2376", &[]).map(|t| t.shown()), None);
    }

    #[test]
    fn the_guard_comes_before_anything_the_user_gives() {
        let words = guarded(vec![
            "ssh".into(),
            "-F".into(),
            "cfg".into(),
            "-o".into(),
            "StrictHostKeyChecking=no".into(),
        ]);
        assert_eq!(words[1..5], GUARD.map(str::to_owned));
        let wrapped = guarded(vec![
            "sshpass".into(),
            "-p".into(),
            "x".into(),
            "/usr/bin/ssh".into(),
            "-F".into(),
            "cfg".into(),
        ]);
        assert_eq!(wrapped[..4], ["sshpass", "-p", "x", "/usr/bin/ssh"]);
        assert_eq!(wrapped[4..8], GUARD.map(str::to_owned));
    }
}
