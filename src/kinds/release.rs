//! `release`: a new release of an app's container switched in without a gap,
//! as Kamal and docker-rollout do, in two stages a plan places around what
//! must happen between them (its migrations, a maintenance window):
//!
//! - `stage = "start"`: the release's container starts beside the running one
//!   (as `CONTAINER-next`, on the app's `networks`, not yet reachable by the
//!   proxy), and is probed from inside until its `health` URL answers.
//!   Undone: it is removed.
//! - `stage = "switch"`: it joins the proxy's `network` under the app's name
//!   (`alias`), so both releases receive traffic for a moment; the running
//!   container is renamed `CONTAINER-previous`, the new one takes the app's
//!   name (`docker exec CONTAINER` reaches it), and the previous one is
//!   drained (`docker stop` with `drain` of grace: SIGTERM, requests in
//!   flight finish) and kept, stopped, for a rollback. Undone, the reverse:
//!   the previous one starts, is probed, takes the name back, and the new one
//!   leaves the network, drained, then removed: no page, no error.
//!
//! Each stage undoes itself (also when it failed partway): a `release` step
//! needs no `rollback` of its own.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use schemars::JsonSchema;

use super::{Entry, Field, Launch, Operation, Rule, Scope, StepKind, excerpt};
use crate::docker::Docker;
use crate::engine::{Attempt, Attempted, End, Outcome, Work};
use crate::plan::model::{Action, Command, Dur, Sp};
use crate::plan::reader::Fields;
use crate::plan::template::Template;
use crate::process::{self, Pipe, Spec};

const NAME: &str = "release";

pub(crate) const ENTRY: Entry = Entry {
    name: NAME,
    fields: &[
        "stage",
        "container",
        "image",
        "command",
        "network",
        "alias",
        "networks",
        "volumes",
        "health",
        "health_timeout",
        "drain",
    ],
    read,
};

/// How long a new release may take to answer its health check by default.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(60);
/// The grace the previous release gets for its requests in flight by default.
const DRAIN: Duration = Duration::from_secs(10);
/// How often the health check is asked.
const HEALTH_EVERY: Duration = Duration::from_millis(250);
/// How long docker's DNS may take to follow a connect or a rename: a release
/// leaves the name only once the other one answers to it.
const SETTLE: Duration = Duration::from_millis(300);

/// Which half of a release a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Start the new release beside the running one, and probe it.
    Start,
    /// Move the traffic to it, and drain the previous one.
    Switch,
}

#[derive(Debug, Clone, JsonSchema)]
pub struct Release {
    /// `start` (beside the running release, probed) or `switch` (traffic
    /// moved, the previous release drained and kept).
    pub stage: Sp<Stage>,
    /// The app's container: the name `docker exec` and the proxy reach it by.
    pub container: Sp<Template>,
    /// The release's image (`stage = "start"`).
    pub image: Option<Sp<Template>>,
    /// The release's command: an array runs as argv, a string with `sh -c`;
    /// without it, the image's own (`stage = "start"`).
    pub command: Option<Sp<Command>>,
    /// The network the proxy reaches the app on.
    pub network: Sp<Template>,
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
    pub health: Sp<Template>,
    /// How long the new release may take to answer it. Default 60s.
    pub health_timeout: Option<Sp<Dur>>,
    /// The grace the previous release gets for requests in flight (SIGTERM,
    /// then SIGKILL). Default 10s.
    pub drain: Option<Sp<Dur>>,
    /// This is the step's own undo (its rollback hook).
    #[serde(skip)]
    #[schemars(skip)]
    pub undo: bool,
}

fn read(fields: &mut Fields<'_, '_, '_, '_>) -> Option<Action> {
    let stage = fields.required_choice(
        "stage",
        "\"start\"",
        &[("start", Stage::Start), ("switch", Stage::Switch)],
    );
    let container = fields.required_template("container", "\"{{ app }}\"");
    let image = fields.template("image");
    let command = fields.command("command");
    let network = fields.required_template("network", "\"{{ app }}-net\"");
    let alias = fields.template("alias");
    let networks = fields.templates("networks", "`networks = [\"db-net\"]`");
    let volumes = fields.templates("volumes", "`volumes = [\"app-data:/data\"]`");
    let health = fields.required_template("health", "\"http://localhost:3000/up\"");
    let health_timeout = fields.duration("health_timeout");
    let drain = fields.duration("drain");
    let stage = stage?;
    if stage.value == Stage::Start && image.is_none() {
        fields.missing("image", "\"app:{{ version }}\"");
        return None;
    }
    Some(Action::Release(Release {
        stage,
        container: container?,
        image,
        command,
        network: network?,
        alias,
        networks,
        volumes,
        health: health?,
        health_timeout,
        drain,
        undo: false,
    }))
}

impl Release {
    /// The step's own undo: the same release, run backwards.
    pub(crate) fn undoing(&self) -> Self {
        Self {
            undo: true,
            ..self.clone()
        }
    }

    /// Names and values, templates resolved.
    fn resolve(&self, scope: &Scope<'_>) -> Resolved {
        let container = scope.text(&self.container);
        let (command, bound) = match &self.command {
            Some(c) => match &c.value {
                Command::Argv(items) => (items.iter().map(|i| scope.text(i)).collect(), Vec::new()),
                Command::Shell(_) => {
                    let (argv, bound) = scope.argv(&c.value);
                    (argv, bound)
                }
            },
            None => (Vec::new(), Vec::new()),
        };
        Resolved {
            next: format!("{container}-next"),
            previous: format!("{container}-previous"),
            failed: format!("{container}-failed"),
            alias: self
                .alias
                .as_ref()
                .map_or_else(|| container.clone(), |a| scope.text(a)),
            container,
            image: self
                .image
                .as_ref()
                .map(|i| scope.text(i))
                .unwrap_or_default(),
            command,
            bound,
            network: scope.text(&self.network),
            networks: self.networks.iter().map(|n| scope.text(n)).collect(),
            volumes: self.volumes.iter().map(|v| scope.text(v)).collect(),
            health: scope.text(&self.health),
            health_timeout: self
                .health_timeout
                .as_ref()
                .map_or(HEALTH_TIMEOUT, |d| d.value.0),
            drain: self.drain.as_ref().map_or(DRAIN, |d| d.value.0),
        }
    }
}

/// A release, its templates resolved.
#[derive(Debug, Clone)]
struct Resolved {
    container: String,
    next: String,
    previous: String,
    failed: String,
    alias: String,
    image: String,
    command: Vec<String>,
    /// The values a string command binds (they travel in the environment).
    bound: Vec<(String, String)>,
    network: String,
    networks: Vec<String>,
    volumes: Vec<String>,
    health: String,
    health_timeout: Duration,
    drain: Duration,
}

/// Asks a URL from inside a container: curl, else wget (busybox has it).
const HEALTH_CHECK: &str = r#"if command -v curl >/dev/null 2>&1; then curl -fsS -o /dev/null --max-time 5 "$1"; else wget -q -O /dev/null "$1"; fi"#;

impl Resolved {
    /// `docker run` of the new release, beside the running one.
    fn run(&self, env: &[(String, String)]) -> Vec<String> {
        let mut argv = vec!["run".to_owned(), "-d".to_owned(), "--init".to_owned()];
        argv.push(format!("--name={}", self.next));
        let first = self.networks.first().unwrap_or(&self.network);
        argv.push(format!("--network={first}"));
        for volume in &self.volumes {
            argv.push(format!("--volume={volume}"));
        }
        for (name, _) in env.iter().chain(&self.bound) {
            argv.extend(["--env".to_owned(), name.clone()]);
        }
        argv.extend(["--".to_owned(), self.image.clone()]);
        argv.extend(self.command.iter().cloned());
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

    /// Whether the new release starts on the proxy's network (no other
    /// networks given): then it leaves it and joins again under the alias.
    fn starts_on_traffic(&self) -> bool {
        self.networks.is_empty()
    }
}

fn words(args: &[&str]) -> Vec<String> {
    args.iter().map(|&a| a.to_owned()).collect()
}

impl StepKind for Release {
    fn name(&self) -> &'static str {
        NAME
    }

    fn templates(&self) -> Vec<&Sp<Template>> {
        let mut out = vec![&self.container, &self.network, &self.health];
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
        let mut out = vec![
            ("container", &self.container, Rule::Container),
            ("network", &self.network, Rule::Container),
            ("health", &self.health, Rule::Url),
        ];
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

    fn operations(&self, scope: &Scope<'_>, env: &[(String, String)]) -> Vec<Operation> {
        let r = self.resolve(scope);
        let docker = |args: Vec<String>| {
            let mut argv = scope.docker.command.clone();
            argv.extend(args);
            argv
        };
        match (self.stage.value, self.undo) {
            (Stage::Start, false) => {
                let mut ops = vec![
                    Operation::process("clear", docker(words(&["rm", "-f", "--", &r.next])))
                        .note("what an earlier run left"),
                    Operation::process("start beside", docker(r.run(env))),
                ];
                for network in r.networks.iter().skip(1) {
                    ops.push(Operation::process(
                        "join",
                        docker(words(&["network", "connect", network, &r.next])),
                    ));
                }
                ops.push(
                    Operation::process("probe inside", docker(r.health_check(&r.next))).note(
                        format!(
                            "until it answers, for {} at most (every {}ms)",
                            humantime::format_duration(r.health_timeout),
                            HEALTH_EVERY.as_millis()
                        ),
                    ),
                );
                ops
            }
            (Stage::Start, true) => vec![Operation::process(
                "remove the new release",
                docker(words(&["rm", "-f", "--", &r.next])),
            )],
            (Stage::Switch, false) => {
                let mut ops = Vec::new();
                if r.starts_on_traffic() {
                    ops.push(Operation::process(
                        "leave (to come back named)",
                        docker(words(&["network", "disconnect", &r.network, &r.next])),
                    ));
                }
                ops.extend([
                    Operation::process(
                        "take traffic",
                        docker(words(&[
                            "network",
                            "connect",
                            &format!("--alias={}", r.alias),
                            &r.network,
                            &r.next,
                        ])),
                    )
                    .note("both releases answer for a moment"),
                    Operation::process("clear", docker(words(&["rm", "-f", "--", &r.previous])))
                        .note("the release before the running one"),
                    Operation::process(
                        "keep the running one",
                        docker(words(&["rename", &r.container, &r.previous])),
                    ),
                    Operation::process(
                        "name the new one",
                        docker(words(&["rename", &r.next, &r.container])),
                    ),
                    Operation::process(
                        "drain the previous one",
                        docker(words(&[
                            "stop",
                            &format!("--time={}", r.drain.as_secs()),
                            &r.previous,
                        ])),
                    )
                    .note(
                        "SIGTERM, requests in flight finish; it is kept, stopped, for a rollback",
                    ),
                ]);
                ops
            }
            (Stage::Switch, true) => vec![
                Operation::process(
                    "start the previous one",
                    docker(words(&["start", &r.previous])),
                ),
                Operation::process("probe inside", docker(r.health_check(&r.previous))),
                Operation::process(
                    "set the new one aside",
                    docker(words(&["rename", &r.container, &r.failed])),
                ),
                Operation::process(
                    "give the name back",
                    docker(words(&["rename", &r.previous, &r.container])),
                ),
                Operation::process(
                    "the new one leaves",
                    docker(words(&["network", "disconnect", &r.network, &r.failed])),
                ),
                Operation::process(
                    "drain and remove it",
                    docker(words(&[
                        "stop",
                        &format!("--time={}", r.drain.as_secs()),
                        &r.failed,
                    ])),
                )
                .note(format!("then `rm -f {}`", r.failed)),
            ],
        }
    }

    fn summary(&self, operations: &[Operation]) -> String {
        super::join(operations, " && ")
    }

    fn work(&self, launch: &Launch<'_>) -> Arc<dyn Work> {
        let scope = launch.scope;
        Arc::new(ReleaseWork {
            stage: self.stage.value,
            undo: self.undo,
            r: self.resolve(scope),
            docker: Arc::clone(&launch.docker),
            env: launch.env.clone(),
            dir: scope.plan.dir.clone(),
        })
    }
}

struct ReleaseWork {
    stage: Stage,
    undo: bool,
    r: Resolved,
    docker: Arc<Docker>,
    /// The step's own variables, for the new container.
    env: Vec<(String, String)>,
    dir: PathBuf,
}

/// What one docker command did.
struct Said {
    ok: bool,
    text: String,
}

impl ReleaseWork {
    async fn docker(&self, args: Vec<String>, attempt: &Attempt) -> Said {
        let mut argv = self.docker.command.clone();
        argv.extend(args);
        let mut spec = Spec::new(argv, &self.dir);
        spec.env.extend(self.docker.env.iter().cloned());
        spec.env.extend(self.env.iter().cloned());
        spec.env.extend(self.r.bound.iter().cloned());
        spec.stdout = Pipe::kept();
        spec.stderr = Pipe::kept();
        let ran = process::run(&spec, None, &attempt.cancel).await;
        let mut text = ran.stderr.join("\n");
        if text.trim().is_empty() {
            text.clone_from(&ran.stdout);
        }
        Said {
            ok: ran.end.success(),
            text: text.trim().to_owned(),
        }
    }

    /// Runs a docker command that must succeed; the reason when it does not.
    async fn must(&self, what: &str, args: Vec<String>, attempt: &Attempt) -> Result<(), String> {
        let said = self.docker(args, attempt).await;
        attempt
            .output
            .info(format!(
                "{what}: {}",
                if said.ok { "done" } else { "failed" }
            ))
            .await;
        if said.ok {
            Ok(())
        } else {
            Err(format!("{what}: {}", excerpt(&said.text)))
        }
    }

    async fn exists(&self, name: &str, attempt: &Attempt) -> bool {
        self.docker(words(&["container", "inspect", "--", name]), attempt)
            .await
            .ok
    }

    /// Asks the health URL inside `container` until it answers, or the
    /// container stops, or the time is out.
    async fn healthy(&self, container: &str, attempt: &Attempt) -> Result<(), String> {
        let until = Instant::now() + self.r.health_timeout;
        let mut asked = 0u32;
        loop {
            asked += 1;
            let said = self.docker(self.r.health_check(container), attempt).await;
            if said.ok {
                attempt
                    .output
                    .info(format!(
                        "{container} answers {} (asked {asked} time{})",
                        self.r.health,
                        if asked == 1 { "" } else { "s" }
                    ))
                    .await;
                return Ok(());
            }
            if crate::docker::refused(&said.text) || attempt.cancel.is_cancelled() {
                let logs = self
                    .docker(words(&["logs", "--tail", "20", "--", container]), attempt)
                    .await;
                let mut why = format!("{container} stopped before it answered {}", self.r.health);
                if !logs.text.is_empty() {
                    let _ = write!(why, "; its last words: {}", excerpt(&logs.text));
                }
                return Err(why);
            }
            if Instant::now() >= until {
                return Err(format!(
                    "{container} did not answer {} within {} ({})",
                    self.r.health,
                    humantime::format_duration(self.r.health_timeout),
                    excerpt(&said.text)
                ));
            }
            tokio::time::sleep(HEALTH_EVERY).await;
        }
    }

    async fn start(&self, attempt: &Attempt) -> Result<(), String> {
        let r = &self.r;
        let _ = self
            .docker(words(&["rm", "-f", "--", &r.next]), attempt)
            .await;
        self.must("start the new release beside", r.run(&self.env), attempt)
            .await?;
        for network in r.networks.iter().skip(1) {
            self.must(
                &format!("join {network}"),
                words(&["network", "connect", network, &r.next]),
                attempt,
            )
            .await?;
        }
        self.healthy(&r.next, attempt).await
    }

    async fn switch(&self, attempt: &Attempt) -> Result<(), String> {
        let r = &self.r;
        if r.starts_on_traffic() {
            self.must(
                "leave the network",
                words(&["network", "disconnect", &r.network, &r.next]),
                attempt,
            )
            .await?;
        }
        self.must(
            &format!("take traffic as {}", r.alias),
            words(&[
                "network",
                "connect",
                &format!("--alias={}", r.alias),
                &r.network,
                &r.next,
            ]),
            attempt,
        )
        .await?;
        tokio::time::sleep(SETTLE).await;
        let running = self.exists(&r.container, attempt).await;
        if running {
            let _ = self
                .docker(words(&["rm", "-f", "--", &r.previous]), attempt)
                .await;
            self.must(
                "keep the running release",
                words(&["rename", &r.container, &r.previous]),
                attempt,
            )
            .await?;
        }
        self.must(
            "name the new release",
            words(&["rename", &r.next, &r.container]),
            attempt,
        )
        .await?;
        if running {
            self.must(
                "drain the previous release",
                words(&[
                    "stop",
                    &format!("--time={}", r.drain.as_secs()),
                    &r.previous,
                ]),
                attempt,
            )
            .await?;
        }
        Ok(())
    }

    /// The switch backwards, from wherever it stopped.
    async fn switch_back(&self, attempt: &Attempt) -> Result<(), String> {
        let r = &self.r;
        if !self.exists(&r.previous, attempt).await {
            // The running release was never set aside: the new one only
            // leaves the traffic (the start's undo removes it).
            if self.exists(&r.next, attempt).await {
                let _ = self
                    .docker(
                        words(&["network", "disconnect", &r.network, &r.next]),
                        attempt,
                    )
                    .await;
            }
            return Ok(());
        }
        self.must(
            "start the previous release",
            words(&["start", &r.previous]),
            attempt,
        )
        .await?;
        self.healthy(&r.previous, attempt).await?;
        let new = if self.exists(&r.next, attempt).await {
            r.next.clone()
        } else {
            self.must(
                "set the new release aside",
                words(&["rename", &r.container, &r.failed]),
                attempt,
            )
            .await?;
            r.failed.clone()
        };
        self.must(
            "give the previous release its name back",
            words(&["rename", &r.previous, &r.container]),
            attempt,
        )
        .await?;
        tokio::time::sleep(SETTLE).await;
        let _ = self
            .docker(words(&["network", "disconnect", &r.network, &new]), attempt)
            .await;
        let _ = self
            .docker(
                words(&["stop", &format!("--time={}", r.drain.as_secs()), &new]),
                attempt,
            )
            .await;
        self.must(
            "remove the new release",
            words(&["rm", "-f", "--", &new]),
            attempt,
        )
        .await
    }
}

impl Work for ReleaseWork {
    fn attempt(&self, attempt: Attempt) -> Attempted<'_> {
        Box::pin(async move {
            let done = match (self.stage, self.undo) {
                (Stage::Start, false) => self.start(&attempt).await,
                (Stage::Start, true) => {
                    let _ = self
                        .docker(words(&["rm", "-f", "--", &self.r.next]), &attempt)
                        .await;
                    Ok(())
                }
                (Stage::Switch, false) => self.switch(&attempt).await,
                (Stage::Switch, true) => self.switch_back(&attempt).await,
            };
            Outcome::new(match done {
                Ok(()) => End::Exited(0),
                Err(why) => End::Failed(why),
            })
        })
    }
}
