//! `apply --plan-only`: what `apply` would do, step by step, without doing it.
//!
//! The preview is built once as a serialisable document; the text view and the
//! JSON view (`--output json`) both render that document, so they cannot disagree.

use std::fmt::Write as _;

use serde::Serialize;

use crate::docker::Docker;
use crate::kinds::{AsKind, Operation, Scope};
use crate::plan::model::When;
use crate::plan::{Hook, Plan, Settings, Step, VarOrigin};

#[derive(Debug, Serialize)]
pub struct Preview {
    pub(crate) plan: String,
    pub(crate) file: String,
    /// Always false: a preview executes nothing.
    pub(crate) executes: bool,
    pub(crate) docker: Docker,
    /// What `apply` checks before any change, and what it found (when run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) preflight: Option<crate::preflight::Report>,
    pub(crate) jobs: u32,
    pub(crate) vars: Vec<VarView>,
    /// The plan's steps, by wave: a step's wave is one more than its deepest need.
    pub(crate) waves: Vec<Vec<StepView>>,
    /// `when = "failure"` / `"always"` steps, in order, after the plan and its rollback.
    pub(crate) after_run: Vec<StepView>,
    /// The longest chain of needs.
    pub(crate) critical_path: Vec<String>,
    /// The hosts of a plan with `[hosts]`, in their batches.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) hosts: Vec<HostView>,
    /// How the per-host steps move through the hosts, and what a failure does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rollout: Option<RolloutView>,
    /// Who holds the plan's lock now, when another run does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) locked_by: Option<String>,
    /// A run of the plan that died and was not recovered: apply refuses to
    /// start until `runner recover` undid it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) unfinished: Option<String>,
    /// The code `apply` would exit with before running any step (4: docker
    /// unreachable, the lock held, a preflight finding), else 0; `--plan-only`
    /// exits with it, so a CI job can gate on the preview.
    pub(crate) exit_code: i32,
}

#[derive(Debug, Serialize)]
pub struct HostView {
    pub(crate) name: String,
    /// `ssh://…`, `unix://…`, `tcp://…` or `context NAME`.
    pub(crate) engine: String,
    pub(crate) roles: Vec<String>,
    /// 1-based; absent when no step runs on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) batch: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct RolloutView {
    /// The hosts of each batch, in order.
    pub(crate) batches: Vec<Vec<String>>,
    /// Hosts that may fail before every host that changed rolls back.
    pub(crate) max_fail: usize,
    /// What a failure does, in a sentence.
    pub(crate) on_failure: String,
}

#[derive(Debug, Serialize)]
pub struct VarView {
    pub(crate) name: String,
    pub(crate) value: String,
    pub(crate) secret: bool,
    pub(crate) source: String,
}

#[derive(Debug, Serialize)]
pub struct StepView {
    pub(crate) id: String,
    /// Its condition (`if`), decided when it is ready.
    #[serde(rename = "if", skip_serializing_if = "Option::is_none")]
    pub(crate) condition: Option<String>,
    pub(crate) kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<String>,
    pub(crate) needs: Vec<String>,
    pub(crate) when: When,
    pub(crate) settings: SettingsView,
    pub(crate) operations: Vec<Operation>,
    pub(crate) rollback: Option<HookView>,
    /// The hosts it runs for (one instance each); empty for a step that runs once.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) on: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct HookView {
    pub(crate) kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<String>,
    pub(crate) settings: SettingsView,
    pub(crate) operations: Vec<Operation>,
    /// Runs also when its own step failed partway.
    pub(crate) also_if_failed: bool,
    /// Runs before every other hook (it closes the app to users).
    pub(crate) first: bool,
    /// Runs after every other hook (it gives users the app back).
    pub(crate) last: bool,
}

#[derive(Debug, Serialize)]
pub struct SettingsView {
    pub(crate) timeout: String,
    pub(crate) timeout_ms: u128,
    pub(crate) retries: u32,
    pub(crate) retry_delay: String,
    pub(crate) retry_delay_ms: u128,
    pub(crate) backoff: f64,
}

impl From<&Settings> for SettingsView {
    fn from(s: &Settings) -> Self {
        Self {
            timeout: humantime::format_duration(s.timeout).to_string(),
            timeout_ms: s.timeout.as_millis(),
            retries: s.retries,
            retry_delay: humantime::format_duration(s.retry_delay).to_string(),
            retry_delay_ms: s.retry_delay.as_millis(),
            backoff: s.backoff,
        }
    }
}

impl SettingsView {
    fn summary(&self) -> String {
        let retries = match self.retries {
            0 => "no retries".to_owned(),
            n => format!(
                "{n} {} after {}{}",
                if n == 1 { "retry" } else { "retries" },
                self.retry_delay,
                if (self.backoff - 1.0).abs() < f64::EPSILON || n == 1 {
                    String::new()
                } else {
                    format!(", ×{} each time", self.backoff)
                }
            ),
        };
        format!("timeout {} · {retries}", self.timeout)
    }
}

pub fn build(plan: &Plan, docker: Docker) -> Preview {
    let no_output = |_: &str| None;
    let scope = Scope {
        plan,
        docker: &docker,
        host: None,
        host_index: None,
        mask_secrets: true,
        run_id: None,
        output: &no_output,
    };
    let mut waves: Vec<Vec<StepView>> = Vec::new();
    let mut after_run = Vec::new();
    for &s in &plan.dag.order {
        let step = &plan.steps[s];
        if step.when == When::Success {
            let wave = plan.dag.wave[s];
            if waves.len() <= wave {
                waves.resize_with(wave + 1, Vec::new);
            }
            waves[wave].push(step_view(plan, &scope, step));
        } else {
            after_run.push(step_view(plan, &scope, step));
        }
    }
    waves.retain(|w| !w.is_empty());
    let critical_path = plan
        .dag
        .critical_path(|s| plan.steps[s].when == When::Success)
        .into_iter()
        .map(|s| plan.steps[s].id.clone())
        .collect();
    let vars = vars_view(plan);
    let (hosts, rollout) = hosts_view(plan);
    let mut preview = Preview {
        hosts,
        rollout,
        locked_by: None,
        unfinished: None,
        exit_code: crate::error::exit_code::SUCCESS,
        plan: plan.name.clone(),
        file: plan.path.display().to_string(),
        executes: false,
        jobs: plan.jobs,
        docker,
        preflight: None,
        vars,
        waves,
        after_run,
        critical_path,
    };
    preview.decide();
    preview
}

/// A step as the preview shows it: its settings and the commands of its
/// action and its hook.
fn step_view(plan: &Plan, scope: &Scope<'_>, step: &Step) -> StepView {
    StepView {
        id: step.id.clone(),
        kind: step.action.name(),
        description: step.description.clone(),
        needs: step
            .needs
            .iter()
            .map(|&n| plan.steps[n].id.clone())
            .collect(),
        when: step.when,
        condition: step.condition.as_ref().map(|c| c.text.clone()),
        on: step
            .on
            .iter()
            .map(|&h| plan.hosts[h].name.clone())
            .collect(),
        settings: (&step.settings).into(),
        operations: step
            .action
            .as_kind()
            .operations(scope, &scope.env(&step.env)),
        rollback: step.rollback.as_deref().map(|hook: &Hook| HookView {
            kind: hook.action.name(),
            description: hook.description.clone(),
            settings: (&hook.settings).into(),
            operations: hook
                .action
                .as_kind()
                .operations(scope, &scope.env(&hook.env)),
            also_if_failed: hook.also_if_failed,
            first: hook.action.hook_role() == crate::engine::HookRole::Close,
            last: hook.action.hook_role() == crate::engine::HookRole::Reopen,
        }),
    }
}

/// The plan's variables, secrets masked, each with where its value came from.
fn vars_view(plan: &Plan) -> Vec<VarView> {
    plan.vars
        .iter()
        .map(|(name, var)| VarView {
            name: name.clone(),
            value: if var.secret {
                crate::mask::MASK.to_owned()
            } else {
                var.value.clone()
            },
            secret: var.secret,
            source: match &var.origin {
                VarOrigin::Plan => "plan".to_owned(),
                VarOrigin::Env(e) => format!("${e}"),
                VarOrigin::EnvDefault(e) => format!("default, ${e} is unset"),
                VarOrigin::CommandLine => "--var".to_owned(),
            },
        })
        .collect()
}

/// The hosts and the rollout of a plan with `[hosts]`.
fn hosts_view(plan: &Plan) -> (Vec<HostView>, Option<RolloutView>) {
    let Some(instances) = &plan.instances else {
        return (Vec::new(), None);
    };
    let hosts: Vec<HostView> = plan
        .hosts
        .iter()
        .enumerate()
        .map(|(h, host)| HostView {
            name: host.name.clone(),
            engine: match &host.engine {
                crate::plan::Engine::Address(a) => a.clone(),
                crate::plan::Engine::Context(c) => format!("context {c}"),
            },
            roles: host.roles.clone(),
            batch: instances.batch[h].map(|b| b + 1),
        })
        .collect();
    let batches: Vec<Vec<String>> = (0..instances.batches())
        .map(|b| {
            plan.hosts
                .iter()
                .enumerate()
                .filter(|&(h, _)| instances.batch[h] == Some(b))
                .map(|(_, host)| host.name.clone())
                .collect()
        })
        .collect();
    let used = instances.batch.iter().flatten().count();
    let max_fail = plan.max_fail.map_or(0, |share| share.of(used, false));
    let on_failure = if max_fail == 0 {
        "a step that fails on any host stops the deploy: nothing new starts, and every host that \
         changed rolls back, each host's hooks in reverse order of completion"
            .to_owned()
    } else {
        format!(
            "a host where a step fails rolls back alone (its hooks in reverse order of completion) \
             and the deploy goes on, for up to {}; one more and nothing new starts and every host \
             that changed rolls back; a deploy with a failed host exits 1 and its summary names it",
            crate::plan::diagnostic::plural(max_fail, "host")
        )
    };
    (
        hosts,
        Some(RolloutView {
            batches,
            max_fail,
            on_failure,
        }),
    )
}

impl Preview {
    /// The preview with the preflight's findings.
    pub(crate) fn checked(mut self, preflight: crate::preflight::Report) -> Self {
        self.preflight = Some(preflight);
        self.decide();
        self
    }

    /// The preview with the plan's lock as it is now (`None`: free).
    pub(crate) fn locked(mut self, holder: Option<String>) -> Self {
        self.locked_by = holder;
        self.decide();
        self
    }

    /// The preview with the run of the plan that died unrecovered, if any.
    pub(crate) fn unfinished(mut self, run: Option<String>) -> Self {
        self.unfinished = run;
        self.decide();
        self
    }

    /// What stops `apply` before its first step, in words; empty when nothing does.
    fn stoppers(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.docker.available {
            out.push("docker is unreachable".to_owned());
        }
        if let Some(holder) = &self.locked_by {
            out.push(format!("the plan's lock is held by {holder}"));
        }
        if let Some(run) = &self.unfinished {
            out.push(format!("run {run} died and was not recovered"));
        }
        if let Some(checks) = self.preflight.as_ref().filter(|c| !c.findings.is_empty()) {
            out.push(format!(
                "the preflight found {}",
                crate::plan::diagnostic::plural(checks.findings.len(), "problem")
            ));
        }
        out
    }

    fn decide(&mut self) {
        self.exit_code = if self.stoppers().is_empty() {
            crate::error::exit_code::SUCCESS
        } else {
            crate::error::exit_code::CANNOT_START
        };
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let steps: usize = self.waves.iter().map(Vec::len).sum::<usize>() + self.after_run.len();
        let _ = writeln!(
            out,
            "Plan \"{}\" ({}): preview only, nothing is run",
            self.plan, self.file
        );
        let _ = writeln!(
            out,
            "{} in {}, up to {} at once",
            crate::plan::diagnostic::plural(steps, "step"),
            crate::plan::diagnostic::plural(self.waves.len(), "wave"),
            self.jobs
        );
        self.engines_text(&mut out);
        self.hosts_text(&mut out);
        if let Some(holder) = &self.locked_by {
            let _ = writeln!(
                out,
                "Lock: held by {holder}; apply would stop before any step (exit 4)"
            );
        }
        if let Some(run) = &self.unfinished {
            let _ = writeln!(
                out,
                "Unfinished: run {run} of this plan died and left its journal; apply would stop before any step (exit 4) until `runner recover PLAN` undoes it"
            );
        }
        if let Some(checks) = &self.preflight {
            preflight_text(&mut out, checks);
        }
        if !self.vars.is_empty() {
            let _ = writeln!(out, "\nVariables");
            for var in &self.vars {
                let _ = writeln!(out, "  {} = {}  [{}]", var.name, var.value, var.source);
            }
        }
        self.steps_text(&mut out);
        let _ = writeln!(
            out,
            "\nCritical path ({}): {}",
            crate::plan::diagnostic::plural(self.critical_path.len(), "step"),
            self.critical_path.join(" -> ")
        );
        let _ = writeln!(
            out,
            "On failure: nothing new starts, running steps finish, then the rollback hooks of the \
             succeeded steps (and of a failed step whose hook runs also then) run in reverse order \
             of completion, those that turn maintenance on first and those that turn it off last, \
             then the `failure`/`always` steps."
        );
        if let Some(rollout) = &self.rollout {
            let _ = writeln!(out, "On a host's failure: {}.", rollout.on_failure);
        }
        let stoppers = self.stoppers();
        if !stoppers.is_empty() {
            let _ = writeln!(
                out,
                "\nApply would stop before any step: {}. This preview exits {} as apply would.",
                stoppers.join("; "),
                self.exit_code
            );
        }
        out
    }

    /// Which docker (and compose) the run would use, or why none.
    fn engines_text(&self, out: &mut String) {
        let docker = crate::plan::template::shell_join(&self.docker.command);
        if self.docker.available {
            let _ = writeln!(out, "Docker: {docker} ({})", self.docker.reason);
        } else {
            let _ = writeln!(
                out,
                "Docker: unavailable: {}; apply would stop before any step (exit 4)",
                self.docker.reason
            );
            for probe in &self.docker.tried {
                let _ = writeln!(out, "  tried `{}`: {}", probe.command, probe.result);
            }
            if let Some(help) = &self.docker.help {
                let _ = writeln!(out, "  help: {help}");
            }
            let _ = writeln!(out, "  (commands below show `{docker}`)");
        }
        if let Some(compose) = &self.docker.compose {
            let words = crate::plan::template::shell_join(&compose.command);
            if compose.available {
                let version = compose
                    .version
                    .as_deref()
                    .map_or_else(String::new, |v| format!("version {v}: "));
                let _ = writeln!(out, "Compose: {words} ({version}{})", compose.reason);
            } else {
                let _ = writeln!(out, "Compose: unavailable: {}", compose.reason);
                for probe in &compose.tried {
                    let _ = writeln!(out, "  tried `{}`: {}", probe.command, probe.result);
                }
            }
        }
    }

    /// The hosts and the batches they deploy in.
    fn hosts_text(&self, out: &mut String) {
        if !self.hosts.is_empty() {
            let _ = writeln!(
                out,
                "\nHosts (reached when the run starts: one ssh connection each, the host's lock, \
                 its docker decision; the preview connects to none)"
            );
            for host in &self.hosts {
                let batch = host
                    .batch
                    .map_or_else(|| "no step runs on it".to_owned(), |b| format!("batch {b}"));
                let roles = if host.roles.is_empty() {
                    String::new()
                } else {
                    format!(", roles {}", host.roles.join(", "))
                };
                let _ = writeln!(out, "  {}: {}{roles} ({batch})", host.name, host.engine);
            }
        }
        if let Some(rollout) = &self.rollout {
            for (i, batch) in rollout.batches.iter().enumerate() {
                let _ = writeln!(out, "  batch {}: {}", i + 1, batch.join(", "));
            }
            let _ = writeln!(
                out,
                "  per-host steps move through the batches: batch k+1 starts once batch k's steps all succeeded"
            );
        }
    }

    /// The steps, wave by wave, then those that run after the run.
    fn steps_text(&self, out: &mut String) {
        for (i, wave) in self.waves.iter().enumerate() {
            let _ = writeln!(out, "\nWave {}", i + 1);
            for step in wave {
                step_text(out, step);
            }
        }
        if !self.after_run.is_empty() {
            let _ = writeln!(out, "\nAfter the run (and its rollback)");
            for step in &self.after_run {
                step_text(out, step);
            }
        }
    }
}

fn preflight_text(out: &mut String, checks: &crate::preflight::Report) {
    if checks.findings.is_empty() {
        let _ = writeln!(
            out,
            "Preflight: no problem found ({})",
            crate::plan::diagnostic::plural(checks.checks, "read-only check")
        );
    } else {
        let _ = writeln!(
            out,
            "Preflight: {}; apply would stop before any step (exit 4)",
            crate::plan::diagnostic::plural(checks.findings.len(), "problem")
        );
        out.push_str(&checks.findings_text("  "));
    }
    for note in &checks.notes {
        let _ = writeln!(out, "  left to the run: {note}");
    }
}

fn step_text(out: &mut String, step: &StepView) {
    let mut head = format!("  {} [{}]", step.id, step.kind);
    if !step.needs.is_empty() {
        let _ = write!(head, " needs {}", step.needs.join(", "));
    }
    if step.when != When::Success {
        let _ = write!(head, " when {}", step.when.as_str());
    }
    if !step.on.is_empty() {
        let _ = write!(head, " on {}", step.on.join(", "));
    }
    let _ = writeln!(out, "{head}");
    if let Some(condition) = &step.condition {
        let _ = writeln!(
            out,
            "      if {condition}: decided when it is ready; skipped, it changes nothing and the steps that need it go on"
        );
    }
    if !step.on.is_empty() {
        let _ = writeln!(
            out,
            "      one instance per host ({}), with DOCKER_HOST set to that host's engine",
            step.on
                .iter()
                .map(|h| format!("{}@{h}", step.id))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(description) = &step.description {
        let _ = writeln!(out, "      {description}");
    }
    operations_text(out, &step.operations, "      ");
    let _ = writeln!(out, "      {}", step.settings.summary());
    match &step.rollback {
        None => {
            let _ = writeln!(out, "      rollback: none");
        }
        Some(hook) => {
            let mut when = String::new();
            if hook.also_if_failed {
                when.push_str(", also if the step fails partway");
            }
            if hook.first {
                when.push_str(", before every other hook");
            }
            if hook.last {
                when.push_str(", after every other hook");
            }
            let _ = writeln!(
                out,
                "      rollback [{}]{when}{}",
                hook.kind,
                hook.description
                    .as_ref()
                    .map_or_else(String::new, |d| format!(": {d}"))
            );
            operations_text(out, &hook.operations, "        ");
            let _ = writeln!(out, "        {}", hook.settings.summary());
        }
    }
}

fn operations_text(out: &mut String, operations: &[Operation], indent: &str) {
    for op in operations {
        let _ = writeln!(out, "{indent}{}: {}", op.label, op.display);
        for note in &op.notes {
            let _ = writeln!(out, "{indent}  {note}");
        }
    }
}
