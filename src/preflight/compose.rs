//! The compose checks: the compose command answers, and a release's service
//! can run a second container beside the first.

use std::fmt::Write as _;
use std::path::Path;

use super::look::{CHECK_TIMEOUT, first_line};
use super::{Check, Finding, Subject};
use crate::docker::{self};
use crate::plan::Step;

impl Check<'_> {
    /// Whether the compose file in `dir` lets `service` run a second
    /// container beside the first: read with `compose config`, which changes
    /// nothing.
    pub(super) fn compose_service(&mut self, subject: &Subject, service: Option<&str>, dir: &Path) {
        let who = self.who(subject);
        let (Some(service), Some(compose)) = (service, &self.docker.compose) else {
            self.report.notes.push(format!(
                "{who}: its compose service is decided during the run, so the compose file was not read"
            ));
            return;
        };
        if !compose.available {
            return;
        }
        self.report.checks += 1;
        let mut argv = compose.command.clone();
        argv.push("config".to_owned());
        let read = docker::briefly_in(&argv, &self.docker.env, Some(dir), CHECK_TIMEOUT);
        let config = match read {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
            Ok(out) => {
                let said = String::from_utf8_lossy(&out.stderr);
                self.finding(
                    subject,
                    "host".to_owned(),
                    format!(
                        "`{}` in {} fails: {}",
                        argv.join(" "),
                        dir.display(),
                        first_line(&said)
                    ),
                    "give the release's `dir` the folder of the compose file, and make `compose config` read it".to_owned(),
                );
                return;
            }
            Err(why) => {
                self.report.notes.push(format!(
                    "{who}: the compose file in {} was not read ({why})",
                    dir.display()
                ));
                return;
            }
        };
        match crate::kinds::release::compose_problems(&config, service) {
            Ok(problems) => {
                for problem in problems {
                    self.finding(
                        subject,
                        "host".to_owned(),
                        format!("in the compose file in {}: {problem}", dir.display()),
                        format!(
                            "a release starts a second container of `{service}` beside the running one: give it no `container_name` and no host port (the proxy reaches it by the name `{service}`)"
                        ),
                    );
                }
            }
            Err(why) => self.report.notes.push(format!(
                "{who}: the compose file in {} was not read ({why})",
                dir.display()
            )),
        }
    }

    pub(super) fn compose(&mut self) {
        let Some(compose) = &self.docker.compose else {
            return;
        };
        self.report.checks += 1;
        if compose.available || !self.docker.available {
            return;
        }
        let first = self.plan.steps.iter().position(uses_compose);
        let mut problem = format!("{}:", compose.reason);
        for probe in &compose.tried {
            let _ = write!(problem, " `{}` said {};", probe.command, probe.result);
        }
        problem.pop();
        self.report.findings.push(Finding {
            step: first.map_or_else(String::new, |s| self.plan.steps[s].id.clone()),
            hook: false,
            target: "host".to_owned(),
            problem,
            fix: compose.help.clone().unwrap_or_default(),
        });
    }
}

pub(super) fn uses_compose(step: &Step) -> bool {
    step.mentions(&crate::plan::template::Name::Compose, "COMPOSE_CMD")
}
