//! `release`: a new release of an app's container switched in without a gap,
//! as Kamal and docker-rollout do, in stages a plan places around what must
//! happen between them (its migrations, a maintenance window):
//!
//! - `stage = "start"`: the release's container starts beside the running one
//!   (as `CONTAINER-next`, not yet reachable by the proxy), and is probed from
//!   inside until its `health` URL answers. Undone: it is removed.
//! - `stage = "switch"`: it takes the app's name on the proxy's network, so
//!   both releases receive traffic for a moment; the running container is
//!   renamed `CONTAINER-previous`, the new one takes the app's name (`docker
//!   exec CONTAINER` reaches it), and the previous one is drained (`docker
//!   stop` with `drain` of grace: SIGTERM, requests in flight finish) and
//!   kept, stopped, for a rollback. Undone, the reverse: the previous one
//!   starts, is probed, takes the name back, and the new one is drained with
//!   its name, then taken off it and started again out of traffic (as
//!   `CONTAINER-next`, for the hooks of the steps between the two stages,
//!   until the start's undo removes it): no page, no error.
//! - `stage = "join"` (optional, between the two): the new release answers to
//!   the app's name beside the running one, while a maintenance window hides
//!   which of them answers; the switch then finds it there and need not wait
//!   for the proxy to see it. Undone: it leaves the name.
//! - `stage = "finish"`: the kept previous release is removed, once nothing
//!   after the switch can fail.
//!
//! The new container is made one of two ways: `docker run` of `image` on the
//! plan's `network` (and `networks`, `volumes`), or, with `service`, by the
//! compose file itself (`compose.rs`): one more container of that service,
//! as docker-rollout scales it, named and switched the same way.
//!
//! Each stage but `finish` undoes itself (also when it failed partway): a
//! `release` step needs no `rollback` of its own.

mod compose;
mod work;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;

use crate::engine::Work;
use crate::kinds::kind::{Operation, StepKind};
use crate::kinds::need::Need;
use crate::kinds::scope::{Launch, Scope};
use crate::plan::action::{Action, Body, Kind, schema_of};
use crate::plan::fields::Fields;
use crate::plan::model::{Command, Dur, Sp};
use crate::plan::rule::{Field, Rule};
use crate::plan::template::Template;

pub(crate) use compose::problems as compose_problems;

const NAME: &str = "release";

pub(crate) const ENTRY: Kind = Kind {
    name: NAME,
    about: "A new release of an app's container, switched in without a gap.",
    schema: schema_of::<Release>,
    fields: &[
        "stage",
        "container",
        "service",
        "dir",
        "image",
        "command",
        "network",
        "alias",
        "networks",
        "volumes",
        "health",
        "health_timeout",
        "drain",
        "settle",
    ],
    read,
};

/// How long a new release may take to answer its health check by default.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(60);
/// The grace the previous release gets for its requests in flight by default.
const DRAIN: Duration = Duration::from_secs(10);
/// How often the health check is asked.
const HEALTH_EVERY: Duration = Duration::from_millis(250);
/// How long the proxy may take to see a connect or a rename by default (docker's
/// DNS, the proxy's own cache of it): a release leaves the name only once the
/// other one answers to it.
const SETTLE: Duration = Duration::from_millis(300);

/// Fields the compose file gives when the release is a compose service.
const FROM_COMPOSE: &[&str] = &[
    "image", "command", "network", "alias", "networks", "volumes",
];

/// Which part of a release a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Stage {
    /// Start the new release beside the running one, and probe it.
    Start,
    /// Let it answer to the app's name beside the running one, early: while
    /// a maintenance window hides which of the two answers, so that the
    /// switch after the migrations need not wait for the proxy to see it.
    Join,
    /// Move the traffic to it, and drain the previous one.
    Switch,
    /// Remove the previous release, kept until now for a rollback.
    Finish,
}

#[derive(Debug, Clone, JsonSchema)]
pub(crate) struct Release {
    /// `start` (beside the running release, probed), `join` (it answers to
    /// the name too, early, inside a maintenance window), `switch` (traffic
    /// moved, the previous release drained and kept) or `finish` (the
    /// previous release removed).
    pub stage: Sp<Stage>,
    /// The app's container: the name `docker exec` reaches it by.
    pub container: Sp<Template>,
    /// The compose service the app is: its compose file then gives the image,
    /// command, networks and volumes, and the proxy resolves this name.
    pub service: Option<Sp<Template>>,
    /// The folder compose runs in (its compose file), relative to the plan's
    /// folder. Default: the plan's folder.
    pub dir: Option<Sp<Template>>,
    /// The release's image (`stage = "start"`, without `service`).
    pub image: Option<Sp<Template>>,
    /// The release's command: an array runs as argv, a string with `sh -c`;
    /// without it, the image's own (`stage = "start"`, without `service`).
    pub command: Option<Sp<Command>>,
    /// The network the proxy reaches the app on (without `service`).
    pub network: Option<Sp<Template>>,
    /// The name the proxy resolves there. Default: `container`.
    pub alias: Option<Sp<Template>>,
    /// Other networks the release joins when it starts (its database's):
    /// then it joins `network` only when it takes traffic.
    #[serde(default)]
    pub networks: Vec<Sp<Template>>,
    /// Volumes, as `docker run -v` takes them: `"app-data:/data"`.
    #[serde(default)]
    pub volumes: Vec<Sp<Template>>,
    /// The URL the release answers when it is ready, asked from inside its
    /// container (curl, else wget): `"http://localhost:3000/up"`.
    pub health: Option<Sp<Template>>,
    /// How long the new release may take to answer it. Default 60s.
    pub health_timeout: Option<Sp<Dur>>,
    /// The grace the previous release gets for requests in flight (SIGTERM,
    /// then SIGKILL). Default 10s.
    pub drain: Option<Sp<Dur>>,
    /// How long the proxy takes to see a release join or leave the name
    /// (docker's DNS and the proxy's cache of it). Default 300ms.
    pub settle: Option<Sp<Dur>>,
    /// This is the step's own undo (its rollback hook).
    #[serde(skip)]
    #[schemars(skip)]
    pub undo: bool,
}

fn read(fields: &mut Fields<'_, '_, '_, '_>) -> Option<Action> {
    let stage = fields.required_choice(
        "stage",
        "\"start\"",
        &[
            ("start", Stage::Start),
            ("join", Stage::Join),
            ("switch", Stage::Switch),
            ("finish", Stage::Finish),
        ],
    );
    let container = fields.required_template("container", "\"{{ app }}\"");
    let service = fields.template("service");
    let dir = fields.template("dir");
    let image = fields.template("image");
    let command = fields.command("command");
    let network = fields.template("network");
    let alias = fields.template("alias");
    let networks = fields.templates("networks", "`networks = [\"db-net\"]`");
    let volumes = fields.templates("volumes", "`volumes = [\"app-data:/data\"]`");
    let health = fields.template("health");
    let health_timeout = fields.duration("health_timeout");
    let drain = fields.duration("drain");
    let settle = fields.duration("settle");
    let stage = stage?;
    let mut whole = true;
    if service.is_some() {
        for field in FROM_COMPOSE {
            whole &= fields.refuse(
                field,
                "the compose file gives it to the service the release is (`service`)",
            );
        }
    } else if dir.is_some() {
        whole &= fields.refuse("dir", "it is where compose runs: give `service` too");
    }
    if stage.value != Stage::Finish {
        if health.is_none() {
            fields.missing("health", "\"http://localhost:3000/up\"");
            whole = false;
        }
        if service.is_none() && network.is_none() {
            fields.missing(
                "network",
                "\"{{ app }}-net\" (or `service`, for a compose service)",
            );
            whole = false;
        }
    }
    if stage.value == Stage::Start && service.is_none() && image.is_none() {
        fields.missing(
            "image",
            "\"app:{{ version }}\" (or `service`, for a compose service)",
        );
        whole = false;
    }
    let container = container?;
    whole.then_some(())?;
    Some(crate::kinds::action(Release {
        stage,
        container,
        service,
        dir,
        image,
        command,
        network,
        alias,
        networks,
        volumes,
        health,
        health_timeout,
        drain,
        settle,
        undo: false,
    }))
}

impl Release {
    /// The step's own undo: the same release, run backwards. The finish has
    /// none: what it removed was only kept for a rollback.
    pub(crate) fn undoing(&self) -> Option<Self> {
        (self.stage.value != Stage::Finish).then(|| Self {
            undo: true,
            ..self.clone()
        })
    }

    /// Names and values, templates resolved.
    fn resolve(&self, scope: &Scope<'_>) -> Resolved {
        let container = scope.text(&self.container);
        let way = if let Some(service) = &self.service {
            Way::Compose {
                service: scope.text(service),
                compose: scope.docker.compose_command(),
                dir: self
                    .dir
                    .as_ref()
                    .map_or_else(|| scope.plan.dir.clone(), |d| scope.path(d)),
            }
        } else {
            let (command, bound) = match &self.command {
                Some(c) => match &c.value {
                    Command::Argv(items) => {
                        (items.iter().map(|i| scope.text(i)).collect(), Vec::new())
                    }
                    Command::Shell(_) => scope.argv(&c.value),
                },
                None => (Vec::new(), Vec::new()),
            };
            Way::Run {
                image: self
                    .image
                    .as_ref()
                    .map(|i| scope.text(i))
                    .unwrap_or_default(),
                command,
                bound,
                network: self
                    .network
                    .as_ref()
                    .map(|n| scope.text(n))
                    .unwrap_or_default(),
                alias: self
                    .alias
                    .as_ref()
                    .map_or_else(|| container.clone(), |a| scope.text(a)),
                networks: self.networks.iter().map(|n| scope.text(n)).collect(),
                volumes: self.volumes.iter().map(|v| scope.text(v)).collect(),
            }
        };
        Resolved {
            next: format!("{container}-next"),
            previous: format!("{container}-previous"),
            container,
            way,
            health: self
                .health
                .as_ref()
                .map(|h| scope.text(h))
                .unwrap_or_default(),
            health_timeout: self
                .health_timeout
                .as_ref()
                .map_or(HEALTH_TIMEOUT, |d| d.value.0),
            drain: self.drain.as_ref().map_or(DRAIN, |d| d.value.0),
            settle: self.settle.as_ref().map_or(SETTLE, |d| d.value.0),
        }
    }
}

/// A release, its templates resolved.
#[derive(Debug, Clone)]
struct Resolved {
    container: String,
    next: String,
    previous: String,
    way: Way,
    health: String,
    health_timeout: Duration,
    drain: Duration,
    settle: Duration,
}

/// How the new release's container is made, and how it takes traffic.
#[derive(Debug, Clone)]
enum Way {
    /// `docker run` of an image, on networks the plan names.
    Run {
        image: String,
        command: Vec<String>,
        /// The values a string command binds (they travel in the environment).
        bound: Vec<(String, String)>,
        network: String,
        alias: String,
        networks: Vec<String>,
        volumes: Vec<String>,
    },
    /// One more container of a compose service, on the networks its compose
    /// file gives it; the proxy resolves the service's name.
    Compose {
        service: String,
        compose: Vec<String>,
        dir: PathBuf,
    },
}

/// Asks a URL from inside a container: curl, else wget (busybox has it).
const HEALTH_CHECK: &str = r#"if command -v curl >/dev/null 2>&1; then curl -fsS -o /dev/null --max-time 5 "$1"; else wget -q -O /dev/null "$1"; fi"#;

fn words(args: &[&str]) -> Vec<String> {
    args.iter().map(|&a| a.to_owned()).collect()
}

impl Resolved {
    /// `docker run` of the new release, beside the running one.
    fn run(&self, env: &[(String, String)]) -> Vec<String> {
        let Way::Run {
            image,
            command,
            bound,
            network,
            networks,
            volumes,
            ..
        } = &self.way
        else {
            return Vec::new();
        };
        let mut argv = vec!["run".to_owned(), "-d".to_owned(), "--init".to_owned()];
        argv.push(format!("--name={}", self.next));
        let first = networks.first().unwrap_or(network);
        argv.push(format!("--network={first}"));
        for volume in volumes {
            argv.push(format!("--volume={volume}"));
        }
        for (name, _) in env.iter().chain(bound) {
            argv.extend(["--env".to_owned(), name.clone()]);
        }
        argv.extend(["--".to_owned(), image.clone()]);
        argv.extend(command.iter().cloned());
        argv
    }

    fn health_check(&self, container: &str) -> Vec<String> {
        [
            "exec",
            "--",
            container,
            "sh",
            "-c",
            HEALTH_CHECK,
            "sh",
            &self.health,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// The name the proxy resolves.
    fn alias(&self) -> &str {
        match &self.way {
            Way::Run { alias, .. } => alias,
            Way::Compose { service, .. } => service,
        }
    }

    /// The values a string command binds.
    fn bound(&self) -> &[(String, String)] {
        match &self.way {
            Way::Run { bound, .. } => bound,
            Way::Compose { .. } => &[],
        }
    }

    /// The folder docker and compose run in.
    fn dir<'a>(&'a self, plan_dir: &'a PathBuf) -> &'a PathBuf {
        match &self.way {
            Way::Compose { dir, .. } => dir,
            Way::Run { .. } => plan_dir,
        }
    }
}

impl Body for Release {
    fn undo(&self) -> Option<Action> {
        self.undoing().map(crate::kinds::action)
    }

    fn name(&self) -> &'static str {
        NAME
    }

    fn templates(&self) -> Vec<&Sp<Template>> {
        let mut out = vec![&self.container];
        out.extend(self.service.as_ref());
        out.extend(self.dir.as_ref());
        out.extend(self.network.as_ref());
        out.extend(self.health.as_ref());
        out.extend(self.image.as_ref());
        out.extend(self.alias.as_ref());
        out.extend(&self.networks);
        out.extend(&self.volumes);
        match self.command.as_ref().map(|c| &c.value) {
            Some(Command::Argv(items)) => out.extend(items),
            Some(Command::Shell(script)) => out.push(script),
            None => {}
        }
        out
    }

    fn scripts(&self) -> Vec<&Sp<Template>> {
        match self.command.as_ref().map(|c| &c.value) {
            Some(Command::Shell(script)) => vec![script],
            _ => Vec::new(),
        }
    }

    fn values(&self) -> Vec<Field<'_>> {
        let mut out = vec![("container", &self.container, Rule::Container)];
        out.extend(
            self.service
                .as_ref()
                .map(|s| ("service", s, Rule::Container)),
        );
        out.extend(
            self.network
                .as_ref()
                .map(|n| ("network", n, Rule::Container)),
        );
        out.extend(self.health.as_ref().map(|h| ("health", h, Rule::Url)));
        out.extend(self.image.as_ref().map(|i| ("image", i, Rule::Image)));
        out.extend(self.alias.as_ref().map(|a| ("alias", a, Rule::Container)));
        out.extend(
            self.networks
                .iter()
                .map(|n| ("networks", n, Rule::Container)),
        );
        out.extend(self.volumes.iter().map(|v| ("volumes", v, Rule::Volume)));
        if let Some(Command::Argv(items)) = self.command.as_ref().map(|c| &c.value) {
            out.extend(items.iter().map(|a| ("command", a, Rule::Argument)));
        }
        out
    }

    fn uses_docker(&self) -> bool {
        true
    }

    fn uses_compose(&self) -> bool {
        self.service.is_some()
    }
}

impl StepKind for Release {
    fn operations(&self, scope: &Scope<'_>, env: &[(String, String)]) -> Vec<Operation> {
        work::operations(
            &self.resolve(scope),
            self.stage.value,
            self.undo,
            &scope.docker.command,
            env,
        )
    }

    fn needs(&self, scope: &Scope<'_>, _env: &[(String, String)]) -> Vec<Need> {
        let (Some(service), Stage::Start, false) = (&self.service, self.stage.value, self.undo)
        else {
            return Vec::new();
        };
        let Way::Compose { dir, .. } = self.resolve(scope).way else {
            return Vec::new();
        };
        vec![Need::Compose {
            service: scope.known(service),
            dir,
        }]
    }

    fn summary(&self, operations: &[Operation]) -> String {
        super::join(operations, " && ")
    }

    fn work(&self, launch: &Launch<'_>) -> Arc<dyn Work> {
        let scope = launch.scope;
        Arc::new(work::ReleaseWork {
            stage: self.stage.value,
            undo: self.undo,
            r: self.resolve(scope),
            docker: Arc::clone(&launch.docker),
            env: launch.env.clone(),
            dir: scope.plan.dir.clone(),
        })
    }
}
