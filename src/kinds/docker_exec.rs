//! `docker-exec`: a command inside a running container.

use super::{Operation, Scope, StepKind, env_note};
use crate::docker::{ExecOptions, exec_argv};
use crate::plan::model::{DockerExecAction, Sp};
use crate::plan::template::{Context, Template};

/// The container and the `docker exec` argv of `action`, for the preview and the
/// run alike. `env_file`: where the values go through sudo (`None` in a preview).
pub fn exec_command(
    action: &DockerExecAction,
    env: &[(String, String)],
    scope: &Scope<'_>,
    env_file: Option<&str>,
) -> (String, Vec<String>) {
    let render = |t: &Option<Sp<Template>>| {
        t.as_ref()
            .map(|t| scope.render(&t.value, Context::Verbatim))
    };
    let (user, workdir) = (render(&action.user), render(&action.workdir));
    let container = scope.render(&action.container.value, Context::Verbatim);
    let options = ExecOptions {
        user: user.as_deref(),
        workdir: workdir.as_deref(),
        env: env.iter().map(|(k, _)| k.as_str()).collect(),
        runner_env: true,
        env_file,
    };
    let argv = exec_argv(
        scope.docker,
        &container,
        &options,
        &scope.argv(&action.command.value),
    );
    (container, argv)
}

impl StepKind for DockerExecAction {
    fn operations(&self, env: &[(String, String)], scope: &Scope<'_>) -> Vec<Operation> {
        let (_, argv) = exec_command(self, env, scope, None);
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
