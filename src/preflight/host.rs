//! The checks of this host: the programs host scripts run, and what answers
//! a probe's URL (from inside its container with the tools its kind names,
//! else from the host).

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;

use super::containers::Seen;
use super::gather::{Context, docker_argv};
use super::look::{CHECK_TIMEOUT, Looked, first_line};
use super::{CONNECT_TIMEOUT, Check, Subject};
use crate::docker::{self, Docker};
use crate::kinds::Known;

impl Check<'_> {
    pub(super) fn host_program(&mut self, subject: &Subject, ctx: &Context, program: &str) {
        let (waited, other) = self.creator(subject, &program.to_owned(), |c| &c.programs);
        let who = self.who(subject);
        if let Some(s) = waited {
            self.report.notes.push(format!(
                "{who}: `{program}` is installed by step `{}`, so it is left to the run",
                self.plan.steps[s].id
            ));
            return;
        }
        let holders: Vec<&String> = ctx
            .running
            .iter()
            .filter(|c| {
                matches!(
                    ctx.looked.get(&((*c).clone(), None, None)),
                    Some(Looked::Missing(missing)) if !missing.contains(program)
                )
            })
            .collect();
        let problem = if program.contains('/') {
            format!("`{program}` is not an executable file on this host")
        } else {
            format!("`{program}` is not installed on this host (not on PATH)")
        };
        let fix = if let Some(c) = holders.first() {
            format!(
                "`{program}` is in container `{c}`: run it there with a `docker-exec` step (`kind = \"docker-exec\"`, `container = \"{c}\"`, `command = [\"{program}\", …]`)"
            )
        } else if let Some(s) = other {
            format!(
                "step `{}` installs it: add it to this step's `needs`",
                self.plan.steps[s].id
            )
        } else {
            format!(
                "install it on this host; or, if a step of the plan installs it, mark that step with `creates = {{ programs = [\"{program}\"] }}` and make this step need it"
            )
        };
        self.finding(subject, "host".to_owned(), problem, fix);
    }

    pub(super) fn probe(
        &mut self,
        subject: &Subject,
        ctx: &Context,
        container: Option<&Known>,
        tools: &[&str],
        url: Option<&String>,
        host_url: Option<&Known>,
    ) {
        let who = self.who(subject);
        let Some(container) = container else {
            match url {
                Some(url) => self.host_url(subject, ctx, tools, url, None),
                None => self.report.notes.push(format!(
                    "{who}: its URL is a step's output, decided during the run"
                )),
            }
            return;
        };
        let Some(container) = container else {
            self.report.notes.push(format!(
                "{who}: its container is a step's output, decided during the run"
            ));
            return;
        };
        let Some((looked, seen)) = self.found(subject, ctx, container, None, None) else {
            return;
        };
        let place = seen.place(container);
        let found = match looked {
            Looked::Missing(missing) => tools.iter().filter(|t| !missing.contains(**t)).count(),
            Looked::Failed(why) => {
                self.report.notes.push(format!(
                    "{who}: {} were not looked for in {place} ({})",
                    either(tools, "and"),
                    first_line(why)
                ));
                return;
            }
        };
        if found > 0 {
            return;
        }
        if let Seen::Image { image, .. } = &seen
            && let Some(b) = self.image_maker(subject, image)
        {
            self.report.notes.push(format!(
                "{who}: image `{image}` has {} as it is now, and step `{}` makes that image anew",
                none_of(tools),
                self.plan.steps[b].id
            ));
            return;
        }
        match host_url {
            Some(Some(host_url)) => self.host_url(subject, ctx, tools, host_url, Some(container)),
            Some(None) => self.report.notes.push(format!(
                "{who}: {place} has {}; its `host_url` is a step's output, decided during the run",
                none_of(tools)
            )),
            None => self.finding(
                subject,
                format!("container {container}"),
                format!(
                    "the probe has no transport: {place} has {}, and the probe has no `host_url`",
                    none_of(tools)
                ),
                format!(
                    "add `host_url` (the app through the port this host publishes, e.g. the reverse proxy's), or install {} in the image",
                    either(tools, "or")
                ),
            ),
        }
    }

    /// A URL probed from this host: something must answer on its port when it
    /// is a loopback one (other hosts are not this machine's to check).
    pub(super) fn host_url(
        &mut self,
        subject: &Subject,
        ctx: &Context,
        tools: &[&str],
        url: &str,
        inside: Option<&String>,
    ) {
        let who = self.who(subject);
        let Some((host, port)) = loopback(url) else {
            self.report.notes.push(format!(
                "{who}: {url} is not on this host's loopback, so it is left to the run"
            ));
            return;
        };
        self.report.checks += 1;
        if answers(&host, port) {
            return;
        }
        let (waited, other) = self.creator(subject, &port, |c| &c.ports);
        if let Some(s) = waited {
            self.report.notes.push(format!(
                "{who}: port {port} is published by step `{}`, so it is left to the run",
                self.plan.steps[s].id
            ));
            return;
        }
        let listeners = if ctx.docker_ok {
            exposing(self.docker, port)
        } else {
            Vec::new()
        };
        let field = if inside.is_some() { "host_url" } else { "url" };
        let mut problem = format!(
            "nothing answers on port {port} of this host, where the probe's `{field}` {url} points"
        );
        let fix = if let Some(c) = listeners.first() {
            let _ = write!(
                problem,
                ": container `{c}` listens on {port} but does not publish it on this host"
            );
            format!(
                "probe from inside the container: `container = \"{c}\"` with `url = \"{url}\"` ({}, run there); keep a host-side `host_url` only for a port this host publishes (the reverse proxy's)",
                tools.join(", else ")
            )
        } else if let Some(s) = other {
            format!(
                "step `{}` publishes it: add it to this step's `needs`",
                self.plan.steps[s].id
            )
        } else {
            format!(
                "check the port; probe from inside the app's container (`container = …`); or, if a step of the plan publishes it, mark that step with `creates = {{ ports = [{port}] }}` and make this step need it"
            )
        };
        self.finding(subject, "host".to_owned(), problem, fix);
    }
}

/// Whether the host runs `program` from `dir`: a path, or a name on `PATH`.
pub(super) fn on_host(program: &str, dir: &Path, path: Option<&str>) -> bool {
    if program.contains('/') {
        return is_executable(&dir.join(program));
    }
    let path = path
        .map(std::ffi::OsString::from)
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_default();
    which::which_in(program, Some(path), dir).is_ok()
}

pub(super) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The host and port of a URL on this host's loopback.
pub(super) fn loopback(url: &str) -> Option<(String, u16)> {
    let uri: ureq::http::Uri = url.parse().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let local = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
    if !local {
        return None;
    }
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    Some((host.to_owned(), port))
}

/// Whether something accepts a TCP connection on `host:port` (loopback only).
pub(super) fn answers(host: &str, port: u16) -> bool {
    let host = if host
        .parse::<std::net::Ipv4Addr>()
        .is_ok_and(|ip| ip.is_unspecified())
    {
        "127.0.0.1"
    } else {
        host
    };
    let Ok(addrs) = (host, port).to_socket_addrs() else {
        return false;
    };
    let addrs: Vec<SocketAddr> = addrs.filter(|a| a.ip().is_loopback()).collect();
    addrs
        .iter()
        .any(|a| TcpStream::connect_timeout(a, CONNECT_TIMEOUT).is_ok())
}

/// Running containers that expose `port` without publishing it on this host.
pub(super) fn exposing(docker: &Docker, port: u16) -> Vec<String> {
    let argv = docker_argv(docker, &["ps", "--format", "{{.Names}}\t{{.Ports}}"]);
    let Ok(out) = docker::briefly_with(&argv, &docker.env, CHECK_TIMEOUT) else {
        return Vec::new();
    };
    let wanted = format!("{port}/tcp");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let (name, ports) = line.split_once('\t')?;
            ports
                .split(", ")
                .any(|p| p.trim() == wanted)
                .then(|| name.to_owned())
        })
        .collect()
}

/// `curl and wget`, `curl or wget`, `a, b and c`.
fn either(tools: &[&str], and: &str) -> String {
    match tools {
        [] => "nothing".to_owned(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} {and} {last}", rest.join(", ")),
    }
}

/// `neither curl nor wget`, `no curl`, `none of a, b and c`.
fn none_of(tools: &[&str]) -> String {
    match tools {
        [] => "no tool".to_owned(),
        [one] => format!("no {one}"),
        [a, b] => format!("neither {a} nor {b}"),
        _ => format!("none of {}", either(tools, "and")),
    }
}
