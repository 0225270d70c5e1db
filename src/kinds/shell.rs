//! `shell`: a host command through `sh -c`.

use std::sync::Arc;

use schemars::JsonSchema;

use super::kind::{Operation, StepKind, env_note, values_note};
use super::need::Need;
use super::scope::{Launch, Scope, attempt_spec};
use crate::engine::{Attempt, Attempted, Outcome, Work};
use crate::plan::action::{Action, Body, Kind, schema_of};
use crate::plan::fields::Fields;
use crate::plan::model::Sp;
use crate::plan::template::{Name, Template};
use crate::process::{self, Pipe, Spec};

const NAME: &str = "shell";

pub(crate) const ENTRY: Kind = Kind {
    name: NAME,
    about: "A host command through `sh -c`; `$DOCKER_CMD` is set.",
    schema: schema_of::<Shell>,
    fields: &["run", "dir", "capture"],
    read,
};

#[derive(Debug, Clone, JsonSchema)]
pub(crate) struct Shell {
    /// The command, run with `sh -c` on the host; template values are shell-quoted.
    pub run: Sp<Template>,
    /// The working directory, relative to the plan's folder.
    pub dir: Option<Sp<Template>>,
    /// Keep the trimmed stdout for `{{ steps.ID.output }}`.
    #[serde(default)]
    pub capture: bool,
}

fn read(fields: &mut Fields<'_, '_, '_, '_>) -> Option<Action> {
    let run = fields.required_template("run", "\"the command\"");
    let dir = fields.template("dir");
    let capture = fields.boolean("capture").unwrap_or(false);
    Some(crate::kinds::action(Shell {
        run: run?,
        dir,
        capture,
    }))
}

impl Body for Shell {
    fn name(&self) -> &'static str {
        NAME
    }

    fn templates(&self) -> Vec<&Sp<Template>> {
        [Some(&self.run), self.dir.as_ref()]
            .into_iter()
            .flatten()
            .collect()
    }

    fn scripts(&self) -> Vec<&Sp<Template>> {
        vec![&self.run]
    }

    fn uses_docker(&self) -> bool {
        self.templates().into_iter().any(|t| {
            let t = &t.value;
            t.raw.contains("DOCKER_CMD")
                || t.raw.contains("COMPOSE_CMD")
                || t.refs()
                    .any(|(n, ..)| matches!(n, Name::Docker | Name::Compose))
        })
    }

    fn captures(&self) -> bool {
        self.capture
    }

    fn can_capture(&self) -> bool {
        true
    }
}

impl StepKind for Shell {
    fn needs(&self, scope: &Scope<'_>, env: &[(String, String)]) -> Vec<Need> {
        let (script, _) = scope.script(&self.run.value);
        let dir = self
            .dir
            .as_ref()
            .map_or_else(|| scope.plan.dir.clone(), |d| scope.path(d));
        vec![Need::Host {
            programs: crate::plan::script::programs(&script),
            dir,
            path: env
                .iter()
                .rev()
                .find(|(k, _)| k == "PATH")
                .map(|(_, v)| v.clone()),
        }]
    }

    fn operations(&self, scope: &Scope<'_>, env: &[(String, String)]) -> Vec<Operation> {
        let (script, bound) = scope.script(&self.run.value);
        let dir = self
            .dir
            .as_ref()
            .map_or_else(|| scope.plan.dir.clone(), |d| scope.path(d));
        let mut op = Operation::process("run", vec!["sh".into(), "-c".into(), script])
            .note(format!("in {}", dir.display()));
        if let Some(note) = values_note(&bound) {
            op = op.note(note);
        }
        if let Some(note) = env_note(env) {
            op = op.note(note);
        }
        if self.capture {
            op = op.note("captures its stdout for {{ steps.ID.output }}");
        }
        vec![op]
    }

    /// The script itself: `sh -c` goes without saying.
    fn summary(&self, operations: &[Operation]) -> String {
        operations
            .first()
            .and_then(|op| op.argv.get(2))
            .cloned()
            .unwrap_or_default()
    }

    fn work(&self, launch: &Launch<'_>) -> Arc<dyn Work> {
        let scope = launch.scope;
        let (script, bound) = scope.script(&self.run.value);
        let mut spec = launch.spec(vec![launch.sh.to_owned(), "-c".into(), script]);
        spec.env.extend(bound);
        if let Some(dir) = &self.dir {
            spec.dir = scope.path(dir);
        }
        if launch.capture && self.capture {
            spec.stdout = Pipe {
                keep: true,
                ..Pipe::shown()
            };
        }
        Arc::new(Run(spec))
    }
}

struct Run(Spec);

impl Work for Run {
    fn attempt(&self, attempt: Attempt) -> Attempted<'_> {
        Box::pin(async move {
            let spec = attempt_spec(&self.0, attempt.number);
            let ran = process::run(&spec, Some(&attempt.output), &attempt.cancel).await;
            Outcome {
                captured: spec.stdout.keep.then(|| ran.stdout.trim().to_owned()),
                ..Outcome::new(ran.end)
            }
        })
    }
}
