//! The plan reader's sections: `[plan]`, `[vars]`, `[docker]`, `[maintenance]`,
//! `[hosts]` and `[rollout]`.

use indexmap::IndexMap;
use toml::de::{DeTable, DeValue};

use super::diagnostic::{PlanDiagnostic, Span};
use super::model::{
    DockerSection, EnvVar, HostDef, MaintenanceSection, On, PlanSection, Policy, RolloutSection,
    Share, Sp, SudoMode, VarDef,
};
use super::reader::{
    Key, MAINTENANCE_FIELDS, RESERVED_NAMES, Reader, Value, find, is_plain_name, list, suggest,
};

impl Reader<'_> {
    pub(super) fn hosts(
        &mut self,
        value: &Value<'_>,
    ) -> (IndexMap<String, HostDef>, IndexMap<String, Span>) {
        let mut hosts = IndexMap::new();
        let mut spans = IndexMap::new();
        let Some(table) = self.table(
            value,
            "hosts",
            "`[hosts.web1]` with `docker = \"ssh://deploy@10.0.0.11\"`",
        ) else {
            return (hosts, spans);
        };
        for (key, value) in table {
            let name = key.get_ref().as_ref();
            if !is_plain_name(name) {
                self.error(
                    PlanDiagnostic::error("runner::bad-name", format!("`{name}` is not a valid host name"))
                        .label(key.span(), "invalid name")
                        .help("host names use letters, digits, `-` and `_` (they appear in step ids: `restart-app@web1`)"),
                );
            }
            if let Some(host) = self.host(name, key.span(), value) {
                spans.insert(name.to_owned(), key.span());
                hosts.insert(name.to_owned(), host);
            }
        }
        (hosts, spans)
    }

    pub(super) fn host(&mut self, name: &str, key: Span, value: &Value<'_>) -> Option<HostDef> {
        let table = self.table(
            value,
            name,
            "`[hosts.web1]` with `docker = \"ssh://deploy@10.0.0.11\"`",
        )?;
        self.check_keys(
            table,
            &["docker", "context", "roles"],
            &format!("host `{name}`"),
            &|_| None,
        );
        let docker = find(table, "docker").and_then(|v| self.string(v, "docker"));
        let context = find(table, "context").and_then(|v| self.string(v, "context"));
        let roles = find(table, "roles")
            .and_then(|v| self.strings(v, "roles"))
            .unwrap_or_default();
        for role in &roles {
            if !is_plain_name(&role.value) {
                self.error(
                    PlanDiagnostic::error(
                        "runner::bad-name",
                        format!("`{}` is not a valid role", role.value),
                    )
                    .label(role.span.clone(), "invalid role")
                    .help("roles use letters, digits, `-` and `_`"),
                );
            }
        }
        match (&docker, &context) {
            (Some(_), Some(c)) => self.error(
                PlanDiagnostic::error(
                    "runner::host-engine",
                    format!("host `{name}` has both `docker` and `context`"),
                )
                .label(c.span.clone(), "one of the two")
                .help("keep `docker` (what DOCKER_HOST takes) or `context` (a docker context), not both"),
            ),
            (None, None) => self.missing(key, &format!("host `{name}`"), "docker", "\"ssh://deploy@10.0.0.11\""),
            (Some(d), None) => {
                if let Err(why) = engine_address(&d.value) {
                    self.error(
                        PlanDiagnostic::error(
                            "runner::host-engine",
                            format!("host `{name}`: `{}` is not a Docker engine address: {why}", d.value),
                        )
                        .label(d.span.clone(), "not an engine address")
                        .help("write `ssh://user@host`, `ssh://user@host:2222`, `unix:///var/run/docker.sock` or `tcp://host:2376`"),
                    );
                }
            }
            (None, Some(c)) => {
                if !is_context_name(&c.value) {
                    self.error(
                        PlanDiagnostic::error(
                            "runner::host-engine",
                            format!("host `{name}`: `{}` is not a docker context name", c.value),
                        )
                        .label(c.span.clone(), "not a context name")
                        .help("context names use letters, digits, `_`, `.` and `-`, and start with a letter or digit"),
                    );
                }
            }
        }
        Some(HostDef {
            docker,
            context,
            roles,
        })
    }

    pub(super) fn rollout(&mut self, value: &Value<'_>) -> Option<RolloutSection> {
        let table = self.table(value, "rollout", "`[rollout]` with `serial = 1`")?;
        self.check_keys(table, &["serial", "max_fail"], "[rollout]", &|_| None);
        let serial = find(table, "serial").and_then(|v| self.share(v, "serial", 1));
        let max_fail = find(table, "max_fail").and_then(|v| self.share(v, "max_fail", 0));
        Some(RolloutSection { serial, max_fail })
    }

    /// A count of hosts (at least `min`) or a share such as `"25%"`.
    pub(super) fn share(&mut self, value: &Value<'_>, field: &str, min: i64) -> Option<Sp<Share>> {
        let bad = |this: &mut Self, why: &str| {
            this.error(
                PlanDiagnostic::error(
                    "runner::bad-share",
                    format!("`{field}` must be a number of hosts (at least {min}) or a share such as \"25%\": {why}"),
                )
                .label(value.span(), why.to_owned())
                .help(format!("write `{field} = {}` or `{field} = \"25%\"`", min.max(1))),
            );
        };
        match value.get_ref() {
            DeValue::Integer(_) => {
                let n = self.integer(value, field, (min, 100_000))?;
                Some(Sp::new(Share::Count(u32::try_from(n.value).ok()?), n.span))
            }
            DeValue::String(text) => {
                let Some(number) = text.strip_suffix('%') else {
                    bad(self, "a share ends with `%`");
                    return None;
                };
                match number.parse::<u32>() {
                    Ok(p) if p <= 100 && (min == 0 || p > 0) => {
                        Some(Sp::new(Share::Percent(p), value.span()))
                    }
                    _ => {
                        bad(self, "a share is a whole percentage in range");
                        None
                    }
                }
            }
            _ => {
                self.wrong_type(
                    value,
                    field,
                    "a number or a share",
                    &format!("`{field} = 1`"),
                );
                None
            }
        }
    }

    /// `on` names a role or a host; a list names hosts.
    pub(super) fn check_on(&mut self, on: &On, hosts: &IndexMap<String, HostDef>, declared: bool) {
        let names: Vec<&Sp<String>> = match on {
            On::One(name) => vec![name],
            On::Hosts(names) => names.iter().collect(),
        };
        if !declared {
            if let Some(first) = names.first() {
                self.error(
                    PlanDiagnostic::error("runner::on-without-hosts", "`on` without `[hosts]`")
                        .label(first.span.clone(), "no host has this name or role")
                        .help("declare the hosts: `[hosts.web1]` with `docker = \"ssh://deploy@10.0.0.11\"` and `roles = [\"web\"]`"),
                );
            }
            return;
        }
        let mut roles: Vec<&str> = hosts
            .values()
            .flat_map(|h| h.roles.iter().map(|r| r.value.as_str()))
            .collect();
        roles.sort_unstable();
        roles.dedup();
        for name in names {
            let is_host = hosts.contains_key(&name.value);
            let is_role = matches!(on, On::One(_)) && roles.contains(&name.value.as_str());
            if is_host || is_role {
                continue;
            }
            let candidates: Vec<&str> = if matches!(on, On::One(_)) {
                hosts
                    .keys()
                    .map(String::as_str)
                    .chain(roles.iter().copied())
                    .collect()
            } else {
                hosts.keys().map(String::as_str).collect()
            };
            let what = if matches!(on, On::One(_)) {
                "host or role"
            } else {
                "host"
            };
            let help = match suggest(&name.value, candidates.iter().copied()) {
                _ if roles.contains(&name.value.as_str()) => format!(
                    "`{0}` is a role, and a list names hosts: write `on = \"{0}\"` for every host of the role",
                    name.value
                ),
                Some(close) => format!("did you mean `{close}`?"),
                None => format!(
                    "`on` takes a role or a host name, or a list of host names; this plan has {}",
                    list(&candidates)
                ),
            };
            self.error(
                PlanDiagnostic::error(
                    "runner::unknown-host",
                    format!("no {what} is named `{}`", name.value),
                )
                .label(name.span.clone(), format!("unknown {what}"))
                .help(help),
            );
        }
    }

    pub(super) fn plan_section(&mut self, value: &Value<'_>) -> Option<PlanSection> {
        let table = self.table(value, "plan", "`[plan]` with `name = \"...\"`")?;
        self.check_keys(table, &["name", "jobs", "keep"], "[plan]", &|_| None);
        let jobs = find(table, "jobs").and_then(|v| self.u32(v, "jobs", (1, 1024)));
        let keep = find(table, "keep").and_then(|v| self.u32(v, "keep", (1, 1000)));
        let Some(name) = find(table, "name") else {
            self.missing(value.span(), "[plan]", "name", "\"my app production\"");
            return None;
        };
        let name = self.string(name, "name")?;
        Some(PlanSection { name, jobs, keep })
    }

    pub(super) fn vars(
        &mut self,
        value: &Value<'_>,
    ) -> (IndexMap<String, VarDef>, IndexMap<String, Span>) {
        let mut out = IndexMap::new();
        let mut spans = IndexMap::new();
        let Some(table) = self.table(value, "vars", "`[vars]` with `app = \"my-app\"`") else {
            return (out, spans);
        };
        for (key, value) in table {
            let name = key.get_ref().as_ref();
            spans.insert(name.to_owned(), key.span());
            if !is_plain_name(name) {
                self.error(
                    PlanDiagnostic::error(
                        "runner::bad-name",
                        format!("`{name}` is not a valid variable name"),
                    )
                    .label(key.span(), "invalid name")
                    .help("variable names use letters, digits, `-` and `_`"),
                );
                continue;
            }
            if RESERVED_NAMES.contains(&name) {
                self.error(
                    PlanDiagnostic::error(
                        "runner::reserved-name",
                        format!("`{name}` is a built-in template name"),
                    )
                    .label(key.span(), "reserved")
                    .help(format!(
                        "rename the variable; {} are built in",
                        list(RESERVED_NAMES)
                    )),
                );
                continue;
            }
            let var = match value.get_ref() {
                DeValue::String(_) => self.string(value, name).map(VarDef::Literal),
                DeValue::Integer(i) => Some(VarDef::Literal(Sp::new(i.to_string(), value.span()))),
                DeValue::Float(f) => Some(VarDef::Literal(Sp::new(
                    f.as_str().to_owned(),
                    value.span(),
                ))),
                DeValue::Boolean(b) => Some(VarDef::Literal(Sp::new(b.to_string(), value.span()))),
                DeValue::Table(t) => self.env_var(t, key),
                DeValue::Array(_) | DeValue::Datetime(_) => {
                    self.wrong_type(
                        value,
                        name,
                        "a string, a number, a boolean or `{ env = \"NAME\" }`",
                        &format!(
                            "`{name} = \"value\"` or `{name} = {{ env = \"NAME\", secret = true }}`"
                        ),
                    );
                    None
                }
            };
            if let Some(var) = var {
                out.insert(name.to_owned(), var);
            }
        }
        (out, spans)
    }

    pub(super) fn env_var(&mut self, table: &DeTable<'_>, key: &Key<'_>) -> Option<VarDef> {
        let name = key.get_ref().as_ref();
        self.check_keys(
            table,
            &["env", "secret", "default"],
            &format!("variable `{name}`"),
            &|_| None,
        );
        let secret = find(table, "secret")
            .and_then(|v| self.boolean(v, "secret"))
            .unwrap_or(false);
        let default = find(table, "default").and_then(|v| self.string(v, "default"));
        let Some(env) = find(table, "env") else {
            self.missing(key.span(), &format!("variable `{name}`"), "env", "\"NAME\"");
            return None;
        };
        let env = self.string(env, "env")?;
        Some(VarDef::Env(EnvVar {
            env,
            secret,
            default,
        }))
    }

    pub(super) fn docker(&mut self, value: &Value<'_>) -> DockerSection {
        let Some(table) = self.table(value, "docker", "`[docker]` with `sudo = \"auto\"`") else {
            return DockerSection::default();
        };
        self.check_keys(table, &["sudo"], "[docker]", &|_| None);
        let sudo = find(table, "sudo")
            .and_then(|v| {
                self.choice(
                    v,
                    "sudo",
                    &[
                        ("auto", SudoMode::Auto),
                        ("always", SudoMode::Always),
                        ("never", SudoMode::Never),
                    ],
                )
            })
            .map_or(SudoMode::Auto, |s| s.value);
        DockerSection { sudo }
    }

    pub(super) fn policy(&mut self, table: &DeTable<'_>) -> Policy {
        Policy {
            timeout: find(table, "timeout").and_then(|v| self.duration(v, "timeout")),
            retries: find(table, "retries").and_then(|v| self.u32(v, "retries", (0, 1000))),
            retry_delay: find(table, "retry_delay").and_then(|v| self.duration(v, "retry_delay")),
            backoff: find(table, "backoff").and_then(|v| self.backoff(v)),
        }
    }

    pub(super) fn maintenance(&mut self, value: &Value<'_>) -> Option<MaintenanceSection> {
        let table = self.table(
            value,
            "maintenance",
            "`[maintenance]` with `container`, `on`, `off`, `status`",
        )?;
        self.check_keys(table, MAINTENANCE_FIELDS, "[maintenance]", &|_| None);
        let required = |reader: &mut Self, field: &str, hint: &str| {
            let v = find(table, field);
            if v.is_none() {
                reader.missing(value.span(), "[maintenance]", field, hint);
            }
            v
        };
        let container = required(self, "container", "\"{{ app }}\"");
        let on = required(self, "on", "[\"bin/maintenance\", \"on\"]");
        let off = required(self, "off", "[\"bin/maintenance\", \"off\"]");
        let status = required(self, "status", "[\"bin/maintenance\", \"status\"]");
        let container = container.and_then(|v| self.template(v, "container"));
        let on = on.and_then(|v| self.command(v, "on"));
        let off = off.and_then(|v| self.command(v, "off"));
        let status = status.and_then(|v| self.command(v, "status"));
        let status_on = find(table, "status_on").and_then(|v| self.string(v, "status_on"));
        let status_off = find(table, "status_off").and_then(|v| self.string(v, "status_off"));
        let user = find(table, "user").and_then(|v| self.template(v, "user"));
        Some(MaintenanceSection {
            container: container?,
            on: on?,
            off: off?,
            status: status?,
            status_on,
            status_off,
            user,
        })
    }
}

/// Checks a `DOCKER_HOST`-style address: `ssh://[user@]host[:port]`,
/// `unix:///path` or `tcp://host:port`. Nothing in it may be read as an
/// option by ssh or docker.
pub(super) fn engine_address(address: &str) -> Result<(), &'static str> {
    super::address::parse(address).map(|_| ())
}

/// A docker context name: what `docker context create` accepts.
pub(super) fn is_context_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}
