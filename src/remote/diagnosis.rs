//! What ssh's and docker's own words say went wrong on a host, and what to do.

use super::target::{CONNECT_TIMEOUT, Target};
use crate::docker::{Failure, Probe};

/// What ssh's own words say went wrong, and what to do.
pub(super) fn ssh_failure(target: &Target, said: &str, timed_out: bool) -> (String, String) {
    let at = target.shown();
    let port = target.at.port.unwrap_or(22);
    let lower = said.to_ascii_lowercase();
    let last = said
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let secs = CONNECT_TIMEOUT.as_secs();
    if lower.contains("remote host identification has changed") {
        return (
            format!("the host key of {at} has CHANGED since it was recorded in known_hosts"),
            "someone may be intercepting the connection, or the host was reinstalled: check with its administrator before removing the old key (`ssh-keygen -R HOST`)".into(),
        );
    }
    if lower.contains("host key verification failed")
        || lower.contains("no ed25519 host key is known")
    {
        return (
            format!(
                "the host key of {at} is unknown here (not in known_hosts), and runner never accepts a key on its own"
            ),
            format!(
                "check the key's fingerprint with the host's administrator, then record it: `ssh-keyscan -p {port} {} >> ~/.ssh/known_hosts`, or connect once with `ssh` and answer yes",
                target.at.host
            ),
        );
    }
    let (what, help) = if timed_out
        || lower.contains("timed out")
        || lower.contains("connection timeout")
    {
        (
            format!("{at} does not answer (no connection within {secs}s)"),
            "check that the host is up and that port {port} is open to this machine"
                .replace("{port}", &port.to_string()),
        )
    } else if lower.contains("connection refused") {
        (
            format!("{at} refuses connections on port {port}"),
            "check that sshd runs on the host and listens on that port".to_owned(),
        )
    } else if lower.contains("no route to host") || lower.contains("network is unreachable") {
        (
            format!("{at} is unreachable from this machine ({last})"),
            "check the address and this machine's network".to_owned(),
        )
    } else if lower.contains("could not resolve hostname") {
        (
            format!("the name of {at} does not resolve ({last})"),
            "check the host name in the plan, or use its address".to_owned(),
        )
    } else if lower.contains("permission denied") {
        (
            format!("{at} refuses to log runner in ({last})"),
            "runner logs in without prompts (BatchMode): load the key in ssh-agent or name it in ~/.ssh/config (IdentityFile), and check the user".to_owned(),
        )
    } else if lower.contains("connection closed")
        || lower.contains("kex_exchange_identification")
        || lower.contains("connection reset")
    {
        (
            format!("{at} closed the connection before login ({last})"),
            "sshd may be refusing bursts of connections (MaxStartups) or this address; try again, or check the host's sshd log".to_owned(),
        )
    } else {
        (
            format!(
                "cannot connect to {at}: {}",
                if last.is_empty() { "ssh ended without a word" } else { last }
            ),
            "try `ssh` to that host by hand; set RUNNER_SSH_COMMAND if runner must use other ssh options".to_owned(),
        )
    };
    (what, help)
}

/// Whether ssh says the host refused a new session on the connection.
pub(super) fn session_refused(said: &str) -> bool {
    let said = said.to_ascii_lowercase();
    said.contains("open refused") || said.contains("administratively prohibited")
}

pub(super) const HELP_SESSIONS: &str = "runner needs a few sessions on its connection at once (the lock, \
     probes, and up to 6 docker connections through sudo): raise `MaxSessions` in the host's \
     sshd_config (the default is 10)";

pub(super) fn help_for(failure: Failure) -> String {
    match failure {
        Failure::PermissionDenied | Failure::SudoNotAllowed | Failure::SudoPassword => {
            "on the host, add the user to the docker group, or allow it `sudo -n docker` without a password (a sudoers rule for /usr/bin/docker)".into()
        }
        Failure::NotFound => "install Docker Engine on the host".into(),
        Failure::TimedOut => "the host answers ssh but docker does not answer in time: check its daemon; sudo on a host whose own name does not resolve waits for DNS (add it to /etc/hosts)".into(),
        _ => "start the Docker daemon on the host (`sudo systemctl start docker`)".into(),
    }
}

/// Why a host cannot be used.
#[derive(Debug)]
pub(crate) struct Problem {
    pub(crate) host: String,
    pub(crate) engine: String,
    pub(crate) what: String,
    pub(crate) help: String,
    pub(crate) tried: Vec<Probe>,
}

impl Problem {
    /// A problem of every host: nothing could be tried.
    pub(super) fn all(what: String, help: &str) -> Vec<Self> {
        vec![Problem {
            host: "(all)".into(),
            engine: String::new(),
            what,
            help: help.into(),
            tried: Vec::new(),
        }]
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host {} ({}): {}", self.host, self.engine, self.what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_ssh_failures() {
        let target = Target::new("ssh://deploy@web1", &["ssh".to_owned()]).unwrap();
        let (what, help) = ssh_failure(&target, "Host key verification failed.\n", false);
        assert!(
            what.contains("host key of deploy@web1 is unknown"),
            "{what}"
        );
        assert!(help.contains("ssh-keyscan"), "{help}");
        let (what, _) = ssh_failure(&target, "", true);
        assert!(what.contains("does not answer"), "{what}");
        let (what, _) = ssh_failure(
            &target,
            "ssh: connect to host web1 port 22: Connection refused\n",
            false,
        );
        assert!(what.contains("refuses connections on port 22"), "{what}");
    }
}
