//! Docker as a value handed to kinds: its command words and how they were
//! decided (the sudo decision), how values travel into a container, how a command
//! in a container is run, diagnosed and ended. One per run today; one per host
//! when a plan has several.
//!
//! Discovery only runs read-only commands (`docker version`, `sudo -n docker
//! version`), bounded in time with stdin closed, so it never prompts and never hangs.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::engine::{Attempt, End};
use crate::plan::model::SudoMode;
use crate::process::{self, Ran, Spec};

/// How long a helper docker command (diagnosis, cleanup) may take.
const HELPER_TIMEOUT: Duration = Duration::from_secs(8);

/// How long one discovery probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// sudo resets the environment; these keep docker talking to the same daemon.
pub(crate) const SUDO_PRESERVE: &str = "DOCKER_HOST,DOCKER_CONTEXT,DOCKER_CONFIG";

/// The docker command for a run, and how it was chosen.
#[derive(Debug, Clone, Serialize)]
pub struct Docker {
    /// The command words, e.g. `["docker"]` or `["sudo", "-n", …, "docker"]`.
    pub command: Vec<String>,
    /// Whether the daemon answered through `command`.
    pub available: bool,
    /// Why this command, in one sentence.
    pub reason: String,
    /// Every probe that ran, in order.
    pub tried: Vec<Probe>,
    /// What to do when docker is unavailable.
    pub help: Option<String>,
    /// The compose command, decided when the plan uses `{{ compose }}`.
    pub compose: Option<Compose>,
    /// What every docker command for this engine needs in its environment: a
    /// host's `DOCKER_HOST` (empty for the local engine).
    pub env: Vec<(String, String)>,
}

/// The compose command for a run, and how it was chosen: `docker compose` if
/// the plugin answers, else `docker-compose`, through sudo when docker is.
#[derive(Debug, Clone, Serialize)]
pub struct Compose {
    pub command: Vec<String>,
    pub available: bool,
    /// What it answered to `version --short` (`2.40.3`, `1.29.2`).
    pub version: Option<String>,
    pub reason: String,
    pub tried: Vec<Probe>,
    pub help: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub command: String,
    pub result: String,
}

/// What a probe's failure says about the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    PermissionDenied,
    DaemonDown,
    /// sudo wants a password (runner runs it with `-n`, so it never asks).
    SudoPassword,
    /// sudo does not let this user run docker.
    SudoNotAllowed,
    /// sudo refuses to keep `DOCKER_HOST`, `DOCKER_CONTEXT` or `DOCKER_CONFIG`.
    SudoEnv,
    NotFound,
    TimedOut,
    Other,
}

pub(crate) fn classify(stderr: &str) -> Failure {
    let s = stderr.to_ascii_lowercase();
    if s.contains("not allowed to set the following environment variables")
        || s.contains("not allowed to preserve the environment")
    {
        Failure::SudoEnv
    } else if s.contains("a password is required") || s.contains("a terminal is required") {
        Failure::SudoPassword
    } else if s.contains("is not allowed to")
        || s.contains("may not run sudo")
        || s.contains("not in the sudoers")
    {
        Failure::SudoNotAllowed
    } else if s.contains("permission denied") {
        Failure::PermissionDenied
    } else if s.contains("cannot connect to the docker daemon")
        || s.contains("is the docker daemon running")
        || s.contains("connection refused")
        || s.contains("no such file or directory")
    {
        Failure::DaemonDown
    } else {
        Failure::Other
    }
}

pub(crate) enum Outcome {
    Answered(String),
    Failed(Failure, String),
}

/// Runs `words version` (with `env`), notes it in `tried` as `shown`, and
/// reports the server version or why it failed.
pub(crate) fn probe_into(
    words: &[String],
    env: &[(String, String)],
    tried: &mut Vec<Probe>,
    shown: &str,
) -> Outcome {
    let outcome = probe_with(words, env, &["version", "--format", "{{.Server.Version}}"]);
    tried.push(Probe {
        command: shown.to_owned(),
        result: match &outcome {
            Outcome::Answered(version) => format!("answered: server {version}"),
            Outcome::Failed(_, why) => why.clone(),
        },
    });
    outcome
}

/// Runs `words` then `version_args` and reports the version it prints or why
/// it failed.
fn probe_with(words: &[String], env: &[(String, String)], version_args: &[&str]) -> Outcome {
    let Some(program) = words.first() else {
        return Outcome::Failed(Failure::NotFound, "empty command".into());
    };
    let mut argv: Vec<String> = words.to_vec();
    argv.extend(version_args.iter().map(|a| (*a).to_owned()));
    match briefly_with(&argv, env, PROBE_TIMEOUT) {
        Err(Brief::NotFound) => {
            Outcome::Failed(Failure::NotFound, format!("`{program}` not found"))
        }
        Err(Brief::Other(e)) => Outcome::Failed(Failure::Other, e),
        Err(Brief::TimedOut) => Outcome::Failed(
            Failure::TimedOut,
            format!("no answer within {}s", PROBE_TIMEOUT.as_secs()),
        ),
        Ok(output) => {
            let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
            if output.status.success() && !stdout.is_empty() {
                Outcome::Answered(stdout)
            } else {
                let line = stderr
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("no output")
                    .to_owned();
                let code = output
                    .status
                    .code()
                    .map_or_else(|| "killed".to_owned(), |c| format!("exit {c}"));
                Outcome::Failed(classify(&stderr), format!("{line} ({code})"))
            }
        }
    }
}

/// Why a brief command gave no output.
#[derive(Debug)]
pub(crate) enum Brief {
    NotFound,
    TimedOut,
    Other(String),
}

impl std::fmt::Display for Brief {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Brief::NotFound => f.write_str("the program is not installed"),
            Brief::TimedOut => f.write_str("no answer in time"),
            Brief::Other(why) => f.write_str(why),
        }
    }
}

/// Runs a short read-only command, stdin closed, output captured, killed past
/// `timeout`: for probes and checks made outside a run.
pub(crate) fn briefly(argv: &[String], timeout: Duration) -> Result<std::process::Output, Brief> {
    briefly_with(argv, &[], timeout)
}

/// [`briefly`], with these variables added to its environment.
pub(crate) fn briefly_with(
    argv: &[String],
    env: &[(String, String)],
    timeout: Duration,
) -> Result<std::process::Output, Brief> {
    briefly_in(argv, env, None, timeout)
}

/// [`briefly_with`], in the folder `dir`.
pub(crate) fn briefly_in(
    argv: &[String],
    env: &[(String, String)],
    dir: Option<&std::path::Path>,
    timeout: Duration,
) -> Result<std::process::Output, Brief> {
    let Some((program, args)) = argv.split_first() else {
        return Err(Brief::Other("empty command".into()));
    };
    let mut expression = duct::cmd(program, args);
    if let Some(dir) = dir {
        expression = expression.dir(dir);
    }
    for (name, value) in env {
        expression = expression.env(name, value);
    }
    let handle = expression
        .stdin_null()
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .start()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Brief::NotFound
            } else {
                Brief::Other(e.to_string())
            }
        })?;
    match handle.wait_timeout(timeout) {
        Ok(Some(output)) => Ok(output.clone()),
        Ok(None) => {
            let _ = handle.kill();
            Err(Brief::TimedOut)
        }
        Err(e) => Err(Brief::Other(e.to_string())),
    }
}

pub(crate) fn sudo_words() -> Vec<String> {
    [
        "sudo",
        "-n",
        &format!("--preserve-env={SUDO_PRESERVE}"),
        "docker",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn display(words: &[String]) -> String {
    crate::plan::template::shell_join(words)
}

const HELP_GROUP: &str = "add your user to the docker group (`sudo usermod -aG docker $USER`, then log in again), \
     or allow passwordless sudo for docker, or run `sudo -v` first; or set DOCKER_CMD";
const HELP_ENV_KEEP: &str = "let sudo keep them for docker: add `Defaults env_keep += \"DOCKER_HOST DOCKER_CONTEXT DOCKER_CONFIG\"` \
     to a file under /etc/sudoers.d (edit it with visudo); or unset them; or set DOCKER_CMD";
const HELP_DAEMON: &str = "start the Docker daemon (`sudo systemctl start docker`) or point DOCKER_HOST at it; or set DOCKER_CMD";

/// The words of a non-empty `DOCKER_CMD` (or `COMPOSE_CMD`).
fn env_words(docker_cmd_env: Option<&str>) -> Option<Vec<String>> {
    docker_cmd_env
        .and_then(shlex::split)
        .filter(|w| !w.is_empty())
}

/// The docker command without probing: `DOCKER_CMD` if set, else `docker`.
pub(crate) fn unprobed(docker_cmd_env: Option<&str>, reason: &str) -> Docker {
    Docker {
        compose: None,
        env: Vec::new(),
        command: env_words(docker_cmd_env).unwrap_or_else(|| vec!["docker".to_owned()]),
        available: true,
        reason: reason.to_owned(),
        tried: Vec::new(),
        help: None,
    }
}

/// Decides the docker command: `DOCKER_CMD` if set; else `docker` if the daemon
/// answers; else `sudo -n docker` if docker was refused for permission and sudo
/// answers without a password (`[docker] sudo` can force either way).
pub(crate) fn discover(mode: SudoMode, docker_cmd_env: Option<&str>) -> Docker {
    let mut tried = Vec::new();
    let run = |words: &[String], tried: &mut Vec<Probe>| {
        probe_into(words, &[], tried, &format!("{} version", display(words)))
    };

    if let Some(words) = env_words(docker_cmd_env) {
        let outcome = run(&words, &mut tried);
        let available = matches!(outcome, Outcome::Answered(_));
        return Docker {
            compose: None,
            env: Vec::new(),
            reason: "DOCKER_CMD is set".into(),
            help: (!available).then(|| {
                "DOCKER_CMD does not reach a Docker daemon: fix it or unset it".to_owned()
            }),
            command: words,
            available,
            tried,
        };
    }

    let direct = vec!["docker".to_owned()];
    if which::which("docker").is_err() {
        tried.push(Probe {
            command: "which docker".into(),
            result: "not found on PATH".into(),
        });
        return Docker {
            compose: None,
            env: Vec::new(),
            command: direct,
            available: false,
            reason: "docker is not installed (not on PATH)".into(),
            tried,
            help: Some("install Docker Engine, or set DOCKER_CMD to the docker command".into()),
        };
    }
    let sudo = sudo_words();
    if mode == SudoMode::Always {
        let outcome = run(&sudo, &mut tried);
        return sudo_result(sudo, &outcome, tried, "[docker] sudo = \"always\"");
    }
    match run(&direct, &mut tried) {
        Outcome::Answered(_) => Docker {
            command: direct,
            available: true,
            reason: "the daemon answers `docker version`".into(),
            tried,
            help: None,
            compose: None,
            env: Vec::new(),
        },
        Outcome::Failed(Failure::PermissionDenied, _) if mode == SudoMode::Auto => {
            if which::which("sudo").is_err() {
                return Docker {
                    compose: None,
                    env: Vec::new(),
                    command: direct,
                    available: false,
                    reason: "docker is refused for permission and sudo is not installed".into(),
                    tried,
                    help: Some(HELP_GROUP.into()),
                };
            }
            let outcome = run(&sudo, &mut tried);
            sudo_result(sudo, &outcome, tried, "docker is refused for permission")
        }
        Outcome::Failed(failure, _) => Docker {
            compose: None,
            env: Vec::new(),
            command: direct,
            available: false,
            reason: match failure {
                Failure::PermissionDenied => {
                    "docker is refused for permission and `[docker] sudo = \"never\"`".into()
                }
                Failure::DaemonDown => "the Docker daemon is not reachable".into(),
                Failure::TimedOut => "the Docker daemon does not answer".into(),
                _ => "docker does not work".into(),
            },
            tried,
            help: Some(match failure {
                Failure::PermissionDenied => HELP_GROUP.into(),
                _ => HELP_DAEMON.into(),
            }),
        },
    }
}

fn sudo_result(sudo: Vec<String>, outcome: &Outcome, tried: Vec<Probe>, why: &str) -> Docker {
    match *outcome {
        Outcome::Answered(_) => Docker {
            command: sudo,
            available: true,
            reason: format!("{why}; `sudo -n docker version` answers without a password"),
            tried,
            help: None,
            compose: None,
            env: Vec::new(),
        },
        Outcome::Failed(failure, _) => Docker {
            compose: None,
            env: Vec::new(),
            command: sudo,
            available: false,
            reason: format!(
                "{why}, and sudo {}",
                match failure {
                    Failure::SudoPassword => "needs a password (runner never prompts)",
                    Failure::SudoNotAllowed => "does not let this user run docker",
                    Failure::SudoEnv =>
                        "refuses to keep DOCKER_HOST, DOCKER_CONTEXT or DOCKER_CONFIG, which runner passes on",
                    Failure::DaemonDown => "did not reach the daemon either",
                    _ => "failed too",
                }
            ),
            tried,
            help: Some(match failure {
                Failure::DaemonDown => HELP_DAEMON.into(),
                Failure::SudoEnv => HELP_ENV_KEEP.into(),
                _ => HELP_GROUP.into(),
            }),
        },
    }
}

/// What `docker exec` needs besides the container and the command.
#[derive(Debug, Default, Clone)]
pub(crate) struct ExecOptions<'a> {
    pub(crate) user: Option<&'a str>,
    pub(crate) workdir: Option<&'a str>,
    /// Names of variables passed into the container. Their values never go on
    /// the command line: they travel in the docker client's environment
    /// (`--env NAME`), or, through sudo (which drops that environment and refuses
    /// to keep names it was not told about), on docker's stdin (`--env-file
    /// /dev/stdin`): never on disk.
    pub(crate) env: Vec<&'a str>,
    /// Also pass runner's own variables ([`RUNNER_ENV`]) into the container.
    pub(crate) runner_env: bool,
}

/// What runner puts in the environment of a command it runs in a container.
/// `RUNNER_EXEC_ID` marks the command's processes, so they can be found and
/// ended inside the container when the step times out.
pub(crate) const RUNNER_ENV: [&str; 4] = [
    "RUNNER_RUN_ID",
    "RUNNER_STEP",
    "RUNNER_ATTEMPT",
    "RUNNER_EXEC_ID",
];

impl<'a> ExecOptions<'a> {
    /// Also passes the variables that carry a script's values.
    #[must_use]
    pub(crate) fn carrying(mut self, bound: &'a [(String, String)]) -> Self {
        self.env.extend(bound.iter().map(|(k, _)| k.as_str()));
        self
    }

    /// Every variable passed into the container.
    pub(crate) fn names(&self) -> Vec<&str> {
        let mut names = self.env.clone();
        if self.runner_env {
            names.extend(RUNNER_ENV);
        }
        names
    }
}

/// Whether the docker words run docker through sudo.
fn is_sudo(docker: &[String]) -> bool {
    docker
        .first()
        .is_some_and(|w| std::path::Path::new(w).file_name() == Some("sudo".as_ref()))
}

/// Through sudo, where docker reads the values of an exec's variables.
const VALUES_ON_STDIN: &str = "/dev/stdin";

/// `docker exec [--user=U] [--workdir=W] [--env NAME…|--env-file /dev/stdin] --
/// CONTAINER ARGV…`. Values stand where no option parser reads them: joined to
/// their option, or after `--`.
fn exec_argv(
    docker: &[String],
    container: &str,
    options: &ExecOptions<'_>,
    argv: &[String],
) -> Vec<String> {
    let names = options.names();
    let mut out = docker.to_vec();
    out.push("exec".into());
    if let Some(user) = options.user {
        out.push(format!("--user={user}"));
    }
    if let Some(workdir) = options.workdir {
        out.push(format!("--workdir={workdir}"));
    }
    if is_sudo(docker) && !names.is_empty() {
        out.extend(["--env-file".to_owned(), VALUES_ON_STDIN.to_owned()]);
    } else {
        for name in names {
            out.extend(["--env".to_owned(), name.to_owned()]);
        }
    }
    out.extend(["--".to_owned(), container.to_owned()]);
    out.extend(argv.iter().cloned());
    out
}

/// The words of `docker-compose` run the way docker is: `DOCKER_CMD`'s or
/// sudo's words before it when docker's last word is the docker program.
fn standalone_compose(docker: &[String]) -> Vec<String> {
    match docker.split_last() {
        Some((last, before)) if last == "docker" || last.ends_with("/docker") => {
            let mut words = before.to_vec();
            words.push(format!("{last}-compose"));
            words
        }
        _ => vec!["docker-compose".to_owned()],
    }
}

const HELP_COMPOSE: &str = "install the compose plugin (`apt-get install docker-compose-plugin` from Docker's \
     repository) or the standalone `docker-compose` (`apt-get install docker-compose`)";

/// Decides the compose command once for the run: `COMPOSE_CMD` if set (to
/// pick one where both are installed); else the plugin through docker's own
/// words, else the standalone program run the same way (through sudo when
/// docker is), in the order docker itself prefers them. Read-only (`version`),
/// bounded in time, never prompts.
pub(crate) fn discover_compose(docker: &Docker, compose_cmd_env: Option<&str>) -> Compose {
    let mut tried = Vec::new();
    let plugin = docker.plugin_compose();
    if !docker.available {
        return Compose {
            command: plugin,
            available: false,
            version: None,
            reason: "not probed: docker itself is not reachable".into(),
            tried,
            help: docker.help.clone(),
        };
    }
    let probe = |words: &[String], tried: &mut Vec<Probe>| {
        let outcome = probe_with(words, &docker.env, &["version", "--short"]);
        let result = match &outcome {
            Outcome::Answered(version) => format!("answered: {version}"),
            Outcome::Failed(_, why) => why.clone(),
        };
        tried.push(Probe {
            command: format!("{} version --short", display(words)),
            result,
        });
        match outcome {
            Outcome::Answered(version) => Some(version),
            Outcome::Failed(..) => None,
        }
    };
    if let Some(words) = env_words(compose_cmd_env) {
        let version = probe(&words, &mut tried);
        let available = version.is_some();
        return Compose {
            command: words,
            available,
            version,
            reason: "COMPOSE_CMD is set".into(),
            tried,
            help: (!available)
                .then(|| "COMPOSE_CMD does not answer `version`: fix it or unset it".to_owned()),
        };
    }
    let standalone = standalone_compose(&docker.command);
    for (words, why) in [
        (
            &plugin,
            "the compose plugin answers `docker compose version`",
        ),
        (
            &standalone,
            "the plugin does not answer; `docker-compose version` does",
        ),
    ] {
        if let Some(version) = probe(words, &mut tried) {
            return Compose {
                command: words.clone(),
                available: true,
                version: Some(version),
                reason: why.to_owned(),
                tried,
                help: None,
            };
        }
    }
    Compose {
        command: plugin,
        available: false,
        version: None,
        reason: "neither `docker compose` nor `docker-compose` answers".into(),
        tried,
        help: Some(HELP_COMPOSE.into()),
    }
}

impl Docker {
    /// The compose words: as decided, else the plugin's (in a preview of a plan
    /// that does not use compose).
    pub(crate) fn compose_command(&self) -> Vec<String> {
        self.compose
            .as_ref()
            .map_or_else(|| self.plugin_compose(), |c| c.command.clone())
    }

    /// `docker compose`, through this docker command.
    fn plugin_compose(&self) -> Vec<String> {
        let mut words = self.command.clone();
        words.push("compose".to_owned());
        words
    }

    /// Whether docker runs through sudo.
    pub(crate) fn is_sudo(&self) -> bool {
        is_sudo(&self.command)
    }

    /// `docker exec [-u U] [-w W] [-e NAME…|--env-file F] CONTAINER ARGV…`.
    pub(crate) fn exec_argv(
        &self,
        container: &str,
        options: &ExecOptions<'_>,
        argv: &[String],
    ) -> Vec<String> {
        exec_argv(&self.command, container, options, argv)
    }

    /// Through sudo, the variables whose values docker reads on its stdin.
    pub(crate) fn values_on_stdin(&self, names: &[&str]) -> Option<Vec<String>> {
        (self.is_sudo() && !names.is_empty()).then(|| names.iter().map(|&n| n.to_owned()).collect())
    }

    /// Runs `docker exec` (`spec`) for an attempt. When docker refuses it (no such
    /// container, not running), the reason names the container's state and
    /// similar names; when the attempt is cancelled, the command is also ended
    /// inside the container (killing the client leaves it running), and the
    /// detail says what became of it.
    pub(crate) async fn exec(
        &self,
        spec: &Spec,
        container: &str,
        marker: &str,
        attempt: &Attempt,
    ) -> (Ran, Option<String>) {
        let mut ran = process::run(spec, Some(&attempt.output), &attempt.cancel).await;
        if attempt.cancel.is_cancelled() {
            let detail = self.end_inside(container, marker, &spec.dir).await;
            return (ran, Some(detail));
        }
        if matches!(ran.end, End::Exited(_))
            && ran
                .stderr
                .iter()
                .find(|l| !l.trim().is_empty())
                .is_some_and(|l| refused(l))
        {
            ran.end = End::Refused(format!(
                "docker refused the exec: {}",
                self.diagnose(container, &spec.dir).await
            ));
        }
        (ran, None)
    }

    /// Runs a short docker command: its stdout, or why it failed.
    async fn helper(&self, args: &[&str], dir: &Path) -> Result<String, String> {
        let mut argv = self.command.clone();
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        process::output(argv, &self.env, dir, HELPER_TIMEOUT).await
    }

    /// Why a container cannot run a command: its state, and running containers
    /// with similar names (a typo, or a compose project prefix).
    pub(crate) async fn diagnose(&self, name: &str, dir: &Path) -> String {
        let state = self
            .helper(
                &["inspect", "--format", "{{.State.Status}}", "--", name],
                dir,
            )
            .await;
        let mut message = match state {
            Ok(state) => format!(
                "container `{name}` is not running (its state: {})",
                state.trim()
            ),
            Err(_) => format!("there is no container named `{name}`"),
        };
        if let Ok(running) = self.helper(&["ps", "--format", "{{.Names}}"], dir).await {
            let similar: Vec<&str> = running
                .lines()
                .map(str::trim)
                .filter(|other| !other.is_empty() && *other != name)
                .filter(|other| {
                    other.contains(name)
                        || name.contains(*other)
                        || strsim::jaro_winkler(name, other) >= 0.85
                })
                .take(5)
                .collect();
            if similar.is_empty() {
                message.push_str("; no running container has a similar name");
            } else {
                message.push_str("; running containers with similar names: ");
                message.push_str(&similar.join(", "));
            }
        }
        message
    }

    /// Ends, inside the container, the command that carries `marker`: its
    /// processes, every process of their session (a `docker exec` is a session
    /// of its own), and their descendants, whatever their environment.
    pub(crate) async fn end_inside(&self, container: &str, marker: &str, dir: &Path) -> String {
        let result = self
            .helper(
                &[
                    "exec", "--", container, "sh", "-c", END_INSIDE, "sh", marker,
                ],
                dir,
            )
            .await;
        let name = container;
        match result.as_deref().map(str::trim) {
            Ok("none") => format!("nothing of it was left running in container `{name}`"),
            Ok("ended") => format!("its process in container `{name}` was ended"),
            Ok("killed") => format!("its process in container `{name}` was killed (SIGKILL)"),
            Ok(other) => format!("ending its process in container `{name}` said: {other}"),
            Err(why) => format!(
                "its process in container `{name}` may still run: it could not be ended ({why})"
            ),
        }
    }
}

/// Whether docker's first stderr line says the container cannot take an exec.
pub(crate) fn refused(line: &str) -> bool {
    line.contains("No such container") || line.contains("is not running")
}

/// Ends, inside a container, the processes of a command: those that carry its
/// marker, every process in their sessions but the container's own, and their
/// descendants. Needs `sh` in the container (busybox or coreutils for the rest).
const END_INSIDE: &str = r#"m="RUNNER_EXEC_ID=$1"; self=$$
st() { s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; echo "${s##*) }"; }
marked=""
for d in /proc/[0-9]*; do
  p=${d#/proc/}; [ "$p" = "$self" ] && continue
  if { tr '\0' '\n' < "$d/environ"; } 2>/dev/null | grep -qxF "$m"; then marked="$marked $p"; fi
done
[ -z "$marked" ] && { echo none; exit 0; }
set -- $(st 1); init=$4
sids=""
for p in $marked; do
  s=$(st "$p") || continue; set -- $s
  [ "$4" != "$init" ] && [ "$4" != 0 ] && sids="$sids $4"
done
victims="$marked "
changed=1
while [ $changed = 1 ]; do
  changed=0
  for d in /proc/[0-9]*; do
    p=${d#/proc/}; [ "$p" = "$self" ] && continue
    case "$victims" in *" $p "*) continue ;; esac
    s=$(st "$p") || continue; set -- $s
    hit=0
    case "$victims" in *" $2 "*) hit=1 ;; esac
    for s in $sids; do [ "$4" = "$s" ] && hit=1; done
    if [ $hit = 1 ]; then victims="$victims$p "; changed=1; fi
  done
done
kill -TERM $victims 2>/dev/null
i=0
while [ $i -lt 30 ]; do
  alive=""
  for p in $victims; do
    # A zombie is ended, even if no parent reaps it (e.g. `sleep` as PID 1).
    s=$(st "$p") || continue; set -- $s
    [ "$1" = Z ] || alive="$alive $p"
  done
  [ -z "$alive" ] && { echo ended; exit 0; }
  sleep 0.1; i=$((i+1))
done
kill -KILL $alive 2>/dev/null; echo killed"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_docker_errors() {
        assert_eq!(
            classify(
                "permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock"
            ),
            Failure::PermissionDenied
        );
        assert_eq!(
            classify(
                "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"
            ),
            Failure::DaemonDown
        );
        assert_eq!(
            classify("sudo: a password is required"),
            Failure::SudoPassword
        );
        assert_eq!(
            classify(
                "Sorry, user deploy is not allowed to execute '/usr/bin/docker version' as root on web1."
            ),
            Failure::SudoNotAllowed
        );
        assert_eq!(
            classify(
                "sudo: sorry, you are not allowed to set the following environment variables: DOCKER_HOST"
            ),
            Failure::SudoEnv
        );
    }

    #[test]
    fn exec_argv_keeps_values_off_the_command_line() {
        let argv = exec_argv(
            &["docker".into()],
            "app",
            &ExecOptions {
                user: Some("rails"),
                workdir: None,
                env: vec!["SECRET"],
                ..ExecOptions::default()
            },
            &["printenv".into(), "SECRET".into()],
        );
        assert_eq!(
            argv.join(" "),
            "docker exec --user=rails --env SECRET -- app printenv SECRET"
        );
    }

    #[test]
    fn through_sudo_values_go_on_stdin() {
        let options = ExecOptions {
            env: vec!["SECRET"],
            ..ExecOptions::default()
        };
        let argv = exec_argv(&sudo_words(), "--help", &options, &["true".into()]);
        assert_eq!(
            argv[4..].join(" "),
            "exec --env-file /dev/stdin -- --help true"
        );
    }
}
