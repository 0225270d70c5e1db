//! What the preflight looks at before it judges: which programs this host
//! lacks, the state of each container, and one look per container or image
//! for every program wanted there (a few at a time).

use std::collections::{BTreeMap, BTreeSet};

use super::look::{self, CHECK_TIMEOUT, Looked, Seat, first_line};
use super::{AT_ONCE, Check, State, Subject};
use crate::docker::{self, Docker};
use crate::kinds::{Known, Need};
use crate::parallel;

impl Check<'_> {
    /// Everything the findings are judged from.
    pub(super) fn gather(&mut self, subjects: &[Subject]) -> Context {
        let host_missing = self.host_programs(subjects);
        let docker_ok = self.docker.available && !self.docker.tried.is_empty();
        let states = self.states(subjects, docker_ok);
        let running: Vec<String> = states
            .iter()
            .filter(|(_, s)| matches!(s, State::Running))
            .map(|(c, _)| c.clone())
            .collect();
        let (mut seats, image_seats) = self.seats(subjects, &states);
        let (present, in_images) = self.images(image_seats, docker_ok);
        // A program a host script lacks is looked for in every running
        // container: the fix may be to run it there.
        for c in &running {
            seats
                .entry((c.clone(), None, None))
                .or_default()
                .extend(host_missing.iter().map(|(_, p)| p.clone()));
        }
        let looked = look_all(seats.into_iter().collect(), |seat, programs| {
            look::in_container(self.docker, seat, programs)
        });
        self.report.checks += looked.len();
        Context {
            states,
            looked,
            running,
            docker_ok,
            present,
            in_images,
            host_missing,
        }
    }

    /// The programs host scripts run that are not on this host, by subject.
    fn host_programs(&mut self, subjects: &[Subject]) -> Vec<(usize, String)> {
        let mut missing = Vec::new();
        for (i, subject) in subjects.iter().enumerate() {
            if let Need::Host {
                programs: Ok(programs),
                dir,
                path,
            } = &subject.need
            {
                for program in programs {
                    self.report.checks += 1;
                    if !super::host::on_host(program, dir, path.as_deref()) {
                        missing.push((i, program.clone()));
                    }
                }
            }
        }
        missing
    }

    /// The state of each container a subject runs in (none without docker).
    fn states(&mut self, subjects: &[Subject], docker_ok: bool) -> BTreeMap<String, State> {
        let names: BTreeSet<String> = subjects
            .iter()
            .filter_map(|s| container_of(&s.need).cloned().flatten())
            .filter(|_| docker_ok)
            .collect();
        let names: Vec<String> = names.into_iter().collect();
        let states: BTreeMap<String, State> = names
            .iter()
            .cloned()
            .zip(parallel::each(names.iter().collect(), AT_ONCE, |name| {
                state(self.docker, name)
            }))
            .collect();
        self.report.checks += states.len();
        states
    }

    /// One seat per place, with every program wanted there: the container
    /// running now, or, for a container a step will make from an image the
    /// plan names, that image.
    #[allow(clippy::type_complexity)]
    fn seats(
        &self,
        subjects: &[Subject],
        states: &BTreeMap<String, State>,
    ) -> (
        BTreeMap<Seat, BTreeSet<String>>,
        BTreeMap<look::ImageSeat, BTreeSet<String>>,
    ) {
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
        (seats, image_seats)
    }

    /// Whether the engine has each image, and for those it has, what a look
    /// in a throwaway container of it found.
    #[allow(clippy::type_complexity)]
    fn images(
        &mut self,
        image_seats: BTreeMap<look::ImageSeat, BTreeSet<String>>,
        docker_ok: bool,
    ) -> (
        BTreeMap<String, Result<bool, String>>,
        BTreeMap<look::ImageSeat, Looked>,
    ) {
        let images: BTreeSet<String> = image_seats
            .keys()
            .filter(|_| docker_ok)
            .map(|(image, ..)| image.clone())
            .collect();
        let images: Vec<String> = images.into_iter().collect();
        let present: BTreeMap<String, Result<bool, String>> = images
            .iter()
            .cloned()
            .zip(parallel::each(images.iter().collect(), AT_ONCE, |image| {
                look::image_present(self.docker, image)
            }))
            .collect();
        self.report.checks += present.len();
        let wanted: Vec<(look::ImageSeat, BTreeSet<String>)> = image_seats
            .into_iter()
            .filter(|((image, ..), _)| matches!(present.get(image), Some(Ok(true))))
            .collect();
        let in_images = look_all(wanted, |seat, programs| {
            look::in_image(self.docker, seat, programs)
        });
        self.report.checks += in_images.len();
        (present, in_images)
    }
}

/// Looks into every seat at once (a few at a time): what each look found.
pub(super) fn look_all<S: Clone + Ord + Sync>(
    seats: Vec<(S, BTreeSet<String>)>,
    look: impl Fn(&S, &BTreeSet<String>) -> Looked + Sync,
) -> BTreeMap<S, Looked> {
    let found = parallel::each(seats.iter().collect(), AT_ONCE, |(seat, programs)| {
        look(seat, programs)
    });
    seats.into_iter().map(|(seat, _)| seat).zip(found).collect()
}

/// What the checks found out, for the findings.
pub(super) struct Context {
    pub(super) states: BTreeMap<String, State>,
    pub(super) looked: BTreeMap<Seat, Looked>,
    pub(super) running: Vec<String>,
    pub(super) docker_ok: bool,
    /// Whether the engine has each image a container will be made from.
    pub(super) present: BTreeMap<String, Result<bool, String>>,
    /// What a look into each image found.
    pub(super) in_images: BTreeMap<look::ImageSeat, Looked>,
    /// The programs each host script runs that this host lacks (by subject).
    pub(super) host_missing: Vec<(usize, String)>,
}

/// The container a need runs in, as whom, from where, and the programs it
/// runs there (for a probe: the tools its kind names).
type Wanted<'a> = (&'a String, Option<String>, Option<String>, Vec<String>);

pub(super) fn wanted(need: &Need) -> Option<Wanted<'_>> {
    match need {
        Need::Container {
            container: Some(c),
            user,
            workdir,
            programs,
        } => Some((c, user.clone(), workdir.clone(), programs.clone())),
        Need::Probe {
            container: Some(Some(c)),
            tools,
            ..
        } => Some((
            c,
            None,
            None,
            tools.iter().map(|t| (*t).to_owned()).collect(),
        )),
        _ => None,
    }
}

pub(super) fn container_of(need: &Need) -> Option<&Known> {
    match need {
        Need::Container { container, .. } => Some(container),
        Need::Probe {
            container: Some(c), ..
        } => Some(c),
        _ => None,
    }
}

pub(super) fn docker_argv(docker: &Docker, args: &[&str]) -> Vec<String> {
    let mut argv = docker.command.clone();
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    argv
}

pub(super) fn state(docker: &Docker, name: &str) -> State {
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
