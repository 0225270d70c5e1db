//! What one attempt of a step does, by kind: a host process (`shell`), a command in
//! a container (`docker-exec`), a maintenance toggle confirmed by `status`
//! (`maintenance-toggle`), one HTTP check through the first transport that can run
//! (`http-probe`).
//!
//! Commands in a container carry a marker in their environment (`RUNNER_EXEC_ID`):
//! when one times out or is killed, ending the docker client is not enough (the
//! process inside the container goes on), so the marked processes are ended inside
//! the container too.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use regex::Regex;
use tokio::sync::watch;

use super::process::{self, End, Line, Outcome, Spec, Stream};

/// The most of a probe's response body kept for `expect_body`.
const BODY_LIMIT: u64 = 64 * 1024;
/// How long a helper docker command (diagnosis, cleanup) may take.
const HELPER_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one probe request may take; the step's retries cover slow starts.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(crate::kinds::REQUEST_TIMEOUT_SECS);

/// One attempt's work, templates resolved.
#[derive(Debug, Clone)]
pub enum Work {
    Process(Spec),
    Exec(Exec),
    Toggle(Toggle),
    Probe(Probe),
}

/// The container a command runs in, and how to reach it.
#[derive(Debug, Clone)]
pub struct Target {
    pub docker: Vec<String>,
    pub container: String,
    /// The value of `RUNNER_EXEC_ID` given to the command.
    pub marker: String,
}

#[derive(Debug, Clone)]
pub struct Exec {
    /// `docker exec …`, run on the host.
    pub spec: Spec,
    pub target: Target,
    /// The host file that receives stdout; written beside it first, renamed on success.
    pub stdout_file: Option<PathBuf>,
    pub expect_output: Option<Regex>,
}

#[derive(Debug, Clone)]
pub struct Toggle {
    /// `[maintenance]` `on` or `off`.
    pub toggle: Spec,
    /// `[maintenance]` `status`.
    pub status: Spec,
    pub target: Target,
    /// `on` or `off`.
    pub state: &'static str,
    /// What `status` prints (trimmed) once the toggle took effect.
    pub expected: String,
}

#[derive(Debug, Clone)]
pub struct Probe {
    /// The docker words, for probes from inside the container.
    pub docker: Vec<String>,
    pub container: Option<String>,
    pub url: String,
    pub host_url: Option<String>,
    pub expect_status: u16,
    pub expect_body: Option<String>,
    /// The folder docker runs in.
    pub dir: PathBuf,
    pub timeout: Duration,
}

impl Work {
    /// Sets `RUNNER_ATTEMPT` for every process of the attempt.
    pub fn set_attempt(&mut self, attempt: u32) {
        let specs: Vec<&mut Spec> = match self {
            Work::Process(spec) => vec![spec],
            Work::Exec(exec) => vec![&mut exec.spec],
            Work::Toggle(toggle) => vec![&mut toggle.toggle, &mut toggle.status],
            Work::Probe(_) => Vec::new(),
        };
        for spec in specs {
            match spec.env.iter_mut().find(|(k, _)| k == "RUNNER_ATTEMPT") {
                Some((_, value)) => *value = attempt.to_string(),
                None => spec
                    .env
                    .push(("RUNNER_ATTEMPT".into(), attempt.to_string())),
            }
        }
    }

    /// Performs one attempt.
    pub async fn perform<F>(&self, lines: F, kill: watch::Receiver<bool>) -> Outcome
    where
        F: Fn(Line) + Clone + Send + 'static,
    {
        match self {
            Work::Process(spec) => process::run(spec, lines, kill).await,
            Work::Exec(exec) => run_exec(exec, lines, kill).await,
            Work::Toggle(toggle) => run_toggle(toggle, lines, kill).await,
            Work::Probe(probe) => run_probe(probe, lines, kill).await,
        }
    }
}

async fn run_exec<F>(exec: &Exec, lines: F, kill: watch::Receiver<bool>) -> Outcome
where
    F: Fn(Line) + Clone + Send + 'static,
{
    let partial = exec.stdout_file.as_ref().map(|file| partial_path(file));
    let mut spec = exec.spec.clone();
    spec.stdout_file.clone_from(&partial);
    spec.capture |= exec.expect_output.is_some();
    let mut outcome = in_container(&spec, &exec.target, lines, kill).await;
    if outcome.end.success()
        && let Some(pattern) = &exec.expect_output
    {
        let output = outcome.captured.as_deref().unwrap_or_default();
        if !pattern.is_match(output) {
            outcome.end = End::Failed(format!(
                "its output does not match /{pattern}/: {}",
                excerpt(output)
            ));
        }
    }
    if let (Some(partial), Some(file)) = (&partial, &exec.stdout_file) {
        if outcome.end.success() {
            if let Err(e) = std::fs::rename(partial, file) {
                outcome.end = End::Failed(format!(
                    "cannot move its stdout into place at {}: {e}",
                    file.display()
                ));
                let _ = std::fs::remove_file(partial);
            }
        } else {
            // A failed step leaves no file that could pass for a complete one.
            let _ = std::fs::remove_file(partial);
        }
    }
    outcome
}

/// `file` → `.file.partial` in the same folder, so the final rename is atomic.
fn partial_path(file: &std::path::Path) -> PathBuf {
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    file.with_file_name(format!(".{name}.partial"))
}

async fn run_toggle<F>(toggle: &Toggle, lines: F, kill: watch::Receiver<bool>) -> Outcome
where
    F: Fn(Line) + Clone + Send + 'static,
{
    let started = Instant::now();
    let mut outcome =
        in_container(&toggle.toggle, &toggle.target, lines.clone(), kill.clone()).await;
    if !outcome.end.success() {
        outcome.duration = started.elapsed();
        return outcome;
    }
    let mut status = toggle.status.clone();
    status.capture = true;
    let mut confirm = in_container(&status, &toggle.target, lines, kill).await;
    confirm.duration = started.elapsed();
    if !confirm.end.success() {
        confirm.end = End::Failed(format!(
            "maintenance {} ran, but `status` failed: {}",
            toggle.state,
            confirm.end.reason()
        ));
        return confirm;
    }
    let printed = confirm.captured.take().unwrap_or_default();
    if printed.trim() != toggle.expected {
        confirm.end = End::Failed(format!(
            "maintenance {} did not take effect: `status` printed {:?}, expected {:?}",
            toggle.state,
            excerpt(printed.trim()),
            toggle.expected
        ));
    }
    confirm
}

/// Runs `docker exec …`: a daemon refusal becomes a diagnosis of the container, and
/// a timeout or kill also ends the command inside the container.
async fn in_container<F>(
    spec: &Spec,
    target: &Target,
    lines: F,
    kill: watch::Receiver<bool>,
) -> Outcome
where
    F: Fn(Line) + Clone + Send + 'static,
{
    let first_error = Arc::new(Mutex::new(None::<String>));
    let seen = Arc::clone(&first_error);
    let mut outcome = process::run(
        spec,
        move |line: Line| {
            if line.stream == Stream::Stderr
                && let Ok(mut first) = seen.lock()
            {
                first.get_or_insert_with(|| line.text.clone());
            }
            lines(line);
        },
        kill,
    )
    .await;
    match outcome.end {
        End::TimedOut(_) | End::Killed => {
            outcome.detail = Some(end_inside(target).await);
        }
        End::Exited(_) => {
            let first = first_error.lock().ok().and_then(|f| f.clone());
            if first.as_deref().is_some_and(daemon_refused) {
                outcome.end = End::Failed(diagnose(target).await);
            }
        }
        _ => {}
    }
    outcome
}

/// Whether docker's first stderr line says the container cannot take an exec.
fn daemon_refused(line: &str) -> bool {
    line.contains("No such container") || line.contains("is not running")
}

/// Why a container cannot run a command: its state, and running containers with
/// similar names (a typo, or a compose project prefix).
pub async fn diagnose(target: &Target) -> String {
    let name = &target.container;
    let state = helper(
        &target.docker,
        &["inspect", "--format", "{{.State.Status}}", name],
    )
    .await;
    let mut message = match state {
        Ok(state) => format!(
            "container `{name}` is not running (its state: {})",
            state.trim()
        ),
        Err(_) => format!("there is no container named `{name}`"),
    };
    if let Ok(running) = helper(&target.docker, &["ps", "--format", "{{.Names}}"]).await {
        let similar: Vec<&str> = running
            .lines()
            .map(str::trim)
            .filter(|other| !other.is_empty() && *other != name)
            .filter(|other| {
                other.contains(name.as_str())
                    || name.contains(*other)
                    || strsim::jaro_winkler(name, other) >= 0.85
            })
            .take(5)
            .collect();
        if similar.is_empty() {
            message.push_str("; no running container has a similar name");
        } else {
            message.push_str(&format!(
                "; running containers with similar names: {}",
                similar.join(", ")
            ));
        }
    }
    message
}

/// Ends, inside the container, every process that carries this command's marker.
/// Needs `sh` in the container (busybox or coreutils for the rest).
const END_INSIDE: &str = r#"m="RUNNER_EXEC_ID=$1"; found=""
for d in /proc/[0-9]*; do
  p=${d#/proc/}
  [ "$p" = "$$" ] && continue
  if tr '\0' '\n' < "$d/environ" 2>/dev/null | grep -qxF "$m"; then found="$found $p"; fi
done
[ -z "$found" ] && { echo none; exit 0; }
kill -TERM $found 2>/dev/null
i=0
while [ $i -lt 30 ]; do
  alive=""
  for p in $found; do
    # A zombie is ended, even if no parent reaps it (e.g. `sleep` as PID 1).
    case "$(cut -d' ' -f3 "/proc/$p/stat" 2>/dev/null)" in Z|"") ;; *) alive="$alive $p" ;; esac
  done
  [ -z "$alive" ] && { echo ended; exit 0; }
  sleep 0.1; i=$((i+1))
done
kill -KILL $alive 2>/dev/null; echo killed"#;

async fn end_inside(target: &Target) -> String {
    let name = &target.container;
    let result = helper(
        &target.docker,
        &["exec", name, "sh", "-c", END_INSIDE, "sh", &target.marker],
    )
    .await;
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

/// Runs a short docker command and returns its stdout, or why it failed.
async fn helper(docker: &[String], args: &[&str]) -> Result<String, String> {
    let Some((program, words)) = docker.split_first() else {
        return Err("no docker command".into());
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(words)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    match tokio::time::timeout(HELPER_TIMEOUT, command.output()).await {
        Err(_) => Err(format!("no answer within {}s", HELPER_TIMEOUT.as_secs())),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(out)) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into()),
        Ok(Ok(out)) => Err(String::from_utf8_lossy(&out.stderr)
            .lines()
            .next()
            .unwrap_or("failed without a message")
            .to_owned()),
    }
}

fn excerpt(text: &str) -> String {
    const MAX: usize = 200;
    let text = text.trim();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None if text.is_empty() => "(no output)".to_owned(),
        None => text.to_owned(),
    }
}

/// What one transport of a probe found.
enum Found {
    /// The transport cannot run here (tool missing, container gone): try the next.
    Unavailable(String),
    /// The app answered.
    Answered { status: u16, body: String },
    /// The request ran and failed: that decides the attempt.
    Failed(String),
}

#[derive(Clone, Copy)]
enum Transport {
    Curl,
    Wget,
    Host,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Curl => "curl in the container",
            Transport::Wget => "wget in the container",
            Transport::Host => "the host",
        }
    }
}

async fn run_probe<F>(probe: &Probe, lines: F, kill: watch::Receiver<bool>) -> Outcome
where
    F: Fn(Line) + Clone + Send + 'static,
{
    let started = Instant::now();
    let mut plan: Vec<(Transport, &str)> = Vec::new();
    if probe.container.is_some() {
        plan.push((Transport::Curl, &probe.url));
        plan.push((Transport::Wget, &probe.url));
        if let Some(host_url) = &probe.host_url {
            plan.push((Transport::Host, host_url));
        }
    } else {
        plan.push((Transport::Host, &probe.url));
    }
    let mut unavailable = Vec::new();
    for (transport, url) in plan {
        let found = match transport {
            Transport::Host => host_get(url).await,
            _ => in_container_get(probe, transport, url, kill.clone()).await,
        };
        let name = transport.name();
        let (end, said) = match found {
            Found::Unavailable(why) => {
                lines(info(format!("{name}: unavailable: {why}")));
                unavailable.push(format!("{name}: unavailable ({why})"));
                continue;
            }
            Found::Failed(why) => (End::Failed(format!("GET {url} through {name}: {why}")), why),
            Found::Answered { status, body } => {
                let said = format!("status {status}");
                let end = if status != probe.expect_status {
                    End::Failed(format!(
                        "GET {url} through {name}: status {status}, expected {}",
                        probe.expect_status
                    ))
                } else if let Some(expected) = probe
                    .expect_body
                    .as_ref()
                    .filter(|e| !body.contains(e.as_str()))
                {
                    End::Failed(format!(
                        "GET {url} through {name}: status {status}, but the body does not contain {expected:?}: {}",
                        excerpt(&body)
                    ))
                } else {
                    End::Exited(0)
                };
                (end, said)
            }
        };
        lines(info(format!("{name}: GET {url} → {said}")));
        let mut end = end;
        if let (End::Failed(why), false) = (&end, unavailable.is_empty()) {
            end = End::Failed(format!("{why} (before it: {})", unavailable.join("; ")));
        }
        return Outcome {
            end,
            duration: started.elapsed(),
            captured: None,
            detail: None,
            transport: Some(format!("{name}: GET {url}")),
        };
    }
    Outcome {
        end: End::Failed(format!(
            "no transport could run: {}",
            unavailable.join("; ")
        )),
        duration: started.elapsed(),
        captured: None,
        detail: None,
        transport: None,
    }
}

fn info(text: String) -> Line {
    Line {
        stream: Stream::Info,
        text,
    }
}

/// curl or wget through `docker exec`.
async fn in_container_get(
    probe: &Probe,
    transport: Transport,
    url: &str,
    kill: watch::Receiver<bool>,
) -> Found {
    let Some(container) = &probe.container else {
        return Found::Unavailable("no container".into());
    };
    let tool = match transport {
        Transport::Curl => "curl",
        _ => "wget",
    };
    let argv = crate::docker::exec_argv(
        &probe.docker,
        container,
        &crate::docker::ExecOptions::default(),
        &crate::kinds::probe_argv(tool, url),
    );
    let spec = Spec {
        argv,
        dir: probe.dir.clone(),
        env: Vec::new(),
        capture: true,
        stdout_file: None,
        env_file: None,
        timeout: probe.timeout.min(REQUEST_TIMEOUT + Duration::from_secs(5)),
    };
    let stderr = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = Arc::clone(&stderr);
    let outcome = process::run(
        &spec,
        move |line: Line| {
            if line.stream == Stream::Stderr
                && let Ok(mut kept) = sink.lock()
                && kept.len() < 50
            {
                kept.push(line.text);
            }
        },
        kill,
    )
    .await;
    let stderr = stderr.lock().map(|s| s.clone()).unwrap_or_default();
    let body = outcome.captured.unwrap_or_default();
    // docker prints its own refusals on stderr, and the runtime's (no such
    // executable) on stdout.
    let first = stderr
        .iter()
        .map(String::as_str)
        .chain(body.lines())
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .to_owned();
    let code = match outcome.end {
        End::Exited(code) => code,
        End::TimedOut(after) => {
            return Found::Failed(format!(
                "timed out after {}",
                humantime::format_duration(after)
            ));
        }
        other => return Found::Failed(other.reason()),
    };
    if daemon_refused(&first) {
        let target = Target {
            docker: probe.docker.clone(),
            container: container.clone(),
            marker: String::new(),
        };
        return Found::Unavailable(diagnose(&target).await);
    }
    if (code == 126 || code == 127) && first.contains("not found") {
        // `OCI runtime exec failed: … exec: "curl": executable file not found in
        // $PATH: unknown` → `"curl": executable file not found in $PATH`.
        let why = first
            .rsplit_once("exec: ")
            .map_or(first.as_str(), |(_, w)| w);
        let why = why.trim_end_matches(": unknown");
        return Found::Unavailable(format!(
            "no {tool} in container `{container}`: {}",
            excerpt(why)
        ));
    }
    match transport {
        Transport::Curl => curl_found(code, &body, &first),
        _ => wget_found(code, body, &stderr, &first),
    }
}

/// curl prints the body, then the status on its own line (`-w '\n%{http_code}'`).
fn curl_found(code: i32, out: &str, first_error: &str) -> Found {
    match code {
        0 => {
            let (body, status) = out.rsplit_once('\n').unwrap_or(("", out));
            match status.trim().parse::<u16>() {
                Ok(status) if status > 0 => Found::Answered {
                    status,
                    body: body.to_owned(),
                },
                _ => Found::Failed(format!("curl printed no status: {}", excerpt(out))),
            }
        }
        6 => Found::Failed("DNS failure: the host name does not resolve".into()),
        7 => Found::Failed("connection refused: nothing listens there".into()),
        28 => Found::Failed(format!(
            "timed out after {}s without an answer",
            REQUEST_TIMEOUT.as_secs()
        )),
        _ => Found::Failed(format!("curl exited with {code}: {first_error}")),
    }
}

/// wget prints the headers on stderr (`-S`); on an error status it exits non-zero
/// and says so, so the status comes from the headers either way.
fn wget_found(code: i32, body: String, stderr: &[String], first_error: &str) -> Found {
    // `  HTTP/1.1 503 Service Unavailable`, the last one after redirects.
    let status = stderr.iter().rev().find_map(|line| {
        let (_, rest) = line.split_once("HTTP/")?;
        let code = rest.split_whitespace().nth(1)?;
        code.parse::<u16>().ok().filter(|c| (100..600).contains(c))
    });
    if let Some(status) = status {
        return Found::Answered { status, body };
    }
    let all = stderr.join("\n").to_ascii_lowercase();
    if code == 0 {
        Found::Failed("wget printed no status".into())
    } else if all.contains("refused") {
        Found::Failed("connection refused: nothing listens there".into())
    } else if all.contains("bad address") || all.contains("resolve") {
        Found::Failed("DNS failure: the host name does not resolve".into())
    } else if all.contains("timed out") {
        Found::Failed(format!(
            "timed out after {}s without an answer",
            REQUEST_TIMEOUT.as_secs()
        ))
    } else {
        Found::Failed(format!("wget exited with {code}: {first_error}"))
    }
}

/// A GET from the host, with ureq.
async fn host_get(url: &str) -> Found {
    let url = url.to_owned();
    let request = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        match agent.get(&url).call() {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let body = response
                    .body_mut()
                    .with_config()
                    .limit(BODY_LIMIT)
                    .read_to_vec()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                Found::Answered { status, body }
            }
            Err(e) => Found::Failed(host_error(&e)),
        }
    });
    request
        .await
        .unwrap_or_else(|e| Found::Failed(format!("the request task failed: {e}")))
}

fn host_error(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused: nothing listens there".into()
        }
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => format!(
            "timed out after {}s without an answer",
            REQUEST_TIMEOUT.as_secs()
        ),
        ureq::Error::Timeout(_) => format!(
            "timed out after {}s without an answer",
            REQUEST_TIMEOUT.as_secs()
        ),
        ureq::Error::HostNotFound => "DNS failure: the host name does not resolve".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_curl_and_wget_answers() {
        assert!(matches!(
            curl_found(0, "ok\n200", ""),
            Found::Answered { status: 200, ref body } if body == "ok"
        ));
        assert!(matches!(curl_found(7, "", ""), Found::Failed(w) if w.contains("refused")));
        let headers = ["  HTTP/1.1 503 Service Unavailable".to_owned()];
        assert!(matches!(
            wget_found(1, String::new(), &headers, ""),
            Found::Answered { status: 503, .. }
        ));
        let refused =
            ["wget: can't connect to remote host (127.0.0.1): Connection refused".to_owned()];
        assert!(
            matches!(wget_found(1, String::new(), &refused, ""), Found::Failed(w) if w.contains("refused"))
        );
        let dns = ["wget: bad address 'nowhere'".to_owned()];
        assert!(
            matches!(wget_found(1, String::new(), &dns, ""), Found::Failed(w) if w.contains("DNS"))
        );
    }

    #[test]
    fn partial_file_sits_beside_the_file() {
        assert_eq!(
            partial_path(std::path::Path::new("/b/db.sql")),
            PathBuf::from("/b/.db.sql.partial")
        );
    }
}
