//! Preflight: what can be checked, read-only, before the first change
//! (DESIGN.md, "Preflight"). `apply` stops before any step when a check fails
//! (exit 4); `--plan-only` shows the same findings.
//!
//! What is checked: docker and `{{ compose }}` answer; each container a step
//! or hook execs in runs now and holds the programs the plan will run there (as
//! its `user`, in its `workdir`); a probe has a transport that can run (one of
//! the tools its kind names in its container, else something answering its host
//! URL); each program
//! a host script runs by name is on this host. Whatever an earlier step
//! `creates` (a container it recreates, a program it installs, a port it
//! publishes) is left to the run: it does not exist yet, or not as it will.
//!
//! A container that a step makes from an image the plan names is checked in
//! that image instead (look.rs), when this engine has it.
//!
//! The checks only run `docker inspect`, `docker ps`, `docker image inspect`,
//! `docker exec … sh -c 'command -v …'` and, for an image, the same look in a
//! throwaway container of it (`docker run --rm --network=none`), and open
//! (then close) a TCP connection to loopback ports.

mod compose;
mod containers;
mod gather;
mod host;
mod look;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::docker::Docker;
use crate::kinds::{AsKind, Need, Scope};
use crate::mask::Masker;
use crate::parallel;
use crate::plan::model::When;
use crate::plan::{Plan, Port};
use gather::Context;

/// How long a TCP connection to a loopback port may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Checks run at once.
const AT_ONCE: usize = 8;

/// A problem the run would meet, found before it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Finding {
    /// The step (or the step whose rollback hook it is).
    pub(crate) step: String,
    /// Whether it is the step's rollback hook.
    pub(crate) hook: bool,
    /// `host`, or `container NAME`.
    pub(crate) target: String,
    pub(crate) problem: String,
    pub(crate) fix: String,
}

impl Finding {
    fn who(&self) -> String {
        who(&self.step, self.hook)
    }
}

/// A step, or its rollback hook, in words.
fn who(step: &str, hook: bool) -> String {
    if hook {
        format!("rollback hook of `{step}`")
    } else {
        format!("step `{step}`")
    }
}

/// What the preflight found.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Report {
    pub(crate) findings: Vec<Finding>,
    /// What was left to the run, and why.
    pub(crate) notes: Vec<String>,
    /// How many checks ran.
    pub(crate) checks: usize,
}

impl Report {
    /// This report with another's findings and notes.
    fn merge(&mut self, other: Report) {
        self.findings.extend(other.findings);
        self.notes.extend(other.notes);
        self.checks += other.checks;
    }

    /// The findings, one paragraph each, as `apply` and the preview print them.
    pub(crate) fn findings_text(&self, indent: &str) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let place = match f.target.strip_prefix("container ") {
                Some(name) => format!("in container `{name}`"),
                None => "on the host".to_owned(),
            };
            let _ = writeln!(out, "{indent}{} ({place}): {}", f.who(), f.problem);
            let _ = writeln!(out, "{indent}  fix: {}", f.fix);
        }
        out
    }
}

/// One step or hook and what it needs.
struct Subject {
    step: usize,
    hook: bool,
    need: Need,
}

/// Runs every check of the steps that run once; `docker` as decided for the
/// run (its compose too).
pub(crate) fn run(plan: &Plan, docker: &Docker, masker: &Masker) -> Report {
    run_on(plan, docker, masker, None)
}

/// Runs every check: of the steps that run once with `docker`, and of each
/// host's steps with that host's docker (`hosts`, by host index), at once.
pub(crate) fn run_all(plan: &Plan, docker: &Docker, hosts: &[&Docker], masker: &Masker) -> Report {
    let mut report = run(plan, docker, masker);
    let per_host = parallel::each(
        hosts.iter().enumerate().collect(),
        hosts.len(),
        |(h, docker)| run_on(plan, docker, masker, Some(h)),
    );
    for other in per_host {
        report.merge(other);
    }
    report
}

/// Runs every check of the steps that run on `host` (with its docker), or of
/// those that run once; a finding about a host's step names its instance.
pub(crate) fn run_on(plan: &Plan, docker: &Docker, masker: &Masker, host: Option<usize>) -> Report {
    let no_output = |_: &str| None;
    let scope = Scope {
        plan,
        docker,
        host: host.map(|h| plan.hosts[h].name.as_str()),
        host_index: host,
        mask_secrets: false,
        run_id: None,
        output: &no_output,
    };
    let mut subjects = Vec::new();
    let mine = |step: &crate::plan::Step| match host {
        None => step.on.is_empty(),
        Some(h) => step.on.contains(&h),
    };
    for (s, step) in plan.steps.iter().enumerate().filter(|(_, s)| mine(s)) {
        for need in step.action.as_kind().needs(&scope, &scope.env(&step.env)) {
            subjects.push(Subject {
                step: s,
                hook: false,
                need,
            });
        }
        if let Some(hook) = &step.rollback {
            for need in hook.action.as_kind().needs(&scope, &scope.env(&hook.env)) {
                subjects.push(Subject {
                    step: s,
                    hook: true,
                    need,
                });
            }
        }
    }
    let mut check = Check {
        plan,
        docker,
        creates: Creates::resolve(plan, &scope),
        report: Report::default(),
        left: BTreeMap::new(),
    };
    check.compose();
    check.subjects(&subjects);
    check.fold_left();
    let mut report = check.report;
    if let Some(h) = host {
        for f in &mut report.findings {
            if !f.step.is_empty() {
                f.step = format!("{}@{}", f.step, plan.hosts[h].name);
            }
        }
    }
    for f in &mut report.findings {
        for text in [&mut f.target, &mut f.problem, &mut f.fix] {
            *text = masker.mask(text);
        }
    }
    let mut seen = BTreeSet::new();
    report.notes = report
        .notes
        .iter()
        .filter(|n| seen.insert((*n).clone()))
        .map(|n| masker.mask(n))
        .collect();
    report
}

/// What each step creates, templates resolved.
struct Creates {
    containers: Vec<Vec<String>>,
    /// The image each of those containers is made from, when the plan says.
    made_from: Vec<Vec<Option<String>>>,
    images: Vec<Vec<String>>,
    programs: Vec<Vec<String>>,
    ports: Vec<Vec<u16>>,
}

impl Creates {
    fn resolve(plan: &Plan, scope: &Scope<'_>) -> Self {
        let each = |f: &dyn Fn(&crate::plan::Creates) -> Vec<String>| -> Vec<Vec<String>> {
            plan.steps.iter().map(|s| f(&s.creates)).collect()
        };
        Self {
            containers: each(&|c| c.containers.iter().map(|m| scope.render(&m.name)).collect()),
            made_from: plan
                .steps
                .iter()
                .map(|s| {
                    s.creates
                        .containers
                        .iter()
                        .map(|m| m.image.as_ref().map(|i| scope.render(i)))
                        .collect()
                })
                .collect(),
            images: each(&|c| c.images.iter().map(|i| scope.render(i)).collect()),
            programs: each(&|c| c.programs.clone()),
            ports: plan
                .steps
                .iter()
                .map(|s| {
                    s.creates
                        .ports
                        .iter()
                        .filter_map(|p| match p {
                            Port::Number(n) => Some(*n),
                            Port::Template(t) => scope.render(t).trim().parse().ok(),
                        })
                        .collect()
                })
                .collect(),
        }
    }

    /// The image step `s` makes `container` from, when the plan says.
    fn image_of(&self, s: usize, container: &str) -> Option<&String> {
        let i = self.containers[s].iter().position(|c| c == container)?;
        self.made_from[s][i].as_ref()
    }
}

/// The steps that may have run before `subject`'s work starts: a plan step's
/// ancestors; for a hook or an after-phase step, any step.
fn before(plan: &Plan, step: usize, hook: bool) -> BTreeSet<usize> {
    if hook || plan.steps[step].when != When::Success {
        return (0..plan.steps.len()).collect();
    }
    let mut seen = BTreeSet::new();
    let mut stack: Vec<usize> = plan.steps[step].needs.clone();
    while let Some(s) = stack.pop() {
        if seen.insert(s) {
            stack.extend(&plan.steps[s].needs);
        }
    }
    seen
}

/// A container's state, as `docker inspect` gives it.
#[derive(Debug, Clone)]
enum State {
    Running,
    Stopped(String),
    Missing,
    Unknown(String),
}

struct Check<'p> {
    plan: &'p Plan,
    docker: &'p Docker,
    creates: Creates,
    report: Report,
    /// What is left to the run in each container a step makes: one note per
    /// container and step that makes it, however many steps and hooks run there.
    left: BTreeMap<(String, usize), Left>,
}

/// The steps and hooks that run in a container a step makes, left to the run.
struct Left {
    who: Vec<(usize, bool)>,
    why: String,
}

/// Where what a step runs in a container can be looked for before the run.
enum Where {
    /// In the container running now.
    Container,
    /// In the image that `maker` makes the container from.
    Image { image: String, maker: usize },
    /// Nowhere: reported, or left to the run.
    Nowhere,
}

impl Check<'_> {
    pub(super) fn finding(
        &mut self,
        subject: &Subject,
        target: String,
        problem: String,
        fix: String,
    ) {
        self.report.findings.push(Finding {
            step: self.plan.steps[subject.step].id.clone(),
            hook: subject.hook,
            target,
            problem,
            fix,
        });
    }

    pub(super) fn who(&self, subject: &Subject) -> String {
        who(&self.plan.steps[subject.step].id, subject.hook)
    }

    /// The step that creates `what` for `subject` (of those it waits for, the
    /// last: the one no other of them waits for), or one that creates it, that
    /// `subject` does not wait for but could.
    pub(super) fn creator<T: PartialEq>(
        &self,
        subject: &Subject,
        what: &T,
        of: impl Fn(&Creates) -> &Vec<Vec<T>>,
    ) -> (Option<usize>, Option<usize>) {
        let waits_for = before(self.plan, subject.step, subject.hook);
        let all = of(&self.creates);
        let mut waited = None;
        let mut other = None;
        for (s, made) in all.iter().enumerate() {
            if made.contains(what) {
                if waits_for.contains(&s) {
                    // A later maker (one that waits for this one) wins: the
                    // release's switch, not the first provisioning.
                    if waited.is_none_or(|w| before(self.plan, s, false).contains(&w)) {
                        waited = Some(s);
                    }
                } else if s != subject.step && !before(self.plan, s, false).contains(&subject.step)
                {
                    // A step that runs after this one cannot be waited for.
                    other.get_or_insert(s);
                }
            }
        }
        (waited, other)
    }

    /// Judges every subject from what was gathered.
    fn subjects(&mut self, subjects: &[Subject]) {
        let ctx = self.gather(subjects);
        for (i, subject) in subjects.iter().enumerate() {
            self.judge(i, subject, &ctx);
        }
    }

    /// The findings and notes about one subject.
    fn judge(&mut self, i: usize, subject: &Subject, ctx: &Context) {
        match &subject.need {
            Need::Container { .. } => self.container_need(subject, ctx),
            Need::Host {
                programs: Err(crate::plan::script::Unread::Syntax),
                ..
            } => {
                let who = self.who(subject);
                self.report.notes.push(format!(
                    "{who}: its script could not be read, so the programs it runs were not looked for"
                ));
            }
            Need::Host {
                programs: Err(crate::plan::script::Unread::TooDeep(depth)),
                ..
            } => self.finding(
                subject,
                "host".to_owned(),
                format!(
                    "its script nests blocks about {depth} deep, more than the preflight reads ({}), so what it runs cannot be checked",
                    crate::plan::script::MAX_NESTING
                ),
                "split the script: move its inner blocks into functions or a script file of their own".to_owned(),
            ),
            Need::Host { .. } => {
                let missing: Vec<String> = ctx
                    .host_missing
                    .iter()
                    .filter(|(j, _)| *j == i)
                    .map(|(_, p)| p.clone())
                    .collect();
                for program in &missing {
                    self.host_program(subject, ctx, program);
                }
            }
            Need::Compose { service, dir } => {
                self.compose_service(subject, service.as_deref(), dir);
            }
            Need::Probe {
                container,
                tools,
                url,
                host_url,
            } => self.probe(
                subject,
                ctx,
                container.as_ref(),
                tools,
                url.as_ref(),
                host_url.as_ref(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::containers::exec_failure;
    use super::host::{answers, loopback};

    #[test]
    fn loopback_urls_and_their_ports() {
        assert_eq!(
            loopback("http://localhost:3000/up"),
            Some(("localhost".to_owned(), 3000))
        );
        assert_eq!(
            loopback("https://127.0.0.1/"),
            Some(("127.0.0.1".to_owned(), 443))
        );
        assert_eq!(loopback("http://[::1]/x"), Some(("::1".to_owned(), 80)));
        assert_eq!(loopback("http://app:3000/up"), None);
        assert_eq!(loopback("http://example.com/"), None);
    }

    #[test]
    fn a_listener_answers_and_a_closed_port_does_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert!(answers("127.0.0.1", port));
        drop(listener);
        assert!(!answers("127.0.0.1", port));
    }

    #[test]
    fn exec_failures_name_the_field() {
        let (problem, fix) = exec_failure(
            "unable to find user deploy: no matching entries in passwd file",
            "container `app`",
            Some("deploy"),
            None,
        );
        assert_eq!(problem, "there is no user `deploy` in container `app`");
        assert!(fix.is_some());
        let (_, fix) = exec_failure(
            "OCI runtime exec failed: exec: \"sh\": executable file not found in $PATH",
            "container `app`",
            None,
            None,
        );
        assert_eq!(fix, None);
    }
}
