//! `http-probe`: one HTTP check per attempt, from inside the container first.
//!
//! Transports, in order: curl in the container, wget in the container, then the
//! host (`host_url`). The probe moves on only when a transport cannot run (no
//! such tool, container gone), never because the app answered: a refused
//! connection inside the container fails the attempt there.

use std::fmt::Write as _;
use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;

use super::kind::{Operation, StepKind, excerpt};
use super::need::Need;
use super::scope::{Launch, Scope, attempt_spec};
use crate::docker::{Docker, ExecOptions, refused};
use crate::engine::{Attempt, Attempted, End, Outcome, Work};
use crate::plan::action::{Action, Body, Kind, schema_of};
use crate::plan::fields::Fields;
use crate::plan::model::Sp;
use crate::plan::rule::{Field, Rule};
use crate::plan::template::Template;
use crate::process::{MARKER, Pipe, Spec};

const NAME: &str = "http-probe";

pub(crate) const ENTRY: Kind = Kind {
    name: NAME,
    about: "One HTTP check per attempt: curl in the container, wget in the container, then the host.",
    schema: schema_of::<HttpProbe>,
    fields: &[
        "url",
        "container",
        "host_url",
        "expect_status",
        "expect_body",
    ],
    read,
};

/// One request may take at most this long; retries cover slow starts, and the
/// step's timeout bounds the whole attempt.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a response body kept for `expect_body` (its start).
const BODY_LIMIT: u64 = 64 * 1024;

#[derive(Debug, Clone, JsonSchema)]
pub(crate) struct HttpProbe {
    /// The URL, as seen from inside `container` (or from the host without one).
    pub url: Sp<Template>,
    /// Probe from inside this container: curl, else wget.
    pub container: Option<Sp<Template>>,
    /// Last resort, probed from the host (e.g. through the reverse proxy).
    pub host_url: Option<Sp<Template>>,
    /// The expected HTTP status. Default 200.
    #[schemars(range(min = 100, max = 599))]
    pub expect_status: Option<Sp<u16>>,
    /// Text the response body must contain; templates render (a secret is refused).
    pub expect_body: Option<Sp<Template>>,
}

fn read(fields: &mut Fields<'_, '_, '_, '_>) -> Option<Action> {
    let url = fields.required_template("url", "\"http://localhost:3000/up\"");
    let container = fields.template("container");
    let host_url = fields.template("host_url");
    let expect_status = fields
        .integer("expect_status", (100, 599))
        .and_then(|n| u16::try_from(n.value).ok().map(|s| Sp::new(s, n.span)));
    let expect_body = fields.template("expect_body");
    Some(crate::kinds::action(HttpProbe {
        url: url?,
        container,
        host_url,
        expect_status,
        expect_body,
    }))
}

/// The in-container request. Both tools print the response headers (the
/// status line among them) on stderr and the body on stdout, so the status is
/// read whatever the body's size. busybox's static wget crashes with `-T`, so its
/// time limit is the attempt's.
fn request_argv(tool: Tool, url: &str) -> Vec<String> {
    let secs = REQUEST_TIMEOUT.as_secs().to_string();
    let words: Vec<&str> = match tool {
        Tool::Curl => vec!["curl", "-sS", "--max-time", &secs, "-D", "/dev/stderr", url],
        Tool::Wget => vec!["wget", "-q", "-S", "-O", "-", url],
    };
    words.into_iter().map(str::to_owned).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    Curl,
    Wget,
}

/// The tools a probe runs in its container, in the order it tries them.
const TOOLS: &[&str] = &[Tool::Curl.name(), Tool::Wget.name()];

impl Tool {
    const fn name(self) -> &'static str {
        match self {
            Tool::Curl => "curl",
            Tool::Wget => "wget",
        }
    }
}

impl HttpProbe {
    fn expect_status(&self) -> u16 {
        self.expect_status.as_ref().map_or(200, |s| s.value)
    }
}

/// Only runner's marker goes into the container: it lets a cancelled request be
/// ended there.
fn marker_only() -> ExecOptions<'static> {
    ExecOptions {
        env: vec![MARKER],
        ..ExecOptions::default()
    }
}

impl Body for HttpProbe {
    fn name(&self) -> &'static str {
        NAME
    }

    fn templates(&self) -> Vec<&Sp<Template>> {
        [
            Some(&self.url),
            self.container.as_ref(),
            self.host_url.as_ref(),
            self.expect_body.as_ref(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn values(&self) -> Vec<Field<'_>> {
        let mut out = vec![("url", &self.url, Rule::Url)];
        out.extend(
            self.container
                .as_ref()
                .map(|c| ("container", c, Rule::Container)),
        );
        out.extend(self.host_url.as_ref().map(|u| ("host_url", u, Rule::Url)));
        out.extend(
            self.expect_body
                .as_ref()
                .map(|b| ("expect_body", b, Rule::Shown)),
        );
        out
    }

    fn uses_docker(&self) -> bool {
        self.container.is_some()
    }
}

impl StepKind for HttpProbe {
    fn needs(&self, scope: &Scope<'_>, _env: &[(String, String)]) -> Vec<Need> {
        vec![Need::Probe {
            container: self.container.as_ref().map(|c| scope.known(c)),
            tools: TOOLS,
            url: scope.known(&self.url),
            host_url: self.host_url.as_ref().map(|u| scope.known(u)),
        }]
    }

    fn operations(&self, scope: &Scope<'_>, _env: &[(String, String)]) -> Vec<Operation> {
        let url = scope.text(&self.url);
        let mut expect = format!("expects status {}", self.expect_status());
        if let Some(body) = &self.expect_body {
            let _ = write!(expect, " and a body containing {:?}", scope.text(body));
        }
        let Some(container) = &self.container else {
            return vec![host_get("from the host", &url).note(expect)];
        };
        let container = scope.text(container);
        let exec = |tool| {
            scope
                .docker
                .exec_argv(&container, &marker_only(), &request_argv(tool, &url))
        };
        let mut ops = vec![
            Operation::process("1. curl in the container", exec(Tool::Curl)).note(expect),
            Operation::process("2. else wget in the container", exec(Tool::Wget))
                .note("used only when the container has no curl"),
        ];
        if let Some(host_url) = &self.host_url {
            ops.push(
                host_get("3. else from the host", &scope.text(host_url))
                    .note("used only when neither curl nor wget can run in the container"),
            );
        }
        ops
    }

    fn summary(&self, operations: &[Operation]) -> String {
        super::join(operations, " || ")
    }

    fn work(&self, launch: &Launch<'_>) -> Arc<dyn Work> {
        let scope = launch.scope;
        let url = scope.text(&self.url);
        let container = self.container.as_ref().map(|c| scope.text(c));
        let mut transports = Vec::new();
        if let Some(container) = &container {
            for tool in [Tool::Curl, Tool::Wget] {
                let argv = request_argv(tool, &url);
                let mut spec = launch.exec(container, marker_only(), &argv, &[]);
                spec.stdout = Pipe::kept();
                spec.stderr = Pipe::kept();
                transports.push(Transport::Container {
                    tool,
                    spec,
                    container: container.clone(),
                });
            }
            if let Some(host_url) = &self.host_url {
                transports.push(Transport::Host(scope.text(host_url)));
            }
        } else {
            transports.push(Transport::Host(url.clone()));
        }
        Arc::new(Probe {
            docker: Arc::clone(&launch.docker),
            url,
            transports,
            marker: launch.marker.clone(),
            expect_status: self.expect_status(),
            expect_body: self.expect_body.as_ref().map(|b| scope.text(b)),
        })
    }
}

fn host_get(label: &str, url: &str) -> Operation {
    Operation {
        label: label.to_owned(),
        argv: Vec::new(),
        display: format!("GET {url}"),
        notes: Vec::new(),
    }
}

enum Transport {
    Container {
        tool: Tool,
        spec: Spec,
        container: String,
    },
    /// A GET from the host, of this URL.
    Host(String),
}

impl Transport {
    fn name(&self) -> &'static str {
        match self {
            Transport::Container {
                tool: Tool::Curl, ..
            } => "curl in the container",
            Transport::Container {
                tool: Tool::Wget, ..
            } => "wget in the container",
            Transport::Host(_) => "the host",
        }
    }
}

struct Probe {
    docker: Arc<Docker>,
    /// The URL as seen from the container.
    url: String,
    transports: Vec<Transport>,
    marker: String,
    expect_status: u16,
    expect_body: Option<String>,
}

/// What one transport found.
enum Found {
    /// The transport cannot run here (tool missing, container gone): try the next.
    Unavailable(String),
    /// The app answered.
    Answered { status: u16, body: String },
    /// The request ran and failed: that decides the attempt.
    Failed(String),
    /// The attempt was cancelled; what became of the request.
    Cancelled(Option<String>),
}

impl Work for Probe {
    fn attempt(&self, attempt: Attempt) -> Attempted<'_> {
        Box::pin(async move {
            let mut unavailable = Vec::new();
            for transport in &self.transports {
                let (found, url) = match transport {
                    Transport::Container {
                        tool,
                        spec,
                        container,
                    } => (
                        self.in_container(*tool, spec, container, &attempt).await,
                        self.url.as_str(),
                    ),
                    Transport::Host(url) => {
                        (host_get_cancellable(url, &attempt).await, url.as_str())
                    }
                };
                let name = transport.name();
                let (end, said) = match found {
                    Found::Cancelled(detail) => {
                        return Outcome {
                            detail,
                            ..Outcome::new(End::Failed("cancelled".into()))
                        };
                    }
                    Found::Unavailable(why) => {
                        attempt
                            .output
                            .info(format!("{name}: unavailable: {why}"))
                            .await;
                        unavailable.push(format!("{name}: unavailable ({why})"));
                        continue;
                    }
                    Found::Failed(why) => {
                        (End::Failed(format!("GET {url} through {name}: {why}")), why)
                    }
                    Found::Answered { status, body } => (
                        self.judge(url, name, status, &body),
                        format!("status {status}"),
                    ),
                };
                attempt
                    .output
                    .info(format!("{name}: GET {url} → {said}"))
                    .await;
                let end = match end {
                    End::Failed(why) if !unavailable.is_empty() => {
                        End::Failed(format!("{why} (before it: {})", unavailable.join("; ")))
                    }
                    end => end,
                };
                return Outcome {
                    transport: Some(format!("{name}: GET {url}")),
                    ..Outcome::new(end)
                };
            }
            Outcome::new(End::Failed(format!(
                "no transport could run: {}",
                unavailable.join("; ")
            )))
        })
    }
}

impl Probe {
    fn judge(&self, url: &str, name: &str, status: u16, body: &str) -> End {
        if status != self.expect_status {
            return End::Failed(format!(
                "GET {url} through {name}: status {status}, expected {}",
                self.expect_status
            ));
        }
        match &self.expect_body {
            Some(expected) if !body.contains(expected.as_str()) => End::Failed(format!(
                "GET {url} through {name}: status {status}, but the body does not contain {expected:?}: {}",
                excerpt(body)
            )),
            _ => End::Exited(0),
        }
    }

    /// curl or wget through `docker exec`.
    async fn in_container(
        &self,
        tool: Tool,
        spec: &Spec,
        container: &str,
        attempt: &Attempt,
    ) -> Found {
        let spec = attempt_spec(spec, attempt.number);
        let (ran, detail) = self
            .docker
            .exec(&spec, container, &self.marker, attempt)
            .await;
        if attempt.cancel.is_cancelled() {
            return Found::Cancelled(detail);
        }
        // docker prints its own refusals on stderr, and the runtime's (no such
        // executable) on stdout.
        let first = ran
            .stderr
            .iter()
            .map(String::as_str)
            .chain(ran.stdout.lines())
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default()
            .to_owned();
        let code = match ran.end {
            End::Exited(code) => code,
            // docker refused the exec: `exec` said why (the container's state).
            End::Refused(why) => return Found::Unavailable(why),
            End::Failed(why) if refused(&first) => return Found::Unavailable(why),
            other => return Found::Failed(other.reason()),
        };
        if (code == 126 || code == 127) && first.contains("not found") {
            // `OCI runtime exec failed: … exec: "curl": executable file not found in
            // $PATH: unknown` → `"curl": executable file not found in $PATH`.
            let why = first
                .rsplit_once("exec: ")
                .map_or(first.as_str(), |(_, w)| w);
            let why = why.trim_end_matches(": unknown");
            return Found::Unavailable(format!(
                "no {} in container `{container}`: {}",
                tool.name(),
                excerpt(why)
            ));
        }
        answered(tool, code, ran.stdout, &ran.stderr, &first)
    }
}

/// The status from the response headers (the last status line, after any
/// redirects), or why there was no answer.
fn answered(tool: Tool, code: i32, body: String, stderr: &[String], first_error: &str) -> Found {
    let status = stderr.iter().rev().find_map(|line| {
        let (_, rest) = line.split_once("HTTP/")?;
        let code = rest.split_whitespace().nth(1)?;
        code.parse::<u16>().ok().filter(|c| (100..600).contains(c))
    });
    if let Some(status) = status {
        return Found::Answered { status, body };
    }
    let all = stderr.join("\n").to_ascii_lowercase();
    let timed_out = format!(
        "timed out after {}s without an answer",
        REQUEST_TIMEOUT.as_secs()
    );
    match (tool, code) {
        (_, 0) => Found::Failed(format!("{} printed no status", tool.name())),
        (Tool::Curl, 6) => Found::Failed("DNS failure: the host name does not resolve".into()),
        (Tool::Curl, 7) => Found::Failed("connection refused: nothing listens there".into()),
        (Tool::Curl, 28) => Found::Failed(timed_out),
        (Tool::Wget, _) if all.contains("refused") => {
            Found::Failed("connection refused: nothing listens there".into())
        }
        (Tool::Wget, _) if all.contains("bad address") || all.contains("resolve") => {
            Found::Failed("DNS failure: the host name does not resolve".into())
        }
        (Tool::Wget, _) if all.contains("timed out") => Found::Failed(timed_out),
        _ => Found::Failed(format!("{} exited with {code}: {first_error}", tool.name())),
    }
}

/// A GET from the host within the attempt's deadline; cancelled with the attempt.
async fn host_get_cancellable(url: &str, attempt: &Attempt) -> Found {
    let limit = REQUEST_TIMEOUT.min(attempt.remaining());
    let request = tokio::task::spawn_blocking({
        let url = url.to_owned();
        move || host_get_blocking(&url, limit)
    });
    tokio::select! {
        found = request => found.unwrap_or_else(|e| Found::Failed(format!("the request task failed: {e}"))),
        // The blocking request ends by its own limit; nothing else is left running.
        () = attempt.cancel.cancelled() => Found::Cancelled(None),
    }
}

/// A GET with ureq, at most `limit`; the body's start is kept.
fn host_get_blocking(url: &str, limit: Duration) -> Found {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(limit))
        .http_status_as_error(false)
        .build()
        .into();
    match agent.get(url).call() {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let mut body = Vec::new();
            let _ = response
                .body_mut()
                .as_reader()
                .take(BODY_LIMIT)
                .read_to_end(&mut body);
            Found::Answered {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            }
        }
        Err(e) => Found::Failed(host_error(&e, limit)),
    }
}

fn host_error(e: &ureq::Error, limit: Duration) -> String {
    let timed_out = || {
        format!(
            "timed out after {} without an answer",
            humantime::format_duration(limit)
        )
    };
    match e {
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused: nothing listens there".into()
        }
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => timed_out(),
        ureq::Error::Timeout(_) => timed_out(),
        ureq::Error::HostNotFound => "DNS failure: the host name does not resolve".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_status_from_the_headers_of_either_tool() {
        let curl = ["HTTP/1.1 200 OK".to_owned(), "Content-Length: 2".to_owned()];
        assert!(matches!(
            answered(Tool::Curl, 0, "ok".into(), &curl, ""),
            Found::Answered { status: 200, ref body } if body == "ok"
        ));
        assert!(
            matches!(answered(Tool::Curl, 7, String::new(), &[], ""), Found::Failed(w) if w.contains("refused"))
        );
        let wget = ["  HTTP/1.1 503 Service Unavailable".to_owned()];
        assert!(matches!(
            answered(Tool::Wget, 1, String::new(), &wget, ""),
            Found::Answered { status: 503, .. }
        ));
        let refused =
            ["wget: can't connect to remote host (127.0.0.1): Connection refused".to_owned()];
        assert!(
            matches!(answered(Tool::Wget, 1, String::new(), &refused, ""), Found::Failed(w) if w.contains("refused"))
        );
        let dns = ["wget: bad address 'nowhere'".to_owned()];
        assert!(
            matches!(answered(Tool::Wget, 1, String::new(), &dns, ""), Found::Failed(w) if w.contains("DNS"))
        );
    }
}
