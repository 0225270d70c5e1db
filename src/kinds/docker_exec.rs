//! `docker-exec`: a command inside a running container.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use regex::Regex;
use schemars::JsonSchema;

use super::kind::{Operation, StepKind, env_note, excerpt, values_note};
use super::need::Need;
use super::scope::{Launch, Scope, attempt_spec};
use crate::docker::{Docker, ExecOptions};
use crate::engine::{Attempt, Attempted, End, Outcome, Work};
use crate::plan::action::{Action, Body, Kind, schema_of};
use crate::plan::fields::Fields;
use crate::plan::model::{Command, Sp};
use crate::plan::rule::{Field, Rule};
use crate::plan::template::{Part, Template};
use crate::process::{Pipe, Spec};

const NAME: &str = "docker-exec";

pub(crate) const ENTRY: Kind = Kind {
    name: NAME,
    about: "A command in a running container, through `docker exec`.",
    schema: schema_of::<DockerExec>,
    fields: &[
        "container",
        "command",
        "user",
        "workdir",
        "stdout",
        "expect_output",
    ],
    read,
};

#[derive(Debug, Clone, JsonSchema)]
pub(crate) struct DockerExec {
    /// The running container.
    pub container: Sp<Template>,
    /// An array runs as argv; a string runs with `sh -c` in the container.
    pub command: Sp<Command>,
    /// The user in the container.
    pub user: Option<Sp<Template>>,
    /// The working directory in the container.
    pub workdir: Option<Sp<Template>>,
    /// A host file that receives the command's stdout (written atomically).
    pub stdout: Option<Sp<Template>>,
    /// A regular expression the output must match for the step to pass;
    /// templates render, their values matched as plain text.
    pub expect_output: Option<Sp<Template>>,
}

fn read(fields: &mut Fields<'_, '_, '_, '_>) -> Option<Action> {
    let container = fields.required_template("container", "\"{{ app }}\"");
    let command = fields.required_command("command", "[\"bin/rails\", \"db:migrate\"]");
    let user = fields.template("user");
    let workdir = fields.template("workdir");
    let stdout = fields.template("stdout");
    let expect_output = fields.regex("expect_output");
    Some(crate::kinds::action(DockerExec {
        container: container?,
        command: command?,
        user,
        workdir,
        stdout,
        expect_output,
    }))
}

/// A step's `docker exec`, templates resolved.
struct Parts {
    container: String,
    user: Option<String>,
    workdir: Option<String>,
    argv: Vec<String>,
    /// The values a string command refers to.
    bound: Vec<(String, String)>,
}

impl Parts {
    /// The exec's options, passing the step's `env` into the container.
    fn options<'a>(&'a self, env: &'a [(String, String)]) -> ExecOptions<'a> {
        ExecOptions {
            user: self.user.as_deref(),
            workdir: self.workdir.as_deref(),
            env: env.iter().map(|(k, _)| k.as_str()).collect(),
            runner_env: true,
        }
    }
}

impl DockerExec {
    fn parts(&self, scope: &Scope<'_>) -> Parts {
        let (argv, bound) = scope.argv(&self.command.value);
        Parts {
            container: scope.text(&self.container),
            user: self.user.as_ref().map(|u| scope.text(u)),
            workdir: self.workdir.as_ref().map(|w| scope.text(w)),
            argv,
            bound,
        }
    }
}

impl Body for DockerExec {
    fn name(&self) -> &'static str {
        NAME
    }

    fn templates(&self) -> Vec<&Sp<Template>> {
        let mut out = vec![&self.container];
        match &self.command.value {
            Command::Argv(argv) => out.extend(argv),
            Command::Shell(script) => out.push(script),
        }
        out.extend(
            [
                self.user.as_ref(),
                self.workdir.as_ref(),
                self.stdout.as_ref(),
                self.expect_output.as_ref(),
            ]
            .into_iter()
            .flatten(),
        );
        out
    }

    fn scripts(&self) -> Vec<&Sp<Template>> {
        match &self.command.value {
            Command::Shell(script) => vec![script],
            Command::Argv(_) => Vec::new(),
        }
    }

    fn values(&self) -> Vec<Field<'_>> {
        let mut out = vec![("container", &self.container, Rule::Container)];
        out.extend(self.user.as_ref().map(|u| ("user", u, Rule::User)));
        out.extend(self.workdir.as_ref().map(|w| ("workdir", w, Rule::Workdir)));
        out.extend(self.stdout.as_ref().map(|s| ("stdout", s, Rule::Path)));
        if let Command::Argv(argv) = &self.command.value {
            out.extend(argv.iter().map(|a| ("command", a, Rule::Argument)));
        }
        out.extend(
            self.expect_output
                .as_ref()
                .map(|p| ("expect_output", p, Rule::Shown)),
        );
        out
    }

    fn uses_docker(&self) -> bool {
        true
    }
}

impl StepKind for DockerExec {
    fn needs(&self, scope: &Scope<'_>, _env: &[(String, String)]) -> Vec<Need> {
        vec![Need::Container {
            container: scope.known(&self.container),
            user: self.user.as_ref().map(|u| scope.text(u)),
            workdir: self.workdir.as_ref().map(|w| scope.text(w)),
            programs: scope.programs(&self.command.value),
        }]
    }

    fn operations(&self, scope: &Scope<'_>, env: &[(String, String)]) -> Vec<Operation> {
        let parts = self.parts(scope);
        let options = parts.options(env).carrying(&parts.bound);
        let argv = scope
            .docker
            .exec_argv(&parts.container, &options, &parts.argv);
        let mut op = Operation::process("run", argv);
        if let Some(note) = values_note(&parts.bound) {
            op = op.note(note);
        }
        if let Some(note) = env_note(env) {
            op = op.note(note);
        }
        if let Some(file) = &self.stdout {
            let path = scope.path(file);
            op = op.note(format!("stdout to {} (written atomically)", path.display()));
        }
        if let Some(pattern) = &self.expect_output {
            op = op.note(match scope.pattern(&pattern.value) {
                Ok(regex) => format!("passes only if the output matches /{regex}/"),
                Err(why) => format!("its expected output cannot be matched: {why}"),
            });
        }
        vec![op]
    }

    fn work(&self, launch: &Launch<'_>) -> Arc<dyn Work> {
        let scope = launch.scope;
        let parts = self.parts(scope);
        Arc::new(Exec {
            spec: launch.exec(
                &parts.container,
                parts.options(&launch.env),
                &parts.argv,
                &parts.bound,
            ),
            container: parts.container,
            marker: launch.marker.clone(),
            docker: Arc::clone(&launch.docker),
            stdout_file: self.stdout.as_ref().map(|f| scope.path(f)),
            folder: self
                .stdout
                .as_ref()
                .and_then(|f| named_folder(&f.value))
                .map(|f| scope.plan.dir.join(f)),
            // The plan reader rejects an invalid pattern, and values are
            // matched as plain text, so this compiles; if not, the step fails.
            expect_output: self.expect_output.as_ref().map(|p| scope.pattern(&p.value)),
        })
    }
}

struct Exec {
    /// `docker exec …`, run on the host.
    spec: Spec,
    container: String,
    marker: String,
    docker: Arc<Docker>,
    /// The host file that receives stdout; written beside it first, renamed on success.
    stdout_file: Option<PathBuf>,
    /// The folder the plan's own text names for it, when a value follows: the
    /// file must end up inside it, symbolic links and all.
    folder: Option<PathBuf>,
    expect_output: Option<Result<Regex, String>>,
}

impl Work for Exec {
    fn attempt(&self, attempt: Attempt) -> Attempted<'_> {
        Box::pin(async move {
            if let (Some(file), Some(folder)) = (&self.stdout_file, &self.folder)
                && let Err(why) = inside(file, folder)
            {
                return Outcome::new(End::Failed(why));
            }
            let partial = self.stdout_file.as_deref().map(partial_path);
            let mut spec = attempt_spec(&self.spec, attempt.number);
            spec.stdout = Pipe {
                show: partial.is_none(),
                keep: self.expect_output.is_some(),
                file: partial.clone(),
            };
            spec.stderr = Pipe {
                show: true,
                keep: true,
                file: None,
            };
            let (ran, detail) = self
                .docker
                .exec(&spec, &self.container, &self.marker, &attempt)
                .await;
            let mut outcome = Outcome {
                detail,
                ..Outcome::new(ran.end)
            };
            // Matched against the trimmed stdout: `^PONG$` matches `PONG\n`.
            if outcome.end.success() {
                match &self.expect_output {
                    Some(Ok(pattern)) if !pattern.is_match(ran.stdout.trim()) => {
                        outcome.end = End::Failed(format!(
                            "its output does not match /{pattern}/: {}",
                            excerpt(&ran.stdout)
                        ));
                    }
                    Some(Err(why)) => outcome.end = End::Failed(why.clone()),
                    _ => {}
                }
            }
            if let (Some(partial), Some(file)) = (&partial, &self.stdout_file) {
                if outcome.end.success() {
                    if let Err(e) = std::fs::rename(partial, file) {
                        outcome.end = End::Failed(format!(
                            "cannot move its stdout into place at {}: {e}",
                            file.display()
                        ));
                        let _ = std::fs::remove_file(partial);
                    }
                } else {
                    // A failed step leaves no file that could pass for a complete one.
                    let _ = std::fs::remove_file(partial);
                }
            }
            outcome
        })
    }
}

/// The folder a path template's own text names before its first value
/// (`backups/` in `backups/{{ f }}.sql`); none when a value comes first or no
/// value comes at all.
fn named_folder(template: &Template) -> Option<&str> {
    let mut parts = template.parts.iter();
    let Some(Part::Text(text)) = parts.next() else {
        return None;
    };
    parts.next()?;
    text.rfind('/').map(|end| &text[..=end])
}

/// Makes the folders of `file` and checks that, links resolved, they are
/// inside `folder`.
fn inside(file: &Path, folder: &Path) -> Result<(), String> {
    let parent = file.parent().unwrap_or(folder);
    let made = std::fs::create_dir_all(parent).and_then(|()| {
        Ok((
            std::fs::canonicalize(parent)?,
            std::fs::canonicalize(folder)?,
        ))
    });
    match made {
        Ok((real, base)) if real.starts_with(&base) => Ok(()),
        Ok((real, base)) => Err(format!(
            "`stdout` would write in {}, outside {}, where the plan puts it (through a symbolic link)",
            real.display(),
            base.display()
        )),
        Err(e) => Err(format!("cannot make the folder of {}: {e}", file.display())),
    }
}

/// `file` → `.file.partial` in the same folder, so the final rename is atomic.
fn partial_path(file: &Path) -> PathBuf {
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    file.with_file_name(format!(".{name}.partial"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_file_sits_beside_the_file() {
        assert_eq!(
            partial_path(Path::new("/b/db.sql")),
            PathBuf::from("/b/.db.sql.partial")
        );
    }
}
