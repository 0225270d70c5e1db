//! Checks of the plan's templates (what each may refer to, from where it
//! stands) and values (the rule of the field each stands in, no secret on a
//! command line).

use indexmap::IndexMap;

use super::action::Action;
use super::diagnostic::PlanDiagnostic;
use super::model::{Command, ContainerDef, HookDef, PlanFile, PortDef, Sp};
use super::reader::{RESERVED_NAMES, suggest};
use super::rule::{Field, Rule};
use super::shell::Place as ShellPlace;
use super::template::{Name, Template};
use super::validate::Suggester;
use super::{Var, VarOrigin};
use crate::graph::Dag;

/// Every template of a step's action and environment.
fn action_templates<'a>(
    action: &'a Action,
    env: &'a IndexMap<String, Sp<Template>>,
) -> Vec<&'a Sp<Template>> {
    let mut out = action.templates();
    out.extend(env.values());
    out
}

/// The scripts of the plan (strings `sh -c` reads) and the fields whose values
/// stand on command lines or in paths, each with its rule.
fn value_fields(file: &PlanFile) -> (Vec<&Sp<Template>>, Vec<Field<'_>>) {
    let mut scripts = Vec::new();
    let mut fields = Vec::new();
    if let Some(m) = &file.maintenance {
        fields.push(("container", &m.container, Rule::Container));
        fields.extend(m.user.as_ref().map(|u| ("user", u, Rule::User)));
        for (field, c) in [("on", &m.on), ("off", &m.off), ("status", &m.status)] {
            match &c.value {
                Command::Argv(argv) => {
                    fields.extend(argv.iter().map(|a| (field, a, Rule::Argument)));
                }
                Command::Shell(s) => scripts.push(s),
            }
        }
    }
    for step in file.steps.values() {
        let creates = &step.creates;
        for c in &creates.containers {
            fields.push(("creates.containers", c.name(), Rule::Container));
            fields.extend(
                c.image()
                    .map(|i| ("creates.containers.image", i, Rule::Image)),
            );
        }
        fields.extend(
            creates
                .images
                .iter()
                .map(|i| ("creates.images", i, Rule::Image)),
        );
        fields.extend(creates.ports.iter().filter_map(|p| match p {
            PortDef::Template(t) => Some(("creates.ports", t, Rule::Port)),
            PortDef::Number(_) => None,
        }));
    }
    let actions = file
        .steps
        .values()
        .flat_map(|s| std::iter::once(&s.action).chain(s.rollback.as_deref().map(|h| &h.action)));
    for action in actions {
        let kind = action;
        scripts.extend(kind.scripts());
        fields.extend(kind.values());
    }
    (scripts, fields)
}

/// Values are data: in a script they travel in the environment, so no quoting
/// matters there, but `$(( ))` may evaluate one (bash); on a command line or in a
/// path runner builds, a value must follow its field's rule (a container name
/// cannot be `--help`), and a secret may not stand at all: every user of the
/// machine reads command lines (`ps`).
pub(super) fn check_values(
    file: &PlanFile,
    vars: &IndexMap<String, Var>,
    dir: &std::path::Path,
    diags: &mut Vec<PlanDiagnostic>,
) {
    let (scripts, fields) = value_fields(file);
    check_scripts(&scripts, diags);
    let masker =
        crate::mask::Masker::new(vars.values().filter(|v| v.secret).map(|v| v.value.clone()));
    for field in fields {
        check_field(field, vars, dir, &masker, diags);
    }
}

/// A value in a script travels in the environment; in `$(( ))` some shells
/// evaluate it.
fn check_scripts(scripts: &[&Sp<Template>], diags: &mut Vec<PlanDiagnostic>) {
    for script in scripts {
        let refs: Vec<_> = script.value.refs().collect();
        for (place, (_, text, span)) in script.value.places().into_iter().zip(&refs) {
            if place == ShellPlace::Arithmetic {
                diags.push(
                    PlanDiagnostic::error(
                        "runner::value-in-arithmetic",
                        format!("`{{{{ {text} }}}}` stands inside `$(( ))`"),
                    )
                    .label((*span).clone(), "evaluated as arithmetic")
                    .help("some shells (bash) evaluate a value there as an expression, which can run commands; check it first (`case $v in *[!0-9]*) exit 1;; esac`), then use the checked variable"),
                );
            }
        }
    }
}

/// Where a variable's value came from, for a diagnostic.
fn origin(var: &Var) -> String {
    match &var.origin {
        VarOrigin::Plan => "[vars]".to_owned(),
        VarOrigin::Env(e) => format!("${e}"),
        VarOrigin::EnvDefault(e) => format!("the default, ${e} being unset"),
        VarOrigin::CommandLine => "--var".to_owned(),
    }
}

/// A field's value follows its rule, and holds no secret.
fn check_field(
    (field, template, rule): Field<'_>,
    vars: &IndexMap<String, Var>,
    dir: &std::path::Path,
    masker: &crate::mask::Masker,
    diags: &mut Vec<PlanDiagnostic>,
) {
    let refs: Vec<_> = template.value.refs().collect();
    let mut secret = false;
    for (name, text, span) in &refs {
        if let Name::Var(v) = name
            && vars.get(v).is_some_and(|var| var.secret)
        {
            secret = true;
            let how = match rule {
                Rule::Path => "a file name",
                Rule::Shown => "text runner prints when the check fails",
                _ => "a command line",
            };
            diags.push(
                PlanDiagnostic::error(
                    "runner::secret-in-argument",
                    format!("the secret `{text}` would stand in {how} (`{field}`), which every user of this machine can read"),
                )
                .label((*span).clone(), "a secret")
                .help(format!("pass it in the step's `env` (e.g. `env = {{ SECRET = \"{{{{ {text} }}}}\" }}`) and let the command read it from there")),
            );
        }
    }
    // A step's output is known when the step starts: checked then. An
    // unknown name has an error of its own.
    let later = refs.iter().any(|(n, ..)| match n {
        Name::StepOutput(_) | Name::HostName => true,
        Name::Var(v) => !vars.contains_key(v),
        _ => false,
    });
    if secret || later {
        return;
    }
    let lookup = |name: &Name| match name {
        Name::Var(v) => vars.get(v).map(|var| var.value.clone()),
        Name::RunId => Some("20260101T000000Z-0000".to_owned()),
        Name::RunKind => Some("deploy".to_owned()),
        Name::PlanDir => Some(dir.display().to_string()),
        Name::Docker => Some("docker".to_owned()),
        Name::Compose => Some("docker compose".to_owned()),
        Name::StepOutput(_) | Name::HostName => None,
    };
    let why = if rule == Rule::Path {
        template.value.path_climbs(&lookup)
    } else {
        let value = template
            .value
            .render(&|n| lookup(n).map(super::template::Value::Text));
        rule.check(&value)
            .err()
            .map(|why| format!("{value:?} is {why}"))
    };
    let Some(why) = why.map(|why| masker.mask(&why)) else {
        return;
    };
    let mut diagnostic = PlanDiagnostic::error(
        "runner::bad-value",
        format!("`{field}` cannot take its value: {why}"),
    )
    .help("values are data: fix the value (or the variable that gives it); runner passes no value that could be read as an option or climb out of a folder");
    if refs.is_empty() {
        diagnostic = diagnostic.label(template.span.clone(), "here");
    }
    for (name, text, span) in &refs {
        let from = match name {
            Name::Var(v) => vars
                .get(v)
                .map_or_else(String::new, |var| format!(" (from {})", origin(var))),
            _ => String::new(),
        };
        diagnostic = diagnostic.label((*span).clone(), format!("`{text}`{from}"));
    }
    diags.push(diagnostic);
}

/// Where a template stands, which decides what it may reference.
#[derive(Clone, Copy)]
enum Place {
    Maintenance,
    Step(usize),
    Hook(usize),
}

pub(super) fn check_templates(
    file: &PlanFile,
    vars: &IndexMap<String, Var>,
    dag: Option<&Dag>,
    diags: &mut Vec<PlanDiagnostic>,
) {
    let mut suggester = Suggester::new(file.steps.keys().map(String::as_str));
    let mut check = |template: &Sp<Template>, place: Place, diags: &mut Vec<PlanDiagnostic>| {
        for (name, text, span) in template.value.refs() {
            if let Some(d) = check_ref(file, vars, dag, (name, text, span), place, &mut suggester) {
                diags.push(d);
            }
        }
    };
    if let Some(m) = &file.maintenance {
        let mut templates = vec![&m.container];
        templates.extend(m.user.as_ref());
        for c in [&m.on, &m.off, &m.status] {
            match &c.value {
                Command::Argv(argv) => templates.extend(argv),
                Command::Shell(s) => templates.push(s),
            }
        }
        for t in templates {
            check(t, Place::Maintenance, diags);
        }
    }
    for (i, step) in file.steps.values().enumerate() {
        let ports = step.creates.ports.iter().filter_map(|p| match p {
            PortDef::Template(t) => Some(t),
            PortDef::Number(_) => None,
        });
        for t in action_templates(&step.action, &step.env)
            .into_iter()
            .chain(step.condition.iter().flat_map(|c| c.value.refs.iter()))
            .chain(step.creates.containers.iter().map(ContainerDef::name))
            .chain(
                step.creates
                    .containers
                    .iter()
                    .filter_map(ContainerDef::image),
            )
            .chain(&step.creates.images)
            .chain(ports)
        {
            check(t, Place::Step(i), diags);
        }
        if let Some(HookDef { action, env, .. }) = step.rollback.as_deref() {
            for t in action_templates(action, env) {
                check(t, Place::Hook(i), diags);
            }
        }
    }
}

fn check_ref(
    file: &PlanFile,
    vars: &IndexMap<String, Var>,
    dag: Option<&Dag>,
    (name, text, span): (&Name, &str, &super::Span),
    place: Place,
    suggester: &mut Suggester<'_>,
) -> Option<PlanDiagnostic> {
    match name {
        Name::RunId | Name::RunKind | Name::PlanDir | Name::Docker | Name::Compose => None,
        Name::HostName => {
            let step = match place {
                Place::Step(i) | Place::Hook(i) => file.steps.get_index(i).map(|(_, s)| s),
                Place::Maintenance => None,
            };
            if step.is_some_and(|s| s.on.is_some()) {
                return None;
            }
            Some(
                PlanDiagnostic::error(
                    "runner::host-name-outside-host",
                    "`{{ host.name }}` outside a per-host step",
                )
                .label(span.clone(), "no host here")
                .help("only a step with `on` (and its rollback hook) runs for a host; give this step `on = \"ROLE\"`"),
            )
        }
        Name::Var(var) if vars.contains_key(var) || file.vars.contains_key(var) => None,
        Name::Var(var) => Some(unknown_var(vars, var, text, span)),
        Name::StepOutput(id) => output_ref(file, dag, (id, text, span), place, suggester),
    }
}

/// `{{ steps.ID.output }}`: a step of the plan that captures its output, and
/// that has run when the template is rendered.
fn output_ref(
    file: &PlanFile,
    dag: Option<&Dag>,
    (id, text, span): (&str, &str, &super::Span),
    place: Place,
    suggester: &mut Suggester<'_>,
) -> Option<PlanDiagnostic> {
    if !file.steps.contains_key(id) && file.step_spans.contains_key(id) {
        return None; // that step could not be read; its errors say why
    }
    let Some(target) = file.steps.get_index_of(id) else {
        let help = match suggester.closest(id) {
            Some(close) => format!("did you mean `{{{{ steps.{close}.output }}}}`?"),
            None => "name a step of this plan that has `capture = true`".to_owned(),
        };
        return Some(
            PlanDiagnostic::error(
                "runner::unknown-template",
                format!("`{text}` names no step of this plan"),
            )
            .label(span.clone(), "no such step")
            .help(help),
        );
    };
    let (at, here) = match place {
        Place::Maintenance => {
            return Some(
                PlanDiagnostic::error("runner::output-not-ancestor", format!("`{text}` cannot be used in `[maintenance]`"))
                    .label(span.clone(), "no step output here")
                    .help("the maintenance commands also run outside any plan (`runner maintenance on`); use a variable instead"),
            );
        }
        Place::Step(i) => (i, false),
        Place::Hook(i) => (i, true),
    };
    let action = &file.steps[target].action;
    if !action.captures() {
        let help = if action.can_capture() {
            format!(
                "set `capture = true` on the `{}` step `{id}`",
                action.name()
            )
        } else {
            format!(
                "a `{}` step keeps no output: read it from a step of a kind that has `capture`",
                action.name()
            )
        };
        return Some(
            PlanDiagnostic::error(
                "runner::output-not-captured",
                format!("step `{id}` does not capture its output"),
            )
            .label(span.clone(), "nothing captured")
            .help(help),
        );
    }
    let reachable = (here && target == at) || dag.is_none_or(|d| d.is_ancestor(target, at));
    if reachable {
        return None;
    }
    let at_id = file.steps.get_index(at).map_or("", |(k, _)| k.as_str());
    Some(
        PlanDiagnostic::error(
            "runner::output-not-ancestor",
            format!("`{at_id}` reads the output of `{id}`, which it does not need"),
        )
        .label(span.clone(), format!("`{id}` may not have run yet"))
        .help(format!(
            "add `{id}` to the `needs` of `{at_id}` (directly or through another step)"
        )),
    )
}

/// An unknown variable: the closest known name, or how to declare one.
fn unknown_var(
    vars: &IndexMap<String, Var>,
    var: &str,
    text: &str,
    span: &super::Span,
) -> PlanDiagnostic {
    let known = vars
        .keys()
        .map(String::as_str)
        .chain(["run.id", "plan.dir", "docker", "compose"]);
    let help = match suggest(var, known) {
        Some(close) => format!("did you mean `{{{{ {close} }}}}`?"),
        None => format!(
            "declare it in `[vars]` or pass `--var {var}=...`; built in: {}, `steps.ID.output`",
            RESERVED_NAMES
                .iter()
                .filter(|n| **n != "steps")
                .map(|n| match *n {
                    "run" => "`run.id`".to_owned(),
                    "plan" => "`plan.dir`".to_owned(),
                    other => format!("`{other}`"),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    PlanDiagnostic::error(
        "runner::unknown-template",
        format!("unknown template name `{text}`"),
    )
    .label(span.clone(), "not a variable")
    .help(help)
}
