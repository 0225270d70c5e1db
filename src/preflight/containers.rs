//! The checks of what runs in a container: that it runs (or which step makes
//! it), and that the programs a step runs there are in it or its image.

use std::fmt::Write as _;

use super::gather::Context;
use super::host::on_host;
use super::look::{Looked, first_line};
use super::{Check, Left, State, Subject, Where};
use crate::kinds::Need;

impl Check<'_> {
    /// Where what `subject` runs in `container` can be looked for: the
    /// container running now, or the image a step it waits for makes it from.
    /// Reports what is wrong, and what is left to the run.
    pub(super) fn usable_container(
        &mut self,
        subject: &Subject,
        ctx: &Context,
        container: &str,
    ) -> Where {
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
            let similar = similar(&ctx.running, container);
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
    pub(super) fn found<'c>(
        &mut self,
        subject: &Subject,
        ctx: &'c Context,
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
    pub(super) fn image_maker(&self, subject: &Subject, image: &str) -> Option<usize> {
        self.creator(subject, &image.to_owned(), |c| &c.images).0
    }

    /// Leaves what `subject` runs in `container` (which step `maker` makes)
    /// to the run, saying why once per container.
    pub(super) fn leave(&mut self, container: &str, maker: usize, subject: &Subject, why: String) {
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
    pub(super) fn fold_left(&mut self) {
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

    pub(super) fn container_need(&mut self, subject: &Subject, ctx: &Context) {
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
    pub(super) fn missing_program(
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
}

/// Where a look was made: the container running now, or the image a step
/// makes the container from.
pub(super) enum Seen {
    Container,
    Image { image: String, maker: usize },
}

impl Seen {
    /// Where, in words: "container `app`", "image `app:v2`".
    pub(super) fn place(&self, container: &str) -> String {
        match self {
            Seen::Container => format!("container `{container}`"),
            Seen::Image { image, .. } => format!("image `{image}`"),
        }
    }
}

/// What a failed `docker exec` says about the plan: the problem, and the fix
/// when it is the plan's (`None`: the check could not run, e.g. no `sh`).
pub(super) fn exec_failure(
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

/// Running containers whose names are close to `name`.
pub(super) fn similar(running: &[String], name: &str) -> Vec<String> {
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
