//! `http-probe`: one HTTP check per attempt, from inside the container first.

use super::{Operation, Scope, StepKind};
use crate::docker::{ExecOptions, exec_argv};
use crate::plan::model::HttpProbeAction;
use crate::plan::template::Context;

/// One request may take at most this many seconds; retries cover slow starts.
pub const REQUEST_TIMEOUT_SECS: u64 = 10;

/// The in-container request: `curl` prints the body, then the status on its own
/// line; `wget` prints the headers (status line included) on stderr. busybox's
/// static wget crashes with `-T`, so its time limit is the process's own.
pub fn probe_argv(tool: &str, url: &str) -> Vec<String> {
    let secs = REQUEST_TIMEOUT_SECS.to_string();
    let words: Vec<&str> = if tool == "curl" {
        vec![
            "curl",
            "-sS",
            "--max-time",
            &secs,
            "-w",
            "\\n%{http_code}",
            url,
        ]
    } else {
        vec!["wget", "-q", "-S", "-O", "-", url]
    };
    words.into_iter().map(str::to_owned).collect()
}

impl StepKind for HttpProbeAction {
    fn operations(&self, _env: &[(String, String)], scope: &Scope<'_>) -> Vec<Operation> {
        let url = scope.render(&self.url.value, Context::Verbatim);
        let status = self.expect_status.as_ref().map_or(200, |s| s.value);
        let mut expect = format!("expects status {status}");
        if let Some(body) = &self.expect_body {
            expect.push_str(&format!(" and a body containing {:?}", body.value));
        }
        let mut ops = Vec::new();
        match &self.container {
            Some(container) => {
                let container = scope.render(&container.value, Context::Verbatim);
                let exec = |argv: Vec<String>| {
                    exec_argv(scope.docker, &container, &ExecOptions::default(), &argv)
                };
                let curl = probe_argv("curl", &url);
                let wget = probe_argv("wget", &url);
                ops.push(
                    Operation::process("1. curl in the container", exec(curl)).note(expect.clone()),
                );
                ops.push(
                    Operation::process("2. else wget in the container", exec(wget))
                        .note("used only when the container has no curl"),
                );
                if let Some(host_url) = &self.host_url {
                    let host_url = scope.render(&host_url.value, Context::Verbatim);
                    ops.push(
                        host_get("3. else from the host", &host_url)
                            .note("used only when neither curl nor wget can run in the container"),
                    );
                }
            }
            None => ops.push(host_get("from the host", &url).note(expect)),
        }
        ops
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
