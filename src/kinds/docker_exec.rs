//! `docker-exec`: a command inside a running container.

use super::{Operation, Scope, StepKind, env_note};
use crate::docker::{ExecOptions, exec_argv};
use crate::plan::model::DockerExecAction;
use crate::plan::template::Context;

impl StepKind for DockerExecAction {
    fn operations(&self, env: &[(String, String)], scope: &Scope<'_>) -> Vec<Operation> {
        let container = scope.render(&self.container.value, Context::Verbatim);
        let user = self
            .user
            .as_ref()
            .map(|u| scope.render(&u.value, Context::Verbatim));
        let workdir = self
            .workdir
            .as_ref()
            .map(|w| scope.render(&w.value, Context::Verbatim));
        let options = ExecOptions {
            user: user.as_deref(),
            workdir: workdir.as_deref(),
            env: env.iter().map(|(k, _)| k.as_str()).collect(),
            runner_env: true,
            env_file: None,
        };
        let argv = exec_argv(
            scope.docker,
            &container,
            &options,
            &scope.argv(&self.command.value),
        );
        let mut op = Operation::process("run", argv);
        if let Some(note) = env_note(env) {
            op = op.note(note);
        }
        if let Some(file) = &self.stdout {
            let path = scope
                .plan
                .dir
                .join(scope.render(&file.value, Context::Verbatim));
            op = op.note(format!("stdout to {} (written atomically)", path.display()));
        }
        if let Some(pattern) = &self.expect_output {
            op = op.note(format!(
                "passes only if the output matches /{}/",
                pattern.value
            ));
        }
        vec![op]
    }
}
