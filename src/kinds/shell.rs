//! `shell`: a host command through `sh -c`.

use super::{Operation, Scope, StepKind, env_note};
use crate::plan::model::ShellAction;
use crate::plan::template::Context;

impl StepKind for ShellAction {
    fn operations(&self, env: &[(String, String)], scope: &Scope<'_>) -> Vec<Operation> {
        let script = scope.render(&self.run.value, Context::Shell);
        let mut op = Operation::process("run", vec!["sh".into(), "-c".into(), script]);
        let dir = self.dir.as_ref().map_or_else(
            || scope.plan.dir.clone(),
            |d| {
                scope
                    .plan
                    .dir
                    .join(scope.render(&d.value, Context::Verbatim))
            },
        );
        op = op.note(format!("in {}", dir.display()));
        if let Some(note) = env_note(env) {
            op = op.note(note);
        }
        if self.capture {
            op = op.note("captures its stdout for {{ steps.ID.output }}");
        }
        vec![op]
    }
}
