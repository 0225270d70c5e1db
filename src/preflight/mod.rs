//! Preflight: what can be checked, read-only, before the first change
//! (DESIGN.md, "Preflight"). `apply` stops before any step when a check fails
//! (exit 4); `--plan-only` shows the same findings.
//!
//! What is checked: docker and `{{ compose }}` answer; each container a step
//! or hook execs in runs now and holds the programs the plan will run there (as
//! its `user`, in its `workdir`); a probe has a transport that can run (curl or
//! wget in its container, else something answering its host URL); each program
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

mod look;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::docker::{self, Docker};
use crate::kinds::{AsKind, Known, Need, Scope};
use crate::mask::Masker;
use crate::parallel;
use crate::plan::model::When;
use crate::plan::{Plan, Port, Step};
use look::{CHECK_TIMEOUT, Looked, Seat, first_line};

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
    fn finding(&mut self, subject: &Subject, target: String, problem: String, fix: String) {
        self.report.findings.push(Finding {
            step: self.plan.steps[subject.step].id.clone(),
            hook: subject.hook,
            target,
            problem,
            fix,
        });
    }

    /// Whether the compose file in `dir` lets `service` run a second
    /// container beside the first: read with `compose config`, which changes
    /// nothing.
    fn compose_service(&mut self, subject: &Subject, service: Option<&str>, dir: &Path) {
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

    fn who(&self, subject: &Subject) -> String {
        who(&self.plan.steps[subject.step].id, subject.hook)
    }

    /// The step that creates `what` for `subject` (of those it waits for, the
    /// last: the one no other of them waits for), or one that creates it, that
    /// `subject` does not wait for but could.
    fn creator<T: PartialEq>(
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

    fn compose(&mut self) {
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

    fn subjects(&mut self, subjects: &[Subject]) {
        // Host programs first: those missing are then looked for in the containers.
        let mut host_missing: Vec<(usize, String)> = Vec::new();
        for (i, subject) in subjects.iter().enumerate() {
            if let Need::Host {
                programs: Ok(programs),
                dir,
                path,
            } = &subject.need
            {
                for program in programs {
                    self.report.checks += 1;
                    if !on_host(program, dir, path.as_deref()) {
                        host_missing.push((i, program.clone()));
                    }
                }
            }
        }

        // The containers to look into, and their state.
        let mut containers: BTreeSet<String> = BTreeSet::new();
        for subject in subjects {
            if let Some(Some(c)) = container_of(&subject.need) {
                containers.insert(c.clone());
            }
        }
        let docker_ok = self.docker.available && !self.docker.tried.is_empty();
        let names: Vec<String> = if docker_ok {
            containers.iter().cloned().collect()
        } else {
            Vec::new()
        };
        let states: BTreeMap<String, State> = names
            .iter()
            .cloned()
            .zip(parallel::each(names.iter().collect(), AT_ONCE, |name| {
                state(self.docker, name)
            }))
            .collect();
        self.report.checks += states.len();

        // One exec per seat, for every program wanted there: in the container
        // running now, or, for a container a step will make from an image the
        // plan names, in a throwaway container of that image.
        let mut seats: BTreeMap<Seat, BTreeSet<String>> = BTreeMap::new();
        let mut image_seats: BTreeMap<look::ImageSeat, BTreeSet<String>> = BTreeMap::new();
        for subject in subjects {
            let Some((container, user, workdir, programs)) = wanted(&subject.need) else {
                continue;
            };
            let (waited, _) = self.creator(subject, container, |c| &c.containers);
            if let Some(s) = waited {
                if let Some(image) = self.creates.image_of(s, container) {
                    image_seats
                        .entry((image.clone(), user, workdir))
                        .or_default()
                        .extend(programs);
                }
            } else if matches!(states.get(container), Some(State::Running)) {
                seats
                    .entry((container.clone(), user, workdir))
                    .or_default()
                    .extend(programs);
            }
        }
        let images: Vec<String> = if docker_ok {
            image_seats
                .keys()
                .map(|(image, ..)| image.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        } else {
            Vec::new()
        };
        let present: BTreeMap<String, Result<bool, String>> = images
            .iter()
            .cloned()
            .zip(parallel::each(images.iter().collect(), AT_ONCE, |image| {
                look::image_present(self.docker, image)
            }))
            .collect();
        self.report.checks += present.len();
        let image_list: Vec<(look::ImageSeat, BTreeSet<String>)> = image_seats
            .into_iter()
            .filter(|((image, ..), _)| matches!(present.get(image), Some(Ok(true))))
            .collect();
        let in_images = look_all(image_list, |seat, programs| {
            look::in_image(self.docker, seat, programs)
        });
        self.report.checks += in_images.len();
        let running: Vec<String> = states
            .iter()
            .filter(|(_, s)| matches!(s, State::Running))
            .map(|(c, _)| c.clone())
            .collect();
        for c in &running {
            seats
                .entry((c.clone(), None, None))
                .or_default()
                .extend(host_missing.iter().map(|(_, p)| p.clone()));
        }
        let seat_list: Vec<(Seat, BTreeSet<String>)> = seats.into_iter().collect();
        let looked = look_all(seat_list, |seat, programs| {
            look::in_container(self.docker, seat, programs)
        });
        self.report.checks += looked.len();

        let ctx = Context {
            states: &states,
            looked: &looked,
            running: &running,
            docker_ok,
            present: &present,
            in_images: &in_images,
        };
        for (i, subject) in subjects.iter().enumerate() {
            match &subject.need {
                Need::Container { .. } => self.container_need(subject, &ctx),
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
                    let missing: Vec<String> = host_missing
                        .iter()
                        .filter(|(j, _)| *j == i)
                        .map(|(_, p)| p.clone())
                        .collect();
                    for program in missing {
                        self.host_program(subject, &ctx, &program);
                    }
                }
                Need::Compose { service, dir } => {
                    self.compose_service(subject, service.as_deref(), dir);
                }
                Need::Probe {
                    container,
                    url,
                    host_url,
                } => self.probe(
                    subject,
                    &ctx,
                    container.as_ref(),
                    url.as_ref(),
                    host_url.as_ref(),
                ),
            }
        }
    }

    /// Where what `subject` runs in `container` can be looked for: the
    /// container running now, or the image a step it waits for makes it from.
    /// Reports what is wrong, and what is left to the run.
    fn usable_container(&mut self, subject: &Subject, ctx: &Context<'_>, container: &str) -> Where {
        let (waited, other) = self.creator(subject, &container.to_owned(), |c| &c.containers);
        if let Some(maker) = waited {
            if let Some(image) = self.creates.image_of(maker, container) {
                return Where::Image {
                    image: image.clone(),
                    maker,
                };
            }
            let why = format!(
                "name the image it is made from (`creates = {{ containers = [{{ name = \"{container}\", image = \"…\" }}] }}`) to have them checked before the run"
            );
            self.leave(container, maker, subject, why);
            return Where::Nowhere;
        }
        let state = ctx.states.get(container).cloned();
        let problem = match state {
            Some(State::Running) => return Where::Container,
            None => {
                if !ctx.docker_ok {
                    self.report.notes.push(format!(
                        "container `{container}`: docker is not reachable, so it was not looked into"
                    ));
                }
                return Where::Nowhere;
            }
            Some(State::Unknown(why)) => {
                self.report.notes.push(format!(
                    "container `{container}`: its state is unknown ({why}), so it was not looked into"
                ));
                return Where::Nowhere;
            }
            Some(State::Stopped(status)) => {
                format!("container `{container}` is not running (its state: {status})")
            }
            Some(State::Missing) => format!("there is no container named `{container}`"),
        };
        let fix = if let Some(s) = other {
            format!(
                "step `{}` makes it: add it to this step's `needs`",
                self.plan.steps[s].id
            )
        } else {
            let mut fix = format!(
                "start it before the deploy; or, if a step of the plan starts it, mark that step with `creates = {{ containers = [\"{container}\"] }}` and make this step need it"
            );
            let similar = similar(ctx.running, container);
            if !similar.is_empty() {
                let _ = write!(
                    fix,
                    " (running containers with similar names: {})",
                    similar.join(", ")
                );
            }
            fix
        };
        self.finding(subject, format!("container {container}"), problem, fix);
        Where::Nowhere
    }

    /// What the look for `subject`'s programs in `container` found, and where
    /// it looked; `None` when nothing could be looked into (reported, or left
    /// to the run).
    fn found<'c>(
        &mut self,
        subject: &Subject,
        ctx: &'c Context<'_>,
        container: &str,
        user: Option<&String>,
        workdir: Option<&String>,
    ) -> Option<(&'c Looked, Seen)> {
        let seat = |place: &str| (place.to_owned(), user.cloned(), workdir.cloned());
        match self.usable_container(subject, ctx, container) {
            Where::Nowhere => None,
            Where::Container => ctx
                .looked
                .get(&seat(container))
                .map(|l| (l, Seen::Container)),
            Where::Image { image, maker } => {
                let why = match ctx.present.get(&image) {
                    Some(Ok(true)) => {
                        return ctx
                            .in_images
                            .get(&seat(&image))
                            .map(|l| (l, Seen::Image { image, maker }));
                    }
                    None => {
                        format!("its image `{image}` was not looked into: docker is not reachable")
                    }
                    Some(Err(why)) => format!("its image `{image}` could not be inspected ({why})"),
                    Some(Ok(false)) => match self.image_maker(subject, &image) {
                        Some(b) => format!(
                            "its image `{image}` is made by step `{}` during the run",
                            self.plan.steps[b].id
                        ),
                        None => format!("its image `{image}` is not on this engine yet"),
                    },
                };
                self.leave(container, maker, subject, why);
                None
            }
        }
    }

    /// The step `subject` waits for that builds or pulls `image`, if any.
    fn image_maker(&self, subject: &Subject, image: &str) -> Option<usize> {
        self.creator(subject, &image.to_owned(), |c| &c.images).0
    }

    /// Leaves what `subject` runs in `container` (which step `maker` makes)
    /// to the run, saying why once per container.
    fn leave(&mut self, container: &str, maker: usize, subject: &Subject, why: String) {
        let left = self
            .left
            .entry((container.to_owned(), maker))
            .or_insert(Left {
                who: Vec::new(),
                why,
            });
        if !left.who.contains(&(subject.step, subject.hook)) {
            left.who.push((subject.step, subject.hook));
        }
    }

    /// One note per container whose steps and hooks were left to the run.
    fn fold_left(&mut self) {
        for ((container, maker), left) in std::mem::take(&mut self.left) {
            let id = |s: usize| format!("`{}`", self.plan.steps[s].id);
            let steps: Vec<String> = left.who.iter().filter(|w| !w.1).map(|w| id(w.0)).collect();
            let hooks: Vec<String> = left.who.iter().filter(|w| w.1).map(|w| id(w.0)).collect();
            let mut what = Vec::new();
            if !steps.is_empty() {
                what.push(format!(
                    "{} {}",
                    if steps.len() == 1 { "step" } else { "steps" },
                    steps.join(", ")
                ));
            }
            if !hooks.is_empty() {
                what.push(format!(
                    "the rollback {} of {}",
                    if hooks.len() == 1 { "hook" } else { "hooks" },
                    hooks.join(", ")
                ));
            }
            self.report.notes.push(format!(
                "container `{container}` is made by step `{}`, so what {} run there is left to the run; {}",
                self.plan.steps[maker].id,
                what.join(" and "),
                left.why
            ));
        }
    }

    fn container_need(&mut self, subject: &Subject, ctx: &Context<'_>) {
        let Need::Container {
            container,
            user,
            workdir,
            programs,
        } = &subject.need
        else {
            return;
        };
        let Some(container) = container else {
            let who = self.who(subject);
            self.report.notes.push(format!(
                "{who}: its container is a step's output, decided during the run"
            ));
            return;
        };
        let Some((looked, seen)) =
            self.found(subject, ctx, container, user.as_ref(), workdir.as_ref())
        else {
            return;
        };
        match looked {
            Looked::Missing(missing) => {
                for program in programs.iter().filter(|p| missing.contains(*p)) {
                    let where_ = match (workdir, program.contains('/')) {
                        (Some(w), true) => format!("no such executable file under {w}"),
                        (None, true) => {
                            "no such executable file in its working directory".to_owned()
                        }
                        (_, false) => "not on its PATH".to_owned(),
                    };
                    self.missing_program(subject, container, &seen, program, &where_);
                }
            }
            Looked::Failed(why) => {
                let (problem, fix) = exec_failure(
                    why,
                    &seen.place(container),
                    user.as_deref(),
                    workdir.as_deref(),
                );
                if let Some(fix) = fix {
                    self.finding(subject, format!("container {container}"), problem, fix);
                } else {
                    let who = self.who(subject);
                    self.report.notes.push(format!("{who}: {problem}"));
                }
            }
        }
    }

    /// A program `subject` runs in `container` that the look did not find.
    fn missing_program(
        &mut self,
        subject: &Subject,
        container: &str,
        seen: &Seen,
        program: &str,
        where_: &str,
    ) {
        let (problem, fix) = match seen {
            Seen::Container => (
                format!("`{program}` is not in container `{container}` ({where_})"),
                if on_host(program, &self.plan.dir, None) {
                    format!(
                        "`{program}` is on this host, not in the container: run it with a `shell` step, or install it in the image"
                    )
                } else {
                    "check the command and the image; if a step of the plan recreates the container with a new image that has it, mark that step with `creates = { containers = [{ name = \"…\", image = \"…\" }] }` and make this step need it".to_owned()
                },
            ),
            Seen::Image { image, maker } => {
                if let Some(b) = self.image_maker(subject, image) {
                    let who = self.who(subject);
                    self.report.notes.push(format!(
                        "{who}: `{program}` is not in image `{image}` as it is now, and step `{}` makes that image anew",
                        self.plan.steps[b].id
                    ));
                    return;
                }
                (
                    format!(
                        "`{program}` is not in image `{image}`, which step `{}` makes container `{container}` from ({where_})",
                        self.plan.steps[*maker].id
                    ),
                    format!(
                        "check the command and the image; if a step of the plan builds or pulls that image anew, mark it with `creates = {{ images = [\"{image}\"] }}` and make this step need it"
                    ),
                )
            }
        };
        self.finding(subject, format!("container {container}"), problem, fix);
    }

    fn host_program(&mut self, subject: &Subject, ctx: &Context<'_>, program: &str) {
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

    fn probe(
        &mut self,
        subject: &Subject,
        ctx: &Context<'_>,
        container: Option<&Known>,
        url: Option<&String>,
        host_url: Option<&Known>,
    ) {
        let who = self.who(subject);
        let Some(container) = container else {
            match url {
                Some(url) => self.host_url(subject, ctx, url, None),
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
        let tools = match looked {
            Looked::Missing(missing) => ["curl", "wget"]
                .into_iter()
                .filter(|t| !missing.contains(*t))
                .count(),
            Looked::Failed(why) => {
                self.report.notes.push(format!(
                    "{who}: curl and wget were not looked for in {place} ({})",
                    first_line(why)
                ));
                return;
            }
        };
        if tools > 0 {
            return;
        }
        if let Seen::Image { image, .. } = &seen
            && let Some(b) = self.image_maker(subject, image)
        {
            self.report.notes.push(format!(
                "{who}: image `{image}` has neither curl nor wget as it is now, and step `{}` makes that image anew",
                self.plan.steps[b].id
            ));
            return;
        }
        match host_url {
            Some(Some(host_url)) => self.host_url(subject, ctx, host_url, Some(container)),
            Some(None) => self.report.notes.push(format!(
                "{who}: {place} has neither curl nor wget; its `host_url` is a step's output, decided during the run"
            )),
            None => self.finding(
                subject,
                format!("container {container}"),
                format!(
                    "the probe has no transport: {place} has neither curl nor wget, and the probe has no `host_url`"
                ),
                "add `host_url` (the app through the port this host publishes, e.g. the reverse proxy's), or install curl or wget in the image".to_owned(),
            ),
        }
    }

    /// A URL probed from this host: something must answer on its port when it
    /// is a loopback one (other hosts are not this machine's to check).
    fn host_url(
        &mut self,
        subject: &Subject,
        ctx: &Context<'_>,
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
                "probe from inside the container: `container = \"{c}\"` with `url = \"{url}\"` (curl, else wget, run there); keep a host-side `host_url` only for a port this host publishes (the reverse proxy's)"
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

/// Looks into every seat at once (a few at a time): what each look found.
fn look_all<S: Clone + Ord + Sync>(
    seats: Vec<(S, BTreeSet<String>)>,
    look: impl Fn(&S, &BTreeSet<String>) -> Looked + Sync,
) -> BTreeMap<S, Looked> {
    let found = parallel::each(seats.iter().collect(), AT_ONCE, |(seat, programs)| {
        look(seat, programs)
    });
    seats.into_iter().map(|(seat, _)| seat).zip(found).collect()
}

/// What the checks found out, for the findings.
struct Context<'a> {
    states: &'a BTreeMap<String, State>,
    looked: &'a BTreeMap<Seat, Looked>,
    running: &'a [String],
    docker_ok: bool,
    /// Whether the engine has each image a container will be made from.
    present: &'a BTreeMap<String, Result<bool, String>>,
    /// What a look into each image found.
    in_images: &'a BTreeMap<look::ImageSeat, Looked>,
}

/// The container a need runs in, as whom, from where, and the programs it
/// runs there (for a probe: curl and wget).
type Wanted<'a> = (&'a String, Option<String>, Option<String>, Vec<String>);

fn wanted(need: &Need) -> Option<Wanted<'_>> {
    match need {
        Need::Container {
            container: Some(c),
            user,
            workdir,
            programs,
        } => Some((c, user.clone(), workdir.clone(), programs.clone())),
        Need::Probe {
            container: Some(Some(c)),
            ..
        } => Some((c, None, None, vec!["curl".to_owned(), "wget".to_owned()])),
        _ => None,
    }
}

fn uses_compose(step: &Step) -> bool {
    step.mentions(&crate::plan::template::Name::Compose, "COMPOSE_CMD")
}

fn container_of(need: &Need) -> Option<&Known> {
    match need {
        Need::Container { container, .. } => Some(container),
        Need::Probe {
            container: Some(c), ..
        } => Some(c),
        _ => None,
    }
}

fn docker_argv(docker: &Docker, args: &[&str]) -> Vec<String> {
    let mut argv = docker.command.clone();
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    argv
}

fn state(docker: &Docker, name: &str) -> State {
    let argv = docker_argv(
        docker,
        &[
            "inspect",
            "--type",
            "container",
            "--format",
            "{{.State.Status}}",
            "--",
            name,
        ],
    );
    match docker::briefly_with(&argv, &docker.env, CHECK_TIMEOUT) {
        Ok(out) if out.status.success() => {
            let status = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if status == "running" {
                State::Running
            } else {
                State::Stopped(status)
            }
        }
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.to_ascii_lowercase().contains("no such") {
                State::Missing
            } else if stderr.trim().is_empty() {
                State::Unknown(format!("`docker inspect` ended with {}", out.status))
            } else {
                State::Unknown(first_line(&stderr).to_owned())
            }
        }
        Err(why) => State::Unknown(why.to_string()),
    }
}

/// Where a look was made: the container running now, or the image a step
/// makes the container from.
enum Seen {
    Container,
    Image { image: String, maker: usize },
}

impl Seen {
    /// Where, in words: "container `app`", "image `app:v2`".
    fn place(&self, container: &str) -> String {
        match self {
            Seen::Container => format!("container `{container}`"),
            Seen::Image { image, .. } => format!("image `{image}`"),
        }
    }
}

/// What a failed `docker exec` says about the plan: the problem, and the fix
/// when it is the plan's (`None`: the check could not run, e.g. no `sh`).
fn exec_failure(
    why: &str,
    place: &str,
    user: Option<&str>,
    workdir: Option<&str>,
) -> (String, Option<String>) {
    let lower = why.to_ascii_lowercase();
    if let Some(user) = user
        && (lower.contains("unable to find user")
            || lower.contains("no matching entries in passwd"))
    {
        return (
            format!("there is no user `{user}` in {place}"),
            Some("check `user`: a name from the container's /etc/passwd, or a uid".to_owned()),
        );
    }
    if let Some(workdir) = workdir
        && (lower.contains("chdir") || lower.contains("no such file or directory"))
        && !lower.contains("\"sh\"")
    {
        return (
            format!("there is no directory `{workdir}` in {place}"),
            Some("check `workdir`: an absolute path that exists in the container".to_owned()),
        );
    }
    (
        format!(
            "the programs it runs were not looked for in {place}: {}",
            first_line(why)
        ),
        None,
    )
}

/// Whether the host runs `program` from `dir`: a path, or a name on `PATH`.
fn on_host(program: &str, dir: &Path, path: Option<&str>) -> bool {
    if program.contains('/') {
        return is_executable(&dir.join(program));
    }
    let path = path
        .map(std::ffi::OsString::from)
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_default();
    which::which_in(program, Some(path), dir).is_ok()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The host and port of a URL on this host's loopback.
fn loopback(url: &str) -> Option<(String, u16)> {
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
fn answers(host: &str, port: u16) -> bool {
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
fn exposing(docker: &Docker, port: u16) -> Vec<String> {
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

/// Running containers whose names are close to `name`.
fn similar(running: &[String], name: &str) -> Vec<String> {
    running
        .iter()
        .filter(|other| {
            other.as_str() != name
                && (other.contains(name)
                    || name.contains(other.as_str())
                    || strsim::jaro_winkler(name, other) >= 0.85)
        })
        .take(5)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
