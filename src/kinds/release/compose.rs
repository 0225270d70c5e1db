//! A release that is a compose service: one more container of the service,
//! made by compose from the compose file as the release has it (as
//! docker-rollout scales it), beside the running one.
//!
//! What it asks of the compose file, checked before the scale (and by the
//! preflight, on the file as it is before the run): the service exists, has no
//! `container_name` (two containers of it cannot share one) and publishes no
//! host port (two containers of it cannot both bind it); the proxy reaches it
//! by the service's name.

use yaml_rust2::{Yaml, YamlLoader};

use super::words;
use super::work::{ReleaseWork, ids, told};
use crate::engine::Attempt;
use crate::kinds::kind::excerpt;

/// What in `config` (the output of `compose config`) keeps `service` from
/// running two containers at once; `Err` when it cannot be read.
pub(crate) fn problems(config: &str, service: &str) -> Result<Vec<String>, String> {
    let docs = YamlLoader::load_from_str(config)
        .map_err(|e| format!("`compose config` printed what is not YAML: {e}"))?;
    let Some(doc) = docs.first() else {
        return Err("`compose config` printed nothing".to_owned());
    };
    let services = &doc["services"];
    let found = &services[service];
    if found.is_badvalue() {
        let known: Vec<String> = services
            .as_hash()
            .map(|h| {
                h.keys()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        return Ok(vec![format!(
            "the compose file has no service `{service}` (it has: {})",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )]);
    }
    let mut out = Vec::new();
    if let Some(name) = found["container_name"].as_str() {
        out.push(format!(
            "service `{service}` has `container_name: {name}`: a second container of it cannot start beside the running one under the same name"
        ));
    }
    for port in found["ports"].as_vec().map_or(&[][..], Vec::as_slice) {
        if let Some(published) = published(port) {
            out.push(format!(
                "service `{service}` publishes port {published} on the host: a second container of it cannot bind it too"
            ));
        }
    }
    Ok(out)
}

/// The host side of a port entry, when it publishes one: short syntax
/// (`"127.0.0.1:8080:80"`, `"8080:80/tcp"`) or long (`published: 8080`).
fn published(port: &Yaml) -> Option<String> {
    match port {
        Yaml::String(text) => {
            let spec = text.split('/').next().unwrap_or(text);
            spec.contains(':').then(|| text.clone())
        }
        Yaml::Hash(_) => match &port["published"] {
            Yaml::Integer(n) => Some(n.to_string()),
            Yaml::String(s) if !s.is_empty() => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// The compose arguments that make the service `count` containers, the new
/// ones made but not started, nothing else touched.
pub(super) fn scale_up(service: &str, count: usize) -> Vec<String> {
    let scale = format!("{service}={count}");
    words(&[
        "up",
        "--no-start",
        "--no-deps",
        "--no-build",
        "--no-recreate",
        "--scale",
        &scale,
        service,
    ])
}

/// One container of the service, as docker sees it.
struct Member {
    id: String,
    name: String,
    running: bool,
}

/// The containers of `service` (not those of `compose run`).
async fn members(
    work: &ReleaseWork,
    service: &str,
    attempt: &Attempt,
) -> Result<Vec<Member>, String> {
    let listed = work
        .compose(words(&["ps", "-a", "-q", service]), attempt)
        .await;
    if !listed.ok {
        return Err(format!(
            "the containers of service `{service}`: {}",
            excerpt(&listed.text)
        ));
    }
    let ids = ids(&listed.out);
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = words(&[
        "container",
        "inspect",
        "--format",
        "{{.Id}} {{.State.Running}} {{index .Config.Labels \"com.docker.compose.oneoff\"}} {{.Name}}",
        "--",
    ]);
    args.extend(ids);
    let inspected = work.docker(args, attempt).await;
    if !inspected.ok {
        return Err(format!(
            "the containers of service `{service}`: {}",
            excerpt(&inspected.text)
        ));
    }
    Ok(inspected
        .out
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(4, ' ');
            let id = parts.next()?.to_owned();
            let running = parts.next()? == "true";
            let oneoff = parts.next()?.eq_ignore_ascii_case("true");
            let name = parts.next()?.trim_start_matches('/').to_owned();
            (!oneoff).then_some(Member { id, name, running })
        })
        .collect())
}

/// Makes the new release's container as `NEXT`, out of traffic, started: the
/// compose file checked, the running container named as the app, one more
/// container of the service made (not started), named, taken off the
/// service's name on each of its networks, then started.
pub(super) async fn make_beside(
    work: &ReleaseWork,
    service: &str,
    attempt: &Attempt,
) -> Result<(), String> {
    let r = &work.r;
    let config = work.compose(words(&["config"]), attempt).await;
    told("read the compose file", &config, attempt).await?;
    let found = problems(&config.out, service)?;
    if !found.is_empty() {
        return Err(found.join("; "));
    }

    let before = members(work, service, attempt).await?;
    let stopped: Vec<&str> = before
        .iter()
        .filter(|m| !m.running)
        .map(|m| m.name.as_str())
        .collect();
    if !stopped.is_empty() {
        return Err(format!(
            "service `{service}` has stopped containers ({}): compose would count them; remove them, and the release starts beside the running one",
            stopped.join(", ")
        ));
    }
    if !before.iter().any(|m| m.name == r.container) {
        match before.as_slice() {
            [] => {}
            [one] => {
                work.rename(
                    &format!("name {} {}", one.name, r.container),
                    &one.id,
                    &r.container,
                    attempt,
                )
                .await?;
            }
            many => {
                let names: Vec<&str> = many.iter().map(|m| m.name.as_str()).collect();
                return Err(format!(
                    "service `{service}` runs {} containers and none is named {}: which one serves cannot be told ({}); scale it to one",
                    many.len(),
                    r.container,
                    names.join(", ")
                ));
            }
        }
    }

    let made = work
        .compose(scale_up(service, before.len() + 1), attempt)
        .await;
    let after = members(work, service, attempt).await?;
    let new: Vec<&Member> = after
        .iter()
        .filter(|m| !before.iter().any(|b| b.id == m.id))
        .collect();
    let outcome = match (made.ok, new.as_slice()) {
        (true, [one]) => Ok(one.id.clone()),
        (false, _) => Err(format!(
            "compose could not make a container of `{service}`: {}",
            excerpt(&made.text)
        )),
        (true, other) => Err(format!(
            "compose made {} containers of `{service}` where one was asked",
            other.len()
        )),
    };
    let id = match outcome {
        Ok(id) => id,
        Err(why) => {
            // Nothing it made may stay: compose would count it next time.
            if !new.is_empty() {
                let mut args = words(&["rm", "-f", "--"]);
                args.extend(new.iter().map(|m| m.id.clone()));
                let _ = work.docker(args, attempt).await;
            }
            return Err(why);
        }
    };
    attempt
        .output
        .info(format!("compose made {}", &id[..id.len().min(12)]))
        .await;
    if let Err(why) = work.rename("name it", &id, &r.next, attempt).await {
        let _ = work.docker(words(&["rm", "-f", "--", &id]), attempt).await;
        return Err(why);
    }
    work.leave_traffic(&r.next, attempt).await?;
    work.must("start it", words(&["start", &r.next]), attempt)
        .await
}

#[cfg(test)]
mod tests {
    use super::problems;

    const GOOD: &str = "services:\n  web:\n    image: shop:latest\n    ports:\n    - target: 3000\n  proxy:\n    ports:\n    - 127.0.0.1:8080:80/tcp\n";

    #[test]
    fn a_service_that_can_run_twice_has_no_problem() {
        assert_eq!(problems(GOOD, "web"), Ok(Vec::new()));
    }

    #[test]
    fn a_fixed_name_and_published_ports_are_named() {
        let config = "services:\n  web:\n    container_name: shop-web\n    ports:\n    - 127.0.0.1:3000:3000/tcp\n    - published: 8443\n      target: 443\n    - \"3001\"\n";
        let found = problems(config, "web").expect("yaml");
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].contains("container_name: shop-web"));
        assert!(found[1].contains("127.0.0.1:3000:3000/tcp"));
        assert!(found[2].contains("port 8443"));
    }

    #[test]
    fn a_missing_service_names_those_there_are() {
        let found = problems(GOOD, "app").expect("yaml");
        assert_eq!(found.len(), 1);
        assert!(
            found[0].contains("no service `app` (it has: web, proxy)"),
            "{found:?}"
        );
    }

    #[test]
    fn what_is_not_yaml_is_an_error() {
        assert!(problems("services: [", "web").is_err());
    }
}
