//! `image-ship`: brings an image from this machine's engine to a host's, with
//! no registry: `docker save` here piped into `docker load` there. A host that
//! already has the image (the same id) is skipped.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use tokio::io::{AsyncBufReadExt as _, BufReader};

use super::kind::{Operation, StepKind};
use super::scope::{Launch, Scope};
use crate::docker::Docker;
use crate::engine::{Attempt, Attempted, End, Outcome, Stream, Work};
use crate::plan::action::{Action, Body, Kind, schema_of};
use crate::plan::fields::Fields;
use crate::plan::model::Sp;
use crate::plan::rule::{Field, Rule};
use crate::plan::template::{Template, shell_join};

const NAME: &str = "image-ship";
/// How long reading an image's id may take, on either side.
const INSPECT_TIMEOUT: Duration = Duration::from_secs(15);

pub(crate) const ENTRY: Kind = Kind {
    name: NAME,
    about: "An image from this machine's engine to a host's: `docker save | docker load`.",
    schema: schema_of::<ImageShip>,
    fields: &["image"],
    read,
};

#[derive(Debug, Clone, JsonSchema)]
pub(crate) struct ImageShip {
    /// The image on this machine's engine, e.g. `app:{{ version }}`.
    pub image: Sp<Template>,
}

fn read(fields: &mut Fields<'_, '_, '_, '_>) -> Option<Action> {
    let image = fields.required_template("image", "\"app:v2\"");
    Some(crate::kinds::action(ImageShip { image: image? }))
}

impl ImageShip {
    fn argv(docker: &Docker, args: &[&str], image: &str) -> Vec<String> {
        let mut argv = docker.command.clone();
        argv.extend(args.iter().map(|&a| a.to_owned()));
        argv.extend(["--".to_owned(), image.to_owned()]);
        argv
    }
}

impl Body for ImageShip {
    fn name(&self) -> &'static str {
        NAME
    }

    fn templates(&self) -> Vec<&Sp<Template>> {
        vec![&self.image]
    }

    fn values(&self) -> Vec<Field<'_>> {
        vec![("image", &self.image, Rule::Image)]
    }

    fn uses_docker(&self) -> bool {
        true
    }

    fn uses_local_docker(&self) -> bool {
        true
    }

    fn per_host(&self) -> bool {
        true
    }
}

impl StepKind for ImageShip {
    fn operations(&self, scope: &Scope<'_>, _env: &[(String, String)]) -> Vec<Operation> {
        let image = scope.text(&self.image);
        let host = scope.host.unwrap_or("<host.name>");
        vec![
            Operation::process(
                "compare",
                Self::argv(
                    scope.docker,
                    &["image", "inspect", "--format", "{{.Id}}"],
                    &image,
                ),
            )
            .note(format!(
                "here and on {host}: the same id means the host has it, and nothing is sent"
            )),
            Operation {
                label: "ship".to_owned(),
                display: format!(
                    "docker save -- {} | docker load  (load on {host})",
                    shell_join(std::slice::from_ref(&image))
                ),
                argv: Vec::new(),
                notes: vec!["from this machine's engine to the host's, no registry".to_owned()],
            },
        ]
    }

    fn summary(&self, operations: &[Operation]) -> String {
        operations
            .get(1)
            .map(|op| op.display.clone())
            .unwrap_or_default()
    }

    fn work(&self, launch: &Launch<'_>) -> Arc<dyn Work> {
        Arc::new(Ship {
            image: launch.scope.text(&self.image),
            local: Arc::clone(&launch.local),
            host: Arc::clone(&launch.docker),
            dir: launch.scope.plan.dir.clone(),
        })
    }
}

struct Ship {
    image: String,
    local: Arc<Docker>,
    host: Arc<Docker>,
    dir: std::path::PathBuf,
}

impl Ship {
    async fn id(&self, docker: &Docker) -> Result<String, String> {
        let argv = ImageShip::argv(
            docker,
            &["image", "inspect", "--format", "{{.Id}}"],
            &self.image,
        );
        crate::process::output(argv, &docker.env, &self.dir, INSPECT_TIMEOUT)
            .await
            .map(|id| id.trim().to_owned())
    }

    /// `docker save` here into `docker load` there; the load's output is shown.
    async fn ship(&self, attempt: &Attempt) -> Result<(), End> {
        let spawn_failed = |what: &str, e: std::io::Error| {
            End::Failed(format!("cannot start `docker {what}`: {e}"))
        };
        let mut save = command(&self.local, &["save", "--", &self.image]);
        save.stdout(Stdio::piped()).stderr(Stdio::piped());
        // runner's own helpers: a sweep after another step never takes them
        // for what that step left behind.
        let mut save = crate::process::spawn_helper(|| save.spawn(), tokio::process::Child::id)
            .map_err(|e| spawn_failed("save", e))?;
        let Some(stream) = save.stdout.take() else {
            return Err(End::Failed("docker save gave no output".into()));
        };
        let stream: Stdio = stream.try_into().map_err(|e| spawn_failed("load", e))?;
        let spawned = {
            let mut load = command(&self.host, &["load"]);
            load.stdin(stream)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            // The command holds the pipe's read end until it is dropped, here:
            // were runner to keep it, a `docker save` whose load failed would
            // wait forever for a reader.
            crate::process::spawn_helper(|| load.spawn(), tokio::process::Child::id)
        };
        let mut load = match spawned {
            Ok(load) => load,
            Err(e) => {
                let _ = save.start_kill();
                let _ = save.wait().await;
                forget(&save);
                return Err(spawn_failed("load", e));
            }
        };
        let pids = (save.id(), load.id());
        let (load_out, load_err, save_err) =
            (load.stdout.take(), load.stderr.take(), save.stderr.take());
        let lines = async {
            tokio::join!(
                show(load_out, Stream::Stdout, attempt),
                show(load_err, Stream::Stderr, attempt),
                show(save_err, Stream::Stderr, attempt)
            );
        };
        let both = async {
            let ((), saved, loaded) = tokio::join!(lines, save.wait(), load.wait());
            (saved, loaded)
        };
        let result = tokio::select! {
            (saved, loaded) = both => {
                match (saved, loaded) {
                    (Ok(s), Ok(l)) if s.success() && l.success() => Ok(()),
                    // A failed load ends the save too (a broken pipe): the
                    // load's is the reason.
                    (_, Ok(l)) if !l.success() => Err(End::Failed(format!(
                        "`docker load` on the host failed ({l}); its output says why"
                    ))),
                    (Ok(s), Ok(_)) => Err(End::Failed(format!(
                        "`docker save` here failed ({s}): is `{}` on this machine's engine?",
                        self.image
                    ))),
                    (Err(e), _) | (_, Err(e)) => Err(End::Failed(e.to_string())),
                }
            }
            () = attempt.cancel.cancelled() => {
                let _ = save.start_kill();
                let _ = load.start_kill();
                let _ = save.wait().await;
                let _ = load.wait().await;
                Err(End::Failed("cancelled: the transfer was stopped".into()))
            }
        };
        for pid in [pids.0, pids.1].into_iter().flatten() {
            crate::process::forget_helper(pid);
        }
        result
    }
}

fn forget(child: &tokio::process::Child) {
    if let Some(pid) = child.id() {
        crate::process::forget_helper(pid);
    }
}

/// Shows what a process prints, line by line.
async fn show(from: Option<impl tokio::io::AsyncRead + Unpin>, stream: Stream, attempt: &Attempt) {
    let Some(from) = from else { return };
    let mut lines = BufReader::new(from).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        attempt.output.line(stream, line).await;
    }
}

/// A docker command for this engine, stdin closed, killed if dropped.
fn command(docker: &Docker, args: &[&str]) -> tokio::process::Command {
    let (program, rest) = docker
        .command
        .split_first()
        .map_or(("docker", &[][..]), |(p, r)| (p.as_str(), r));
    let mut command = tokio::process::Command::new(program);
    command
        .args(rest)
        .args(args)
        .envs(docker.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

impl Work for Ship {
    fn attempt(&self, attempt: Attempt) -> Attempted<'_> {
        Box::pin(async move {
            let local = match self.id(&self.local).await {
                Ok(id) if !id.is_empty() => id,
                Ok(_) | Err(_) => {
                    return Outcome::new(End::Failed(format!(
                        "image `{}` is not on this machine's engine: build or pull it first",
                        self.image
                    )));
                }
            };
            if self.id(&self.host).await.is_ok_and(|id| id == local) {
                attempt
                    .output
                    .info(format!(
                        "the host already has {} ({local}): nothing sent",
                        self.image
                    ))
                    .await;
                return Outcome::new(End::Exited(0));
            }
            if let Err(end) = self.ship(&attempt).await {
                return Outcome::new(end);
            }
            match self.id(&self.host).await {
                Ok(id) if id == local => Outcome::new(End::Exited(0)),
                Ok(id) => Outcome::new(End::Failed(format!(
                    "after the load the host's {} is {id}, not {local}",
                    self.image
                ))),
                Err(why) => Outcome::new(End::Failed(format!(
                    "the host does not show {} after the load: {why}",
                    self.image
                ))),
            }
        })
    }
}
