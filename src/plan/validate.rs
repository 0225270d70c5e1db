//! Checks across the plan: variables, needs, cycles, phases, templates.

use indexmap::IndexMap;

use super::check_values::{check_templates, check_values};
use super::diagnostic::PlanDiagnostic;
use super::model::{
    MaintenanceSection, PlanFile, Policy, PortDef, StepDef, SudoMode, VarDef, When,
};
use super::reader::suggest;
use super::{
    Creates, DEFAULT_BACKOFF, DEFAULT_JOBS, DEFAULT_KEEP, DEFAULT_RETRY_DELAY, DEFAULT_TIMEOUT,
    Hook, Inputs, Port, Settings, Step, Var, VarOrigin,
};
use crate::graph::Dag;

pub(super) struct Checked {
    pub name: String,
    pub jobs: u32,
    pub keep: u32,
    pub sudo: SudoMode,
    pub vars: IndexMap<String, Var>,
    pub maintenance: Option<MaintenanceSection>,
    pub steps: Vec<Step>,
    pub dag: Dag,
    /// Where `[hosts]` stands, when the plan names hosts.
    pub hosts_span: Option<super::Span>,
    pub hosts: Vec<super::Host>,
    pub instances: Option<super::rollout::Instances>,
    pub max_fail: Option<super::model::Share>,
}

pub(super) fn check(
    file: PlanFile,
    inputs: &Inputs<'_>,
    dir: &std::path::Path,
    diags: &mut Vec<PlanDiagnostic>,
) -> Option<Checked> {
    let vars = resolve_vars(&file, inputs, diags);
    let ids: Vec<&str> = file.steps.keys().map(String::as_str).collect();
    let needs = resolve_needs(&file, &ids, diags);
    check_phases(&file, &needs, diags);
    check_maintenance(&file, diags);
    check_per_host(&file, diags);

    let dag = match Dag::build(needs.clone()) {
        Ok(dag) => Some(dag),
        Err(cycles) => {
            for cycle in cycles {
                diags.push(cycle_diagnostic(&file, &ids, &cycle));
            }
            None
        }
    };
    check_templates(&file, &vars, dag.as_ref(), diags);
    check_values(&file, &vars, dir, diags);
    let dag = dag?;
    warn_redundant_needs(&file, &ids, &dag, diags);

    let defaults = settings(&file.defaults, None);
    let hosts = hosts(&file);
    let steps: Vec<Step> = file
        .steps
        .into_iter()
        .zip(needs)
        .map(|((id, def), needs)| {
            let on = on_hosts(def.on.as_ref(), &hosts);
            let mut step = step(id, def, needs, &defaults);
            step.on = on;
            step
        })
        .collect();
    let serial = file
        .rollout
        .as_ref()
        .and_then(|r| r.serial.as_ref())
        .map(|s| s.value);
    let max_fail = file
        .rollout
        .as_ref()
        .and_then(|r| r.max_fail.as_ref())
        .map(|s| s.value);
    let hosts_span = file.host_spans.values().next().cloned();
    let instances = if hosts.is_empty() {
        None
    } else {
        Some(instances(
            &steps,
            &hosts,
            serial,
            hosts_span.as_ref(),
            diags,
        )?)
    };
    Some(Checked {
        hosts_span,
        hosts,
        instances,
        max_fail,
        name: file.plan.name.value,
        jobs: file.plan.jobs.map_or(DEFAULT_JOBS, |j| j.value),
        keep: file.plan.keep.map_or(DEFAULT_KEEP, |k| k.value),
        sudo: file.docker.sudo,
        vars,
        maintenance: file.maintenance,
        steps,
        dag,
    })
}

/// A warning for each need another need implies already.
fn warn_redundant_needs(file: &PlanFile, ids: &[&str], dag: &Dag, diags: &mut Vec<PlanDiagnostic>) {
    for redundant in dag.redundant_needs() {
        let step = &file.steps[redundant.step];
        let (id, need, via) = (ids[redundant.step], ids[redundant.need], ids[redundant.via]);
        if let Some(entry) = step.needs.iter().find(|n| n.value == need) {
            diags.push(
                PlanDiagnostic::warning(
                    "runner::redundant-need",
                    format!("`{id}` needs `{need}` already through `{via}`"),
                )
                .label(entry.span.clone(), "implied by another need")
                .help(format!(
                    "remove `{need}` from the `needs` of `{id}`: `{via}` cannot start before it"
                )),
            );
        }
    }
}

/// The plan's hosts: each its engine and roles.
fn hosts(file: &PlanFile) -> Vec<super::Host> {
    file.hosts
        .iter()
        .map(|(name, def)| super::Host {
            name: name.clone(),
            engine: match (&def.docker, &def.context) {
                (Some(d), _) => super::Engine::Address(d.value.clone()),
                (None, c) => {
                    super::Engine::Context(c.as_ref().map(|c| c.value.clone()).unwrap_or_default())
                }
            },
            roles: def.roles.iter().map(|r| r.value.clone()).collect(),
        })
        .collect()
}

/// The per-host steps' instances in their batches; `None` (with a
/// diagnostic) when the rollout cannot order them.
fn instances(
    steps: &[Step],
    hosts: &[super::Host],
    serial: Option<super::model::Share>,
    hosts_span: Option<&super::Span>,
    diags: &mut Vec<PlanDiagnostic>,
) -> Option<super::rollout::Instances> {
    match super::rollout::Instances::expand(steps, hosts, serial) {
        Ok(instances) => Some(instances),
        Err(cycles) => {
            for cycle in cycles {
                diags.push(
                    PlanDiagnostic::error(
                        "runner::rollout-cycle",
                        format!(
                            "the rollout cannot order its steps: {} -> {}",
                            cycle.join(" -> "),
                            cycle.first().map_or("", String::as_str)
                        ),
                    )
                    .label(hosts_span.cloned().unwrap_or_default(), "hosts declared here")
                    .help("a batch waits for the one before it: a step that runs once between per-host steps makes every batch wait for itself; run it before or after them"),
                );
            }
            None
        }
    }
}

fn settings(policy: &Policy, defaults: Option<&Settings>) -> Settings {
    let base = defaults.copied().unwrap_or(Settings {
        timeout: DEFAULT_TIMEOUT,
        retries: 0,
        retry_delay: DEFAULT_RETRY_DELAY,
        backoff: DEFAULT_BACKOFF,
    });
    Settings {
        timeout: policy.timeout.as_ref().map_or(base.timeout, |t| t.value.0),
        retries: policy.retries.as_ref().map_or(base.retries, |r| r.value),
        retry_delay: policy
            .retry_delay
            .as_ref()
            .map_or(base.retry_delay, |d| d.value.0),
        backoff: policy.backoff.as_ref().map_or(base.backoff, |b| b.value),
    }
}

fn step(id: String, def: StepDef, needs: Vec<usize>, defaults: &Settings) -> Step {
    let rollback = def.rollback.map(|hook| {
        let settings = settings(&hook.policy, Some(defaults));
        Box::new(Hook::from_def(*hook, settings))
    });
    // A kind may undo itself (a release does, also when it failed partway).
    let rollback = rollback.or_else(|| {
        def.action.undo().map(|undo| {
            Box::new(Hook {
                description: None,
                action: undo,
                also_if_failed: true,
                settings: settings(&def.policy, Some(defaults)),
                env: def
                    .env
                    .iter()
                    .map(|(k, v)| (k.clone(), v.value.clone()))
                    .collect(),
            })
        })
    });
    Step {
        id,
        description: def.description.map(|d| d.value),
        settings: settings(&def.policy, Some(defaults)),
        action: def.action,
        needs,
        when: def.when.map_or(When::Success, |w| w.value),
        condition: def.condition.map(|c| c.value),
        env: def.env.into_iter().map(|(k, v)| (k, v.value)).collect(),
        creates: Creates {
            containers: def
                .creates
                .containers
                .iter()
                .map(|c| super::MadeContainer {
                    name: c.name().value.clone(),
                    image: c.image().map(|i| i.value.clone()),
                })
                .collect(),
            images: def.creates.images.into_iter().map(|i| i.value).collect(),
            programs: def.creates.programs.into_iter().map(|p| p.value).collect(),
            ports: def
                .creates
                .ports
                .into_iter()
                .map(|p| match p {
                    PortDef::Number(n) => Port::Number(n.value),
                    PortDef::Template(t) => Port::Template(t.value),
                })
                .collect(),
        },
        rollback,
        on: Vec::new(),
    }
}

/// The hosts `on` names: a role's hosts, a host, or a list of hosts, in
/// declaration order.
fn on_hosts(on: Option<&super::model::On>, hosts: &[super::Host]) -> Vec<usize> {
    use super::model::On;
    let Some(on) = on else {
        return Vec::new();
    };
    hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| match on {
            On::One(name) => h.name == name.value || h.roles.contains(&name.value),
            On::Hosts(names) => names.iter().any(|n| n.value == h.name),
        })
        .map(|(i, _)| i)
        .collect()
}

fn resolve_vars(
    file: &PlanFile,
    inputs: &Inputs<'_>,
    diags: &mut Vec<PlanDiagnostic>,
) -> IndexMap<String, Var> {
    let mut vars = IndexMap::new();
    for (name, def) in &file.vars {
        let overridden = inputs.vars.iter().any(|(k, _)| k == name);
        let var = match def {
            VarDef::Literal(value) => Var {
                value: value.value.clone(),
                secret: false,
                origin: VarOrigin::Plan,
            },
            VarDef::Env(env) => match (inputs.env)(&env.env.value) {
                Some(value) => Var {
                    value,
                    secret: env.secret,
                    origin: VarOrigin::Env(env.env.value.clone()),
                },
                None => match &env.default {
                    Some(default) => Var {
                        value: default.value.clone(),
                        secret: env.secret,
                        origin: VarOrigin::EnvDefault(env.env.value.clone()),
                    },
                    None if overridden => Var {
                        value: String::new(),
                        secret: env.secret,
                        origin: VarOrigin::CommandLine,
                    },
                    None => {
                        let var = &env.env.value;
                        diags.push(
                            PlanDiagnostic::error(
                                "runner::env-unset",
                                format!("variable `{name}` reads the environment variable `{var}`, which is not set"),
                            )
                            .label(env.env.span.clone(), format!("`{var}` is not set"))
                            .help(format!(
                                "export {var}=... before running, pass `--var {name}=...`, or give `{name}` a `default`"
                            )),
                        );
                        continue;
                    }
                },
            },
        };
        vars.insert(name.clone(), var);
    }
    for (name, value) in inputs.vars {
        if !file.var_spans.contains_key(name) {
            diags.push(undeclared_var(file, name));
            continue;
        }
        let secret = vars.get(name).is_some_and(|v| v.secret);
        vars.insert(
            name.clone(),
            Var {
                value: value.clone(),
                secret,
                origin: VarOrigin::CommandLine,
            },
        );
    }
    vars
}

/// A value given for a name the plan does not declare: a typo that would
/// otherwise deploy the plan's default without a word (Terraform refuses it
/// too). The value itself is not shown: it may be a secret.
fn undeclared_var(file: &PlanFile, name: &str) -> PlanDiagnostic {
    let closest = super::reader::suggest(name, file.var_spans.keys().map(String::as_str));
    let diagnostic = PlanDiagnostic::error(
        "runner::undeclared-var",
        format!("`--var {name}=…` names no variable of this plan"),
    );
    match (closest, &file.vars_span) {
        (Some(close), _) => diagnostic
            .label(file.var_spans[close].clone(), "the closest declared variable")
            .help(format!(
                "did you mean `{close}`? (`--var {close}=…`); a value is only taken for a variable declared in `[vars]`"
            )),
        (None, Some(span)) => diagnostic
            .label(span.clone(), "the plan's variables are declared here")
            .help(format!(
                "declare `{name}` in `[vars]` (`{name} = \"…\"`), or drop `--var {name}=…`; declared: {}",
                declared(file)
            )),
        (None, None) => diagnostic.help(format!(
            "this plan has no `[vars]`: declare `{name}` there (`[vars]` with `{name} = \"…\"`), or drop `--var {name}=…`"
        )),
    }
}

/// The plan's variable names, for a help line: at most ten.
fn declared(file: &PlanFile) -> String {
    let names: Vec<String> = file
        .var_spans
        .keys()
        .take(10)
        .map(|n| format!("`{n}`"))
        .collect();
    let more = file.var_spans.len().saturating_sub(names.len());
    if more > 0 {
        format!("{} and {more} more", names.join(", "))
    } else {
        names.join(", ")
    }
}

/// The closest names to unknown ones, in time linear in the plan: each
/// distinct name is searched once, and at most [`SUGGESTIONS`] names are
/// searched at all (a generated plan can name ten thousand unknown steps).
pub(super) struct Suggester<'a> {
    candidates: Vec<&'a str>,
    found: std::collections::HashMap<String, Option<&'a str>>,
}

const SUGGESTIONS: usize = 64;

impl<'a> Suggester<'a> {
    pub(super) fn new(candidates: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            candidates: candidates.into_iter().collect(),
            found: std::collections::HashMap::new(),
        }
    }

    pub(super) fn closest(&mut self, name: &str) -> Option<&'a str> {
        if let Some(found) = self.found.get(name) {
            return *found;
        }
        if self.found.len() >= SUGGESTIONS {
            return None;
        }
        let found = suggest(name, self.candidates.iter().copied());
        self.found.insert(name.to_owned(), found);
        found
    }
}

fn resolve_needs(
    file: &PlanFile,
    ids: &[&str],
    diags: &mut Vec<PlanDiagnostic>,
) -> Vec<Vec<usize>> {
    let mut suggester = Suggester::new(file.step_spans.keys().map(String::as_str));
    let index: std::collections::HashMap<&str, usize> =
        ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let mut out = Vec::with_capacity(ids.len());
    for (i, (id, step)) in file.steps.iter().enumerate() {
        let mut needs = Vec::with_capacity(step.needs.len());
        for need in &step.needs {
            match index.get(need.value.as_str()) {
                Some(&n) if n == i => diags.push(
                    PlanDiagnostic::error("runner::self-need", format!("step `{id}` needs itself"))
                        .label(need.span.clone(), "a step cannot wait for itself")
                        .help(format!("remove `{id}` from its own `needs`")),
                ),
                Some(&n) if needs.contains(&n) => diags.push(
                    PlanDiagnostic::warning(
                        "runner::duplicate-need",
                        format!("`{id}` lists `{}` twice in `needs`", need.value),
                    )
                    .label(need.span.clone(), "listed again")
                    .help("remove the second entry"),
                ),
                Some(&n) => needs.push(n),
                // A step that could not be read has its own errors; no second one here.
                None if file.step_spans.contains_key(need.value.as_str()) => {}
                None => {
                    let help = match suggester.closest(&need.value) {
                        Some(close) => format!("did you mean `{close}`?"),
                        None => {
                            "name a step of this plan (`runner graph PLAN` lists them)".to_owned()
                        }
                    };
                    diags.push(
                        PlanDiagnostic::error(
                            "runner::unknown-need",
                            format!(
                                "step `{id}` needs `{}`, which is not a step of this plan",
                                need.value
                            ),
                        )
                        .label(need.span.clone(), "no such step")
                        .help(help),
                    );
                }
            }
        }
        out.push(needs);
    }
    out
}

fn when_of(step: &StepDef) -> When {
    step.when.as_ref().map_or(When::Success, |w| w.value)
}

/// `failure`/`always` steps run after the plan and its rollback: they may need
/// plan steps, but plan steps cannot wait for them.
fn check_phases(file: &PlanFile, needs: &[Vec<usize>], diags: &mut Vec<PlanDiagnostic>) {
    let steps: Vec<(&String, &StepDef)> = file.steps.iter().collect();
    for (i, (id, step)) in steps.iter().enumerate() {
        let when = when_of(step);
        for &n in &needs[i] {
            let (need_id, need) = steps[n];
            let need_when = when_of(need);
            let after_run = |w: When| w != When::Success;
            // After-phase steps may need plan steps (as in GitHub Actions): they
            // run after the plan and its rollback, a `failure` one when one of
            // its needs failed. Plan steps cannot wait for the after-phase.
            if after_run(when) == after_run(need_when) || after_run(when) {
                continue;
            }
            let Some(entry) = step.needs.iter().find(|e| &e.value == need_id) else {
                continue;
            };
            let message = format!(
                "`{id}` cannot need `{need_id}`, which runs after the plan (when = \"{}\")",
                need_when.as_str()
            );
            let help = format!(
                "remove `{need_id}` from the `needs` of `{id}`, or make `{need_id}` a plain step"
            );
            diags.push(
                PlanDiagnostic::error("runner::phase-need", message)
                    .label(entry.span.clone(), "needs a step of the other phase")
                    .help(help),
            );
        }
    }
}

/// A kind that only makes sense for a host needs `on`.
fn check_per_host(file: &PlanFile, diags: &mut Vec<PlanDiagnostic>) {
    for (id, step) in &file.steps {
        let kind = &step.action;
        if kind.per_host() && step.on.is_none() {
            diags.push(
                PlanDiagnostic::error(
                    "runner::per-host-kind",
                    format!(
                        "step `{id}`: a `{}` step runs for hosts, and this one has no `on`",
                        kind.name()
                    ),
                )
                .label(step.kind_span.clone(), "runs for hosts")
                .help(
                    "declare `[hosts.NAME]` and give the step `on = \"ROLE\"` (or a list of hosts)",
                ),
            );
        }
    }
}

fn check_maintenance(file: &PlanFile, diags: &mut Vec<PlanDiagnostic>) {
    if file.maintenance.is_some() {
        return;
    }
    let hooks = file
        .steps
        .values()
        .filter_map(|s| s.rollback.as_ref().map(|h| (&h.action, &h.kind_span)));
    let steps = file.steps.values().map(|s| (&s.action, &s.kind_span));
    for (action, span) in steps.chain(hooks) {
        let kind = action;
        if kind.uses_maintenance() {
            diags.push(
                PlanDiagnostic::error("runner::no-maintenance", format!("a `{}` needs a `[maintenance]` section", kind.name()))
                    .label(span.clone(), "toggles maintenance")
                    .help("add `[maintenance]` with `container`, `on`, `off` and `status`: the commands that switch this app's maintenance mode"),
            );
        }
    }
}

fn cycle_diagnostic(file: &PlanFile, ids: &[&str], cycle: &[usize]) -> PlanDiagnostic {
    let mut path: Vec<&str> = cycle.iter().map(|&s| ids[s]).collect();
    path.push(ids[cycle[0]]);
    let mut diagnostic = PlanDiagnostic::error(
        "runner::cycle",
        format!("the steps form a cycle: {}", path.join(" -> ")),
    )
    .help(
        "steps wait for their `needs`, so a cycle never starts; remove one of the labelled needs",
    );
    for (k, &s) in cycle.iter().enumerate() {
        let next = ids[cycle[(k + 1) % cycle.len()]];
        if let Some(entry) = file.steps[s].needs.iter().find(|n| n.value == next) {
            diagnostic =
                diagnostic.label(entry.span.clone(), format!("`{}` needs `{next}`", ids[s]));
        }
    }
    diagnostic
}
