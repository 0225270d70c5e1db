//! What each stage of a release does, as the preview shows it
//! ([`operations`]) and as a run carries it out ([`ReleaseWork`]).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::{HEALTH_EVERY, Resolved, Stage, Way, compose, words};
use crate::docker::Docker;
use crate::engine::{Attempt, Attempted, End, Outcome, Work};
use crate::kinds::kind::{Operation, excerpt};
use crate::process::{self, Pipe, Spec};

/// The commands of a stage, in order, for the preview.
pub(super) fn operations(
    r: &Resolved,
    stage: Stage,
    undo: bool,
    docker_words: &[String],
    env: &[(String, String)],
) -> Vec<Operation> {
    let docker = |args: &[&str]| prefixed(docker_words, words(args));
    let mut ops = Vec::new();
    match (stage, undo) {
        (Stage::Start, false) => ops = start_ops(r, docker_words, env),
        (Stage::Start, true) => ops.push(Operation::process(
            "remove the new release",
            docker(&["rm", "-f", "--", &r.next]),
        )),
        (Stage::Join, false) => {
            ops.extend(take_traffic_ops(r, docker, false));
            ops.extend(retire_ops(r, &docker, false, false));
        }
        (Stage::Switch, false) => {
            ops.extend(
                take_traffic_ops(r, docker, true)
                    .map(|op| op.note("not when a `join` stage gave it the name already")),
            );
            ops.extend(
                retire_ops(r, &docker, true, true)
                    .into_iter()
                    .map(|op| op.note("not when a `join` stage retired it already")),
            );
        }
        (Stage::Join | Stage::Switch, true) => ops = switch_back_ops(r, docker_words),
        (Stage::Finish, _) => ops.push(
            Operation::process(
                "remove the previous release",
                docker(&["rm", "-f", "--", &r.previous]),
            )
            .note("kept, stopped, until now for a rollback"),
        ),
    }
    ops
}

/// The start: the new release made beside the running one, then probed.
fn start_ops(r: &Resolved, docker_words: &[String], env: &[(String, String)]) -> Vec<Operation> {
    let docker = |args: &[&str]| prefixed(docker_words, words(args));
    let mut ops = vec![
        Operation::process("clear", docker(&["rm", "-f", "--", &r.next, &r.previous]))
            .note("what an earlier run left"),
    ];
    match &r.way {
        Way::Run { networks, .. } => {
            let mut run = docker_words.to_vec();
            run.extend(r.run(env));
            ops.push(Operation::process("start beside", run));
            for network in networks.iter().skip(1) {
                ops.push(Operation::process(
                    "join",
                    docker(&["network", "connect", network, &r.next]),
                ));
            }
        }
        Way::Compose {
            service,
            compose,
            dir,
        } => ops.extend(compose_start_ops(r, service, compose, dir, docker)),
    }
    ops.push(
        Operation::process(
            "probe inside",
            prefixed(docker_words, r.health_check(&r.next)),
        )
        .note(format!(
            "until it answers, for {} at most (every {}ms)",
            humantime::format_duration(r.health_timeout),
            HEALTH_EVERY.as_millis()
        )),
    );
    ops
}

/// A compose service's new container: scaled up beside the running one,
/// named, and kept out of traffic until the switch.
fn compose_start_ops(
    r: &Resolved,
    service: &str,
    words_of_compose: &[String],
    dir: &std::path::Path,
    docker: impl Fn(&[&str]) -> Vec<String>,
) -> [Operation; 6] {
    [
        Operation::process(
            "read the compose file",
            prefixed(words_of_compose, words(&["config"])),
        )
        .note(format!(
            "in {}: `{service}` has no `container_name` and publishes no host port",
            dir.display()
        )),
        Operation::process(
            "name the running one",
            docker(&[
                "rename",
                &format!("<the one container of {service}>"),
                &r.container,
            ]),
        )
        .note(format!("when no container is named {} yet", r.container)),
        Operation::process(
            "make one beside",
            prefixed(words_of_compose, compose::scale_up(service, 2)),
        )
        .note("one more than run now, from the compose file as it is now"),
        Operation::process(
            "name it",
            docker(&["rename", "<the new container>", &r.next]),
        ),
        Operation::process(
            "keep it out of traffic",
            docker(&["network", "disconnect", "<each of its networks>", &r.next]),
        )
        .note(format!(
            "then `network connect` again, without the name {service}, until the switch"
        )),
        Operation::process("start it", docker(&["start", &r.next])),
    ]
}

/// The undo of a switch: the previous release back under the name, the new
/// one drained and out of traffic.
fn switch_back_ops(r: &Resolved, docker_words: &[String]) -> Vec<Operation> {
    let docker = |args: &[&str]| prefixed(docker_words, words(args));
    let drain = format!("--time={}", r.drain.as_secs());
    vec![
        Operation::process("start the previous one", docker(&["start", &r.previous])),
        Operation::process(
            "probe inside",
            prefixed(docker_words, r.health_check(&r.previous)),
        ),
        Operation::process(
            "set the new one aside",
            docker(&["rename", &r.container, &r.next]),
        ),
        Operation::process(
            "give the name back",
            docker(&["rename", &r.previous, &r.container]),
        ),
        Operation::process("drain the new one", docker(&["stop", &drain, &r.next]))
            .note("SIGTERM, with its name: requests in flight finish"),
        leave_traffic_op(r, docker),
        Operation::process("start it again", docker(&["start", &r.next]))
            .note("out of traffic, for the hooks before the start's undo (which removes it)"),
    ]
}

/// A command's words after its program's (`docker`, `sudo -n docker`, a compose).
fn prefixed(program: &[String], args: Vec<String>) -> Vec<String> {
    let mut argv = program.to_vec();
    argv.extend(args);
    argv
}

/// How the new release takes the name (`join`, or `switch` without one): off
/// the proxy's network(s), back on as the alias.
fn take_traffic_ops(
    r: &Resolved,
    docker: impl Fn(&[&str]) -> Vec<String>,
    for_users: bool,
) -> [Operation; 2] {
    let network = traffic_network(r);
    [
        Operation::process(
            "off the network (to come back named)",
            docker(&["network", "disconnect", &network, &r.next]),
        ),
        Operation::process(
            "take traffic",
            docker(&[
                "network",
                "connect",
                &format!("--alias={}", r.alias()),
                &network,
                &r.next,
            ]),
        )
        .note(if for_users {
            format!(
                "both releases answer for a moment ({} for the proxy to see it)",
                humantime::format_duration(r.settle)
            )
        } else {
            "both releases answer the maintenance page; the proxy has the migrations' time to see it"
                .to_owned()
        }),
    ]
}

/// How the running release is retired: set aside, then drained once it
/// receives nothing new (`name_next`: the new one takes the app's name
/// between the two).
fn retire_ops(
    r: &Resolved,
    docker: &impl Fn(&[&str]) -> Vec<String>,
    name_next: bool,
    for_users: bool,
) -> Vec<Operation> {
    let drain = format!("--time={}", r.drain.as_secs());
    let mut ops = vec![
        Operation::process("clear", docker(&["rm", "-f", "--", &r.previous]))
            .note("the release before the running one"),
        Operation::process(
            "keep the running one",
            docker(&["rename", &r.container, &r.previous]),
        ),
    ];
    if name_next {
        ops.push(Operation::process(
            "name the new one",
            docker(&["rename", &r.next, &r.container]),
        ));
    }
    ops.push(
        Operation::process(
            "drain the previous one",
            docker(&["stop", &drain, &r.previous]),
        )
        .note(if for_users {
            format!(
                "SIGTERM, requests in flight finish; it is kept, stopped, for a rollback; {} first when the rename took it off the name {}",
                humantime::format_duration(r.settle),
                r.alias()
            )
        } else {
            "SIGTERM, requests in flight finish; it is kept, stopped, for a rollback; at once: inside the window the proxy answers the page when it does not".to_owned()
        }),
    );
    ops
}

/// How the new release leaves the name (undoing `join`, or the switch).
fn leave_traffic_op(r: &Resolved, docker: impl Fn(&[&str]) -> Vec<String>) -> Operation {
    Operation::process(
        "the new one leaves the name",
        docker(&["network", "disconnect", &traffic_network(r), &r.next]),
    )
    .note(if rejoins(r) {
        "then `network connect` again, without the name"
    } else {
        "off the proxy's network"
    })
}

/// The network the proxy reaches the release on, as the preview names it.
fn traffic_network(r: &Resolved) -> String {
    match &r.way {
        Way::Run { network, .. } => network.clone(),
        Way::Compose { .. } => format!("<each network of {}>", r.next),
    }
}

/// Whether the new release is on the proxy's network before it takes traffic
/// (without the name): it then leaves and joins again, named.
fn rejoins(r: &Resolved) -> bool {
    match &r.way {
        Way::Run { networks, .. } => networks.is_empty(),
        Way::Compose { .. } => true,
    }
}

pub(super) struct ReleaseWork {
    pub(super) stage: Stage,
    pub(super) undo: bool,
    pub(super) r: Resolved,
    pub(super) docker: Arc<Docker>,
    /// The step's own variables, for the new container.
    pub(super) env: Vec<(String, String)>,
    /// The plan's folder.
    pub(super) dir: PathBuf,
}

/// What one docker command did.
pub(super) struct Said {
    pub(super) ok: bool,
    /// Its output.
    pub(super) out: String,
    /// Its error output, else its output: what to tell.
    pub(super) text: String,
}

impl ReleaseWork {
    async fn command(&self, argv: Vec<String>, attempt: &Attempt) -> Said {
        let mut spec = Spec::new(argv, self.r.dir(&self.dir));
        spec.env.extend(self.docker.env.iter().cloned());
        spec.env.extend(self.env.iter().cloned());
        spec.env.extend(self.r.bound().iter().cloned());
        spec.stdout = Pipe::kept();
        spec.stderr = Pipe::kept();
        let ran = process::run(&spec, None, &attempt.cancel).await;
        let mut text = ran.stderr.join("\n");
        if text.trim().is_empty() {
            text.clone_from(&ran.stdout);
        }
        Said {
            ok: ran.end.success(),
            out: ran.stdout,
            text: text.trim().to_owned(),
        }
    }

    pub(super) async fn docker(&self, args: Vec<String>, attempt: &Attempt) -> Said {
        self.command(prefixed(&self.docker.command, args), attempt)
            .await
    }

    pub(super) async fn compose(&self, args: Vec<String>, attempt: &Attempt) -> Said {
        self.command(prefixed(&self.docker.compose_command(), args), attempt)
            .await
    }

    /// Runs a docker command that must succeed; the reason when it does not.
    pub(super) async fn must(
        &self,
        what: &str,
        args: Vec<String>,
        attempt: &Attempt,
    ) -> Result<(), String> {
        let said = self.docker(args, attempt).await;
        told(what, &said, attempt).await
    }

    async fn exists(&self, name: &str, attempt: &Attempt) -> bool {
        self.docker(words(&["container", "inspect", "--", name]), attempt)
            .await
            .ok
    }

    /// Asks the health URL inside `container` until it answers, or the
    /// container stops, or the time is out.
    async fn healthy(&self, container: &str, attempt: &Attempt) -> Result<(), String> {
        let until = Instant::now() + self.r.health_timeout;
        let mut asked = 0u32;
        loop {
            asked += 1;
            let said = self.docker(self.r.health_check(container), attempt).await;
            if said.ok {
                attempt
                    .output
                    .info(format!(
                        "{container} answers {} (asked {asked} time{})",
                        self.r.health,
                        if asked == 1 { "" } else { "s" }
                    ))
                    .await;
                return Ok(());
            }
            if crate::docker::refused(&said.text) || attempt.cancel.is_cancelled() {
                let logs = self
                    .docker(words(&["logs", "--tail", "20", "--", container]), attempt)
                    .await;
                let mut why = format!("{container} stopped before it answered {}", self.r.health);
                if !logs.text.is_empty() {
                    let _ = write!(why, "; its last words: {}", excerpt(&logs.text));
                }
                return Err(why);
            }
            if Instant::now() >= until {
                return Err(format!(
                    "{container} did not answer {} within {} ({})",
                    self.r.health,
                    humantime::format_duration(self.r.health_timeout),
                    excerpt(&said.text)
                ));
            }
            tokio::time::sleep(HEALTH_EVERY).await;
        }
    }

    /// The networks on which `name` takes traffic: the proxy's, or, for a
    /// compose service, each network compose gave it.
    async fn traffic_networks(&self, name: &str, attempt: &Attempt) -> Result<Vec<String>, String> {
        match &self.r.way {
            Way::Run { network, .. } => Ok(vec![network.clone()]),
            Way::Compose { .. } => self.networks_of(name, attempt).await,
        }
    }

    /// The networks a container is on.
    pub(super) async fn networks_of(
        &self,
        name: &str,
        attempt: &Attempt,
    ) -> Result<Vec<String>, String> {
        let said = self
            .docker(
                words(&[
                    "container",
                    "inspect",
                    "--format",
                    "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}}\n{{end}}",
                    "--",
                    name,
                ]),
                attempt,
            )
            .await;
        if !said.ok {
            return Err(format!("the networks of {name}: {}", excerpt(&said.text)));
        }
        Ok(said
            .out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// `name` answers to the release's alias on the proxy's network(s).
    async fn take_traffic(&self, name: &str, attempt: &Attempt) -> Result<(), String> {
        let alias = self.r.alias().to_owned();
        for network in self.traffic_networks(name, attempt).await? {
            // Off the network first, wherever it was left (on it without
            // the name, on it with it, not on it): it comes back named.
            let _ = self
                .docker(words(&["network", "disconnect", &network, name]), attempt)
                .await;
            self.must(
                &format!("take traffic as {alias} on {network}"),
                words(&[
                    "network",
                    "connect",
                    &format!("--alias={alias}"),
                    &network,
                    name,
                ]),
                attempt,
            )
            .await?;
        }
        Ok(())
    }

    /// `name` no longer answers to the alias; it keeps the networks it needs
    /// for anything else (its database's) when they are the proxy's too.
    pub(super) async fn leave_traffic(&self, name: &str, attempt: &Attempt) -> Result<(), String> {
        for network in self.traffic_networks(name, attempt).await? {
            let _ = self
                .docker(words(&["network", "disconnect", &network, name]), attempt)
                .await;
            if rejoins(&self.r) {
                self.must(
                    &format!("join {network} without the name"),
                    words(&["network", "connect", &network, name]),
                    attempt,
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn start(&self, attempt: &Attempt) -> Result<(), String> {
        let r = &self.r;
        let _ = self
            .docker(words(&["rm", "-f", "--", &r.next, &r.previous]), attempt)
            .await;
        match &r.way {
            Way::Run { networks, .. } => {
                self.must("start the new release beside", r.run(&self.env), attempt)
                    .await?;
                for network in networks.iter().skip(1) {
                    self.must(
                        &format!("join {network}"),
                        words(&["network", "connect", network, &r.next]),
                        attempt,
                    )
                    .await?;
                }
            }
            Way::Compose { service, .. } => {
                compose::make_beside(self, service, attempt).await?;
            }
        }
        self.healthy(&r.next, attempt).await
    }

    /// Inside a maintenance window: the new release answers to the name
    /// beside the running one, and the running one is retired at once, while
    /// the migrations run, so that the switch after them only names the new
    /// one. No `settle` here: while the proxy still sends to the old one's
    /// address, it answers the maintenance page (what both releases answer
    /// in the window) after its connect timeout, and the proxy has the
    /// migrations' time to see the new one before the window closes.
    async fn join(&self, attempt: &Attempt) -> Result<(), String> {
        self.take_traffic(&self.r.next, attempt).await?;
        if self.exists(&self.r.container, attempt).await {
            self.retire(false, false, attempt).await?;
        }
        Ok(())
    }

    /// Whether `name` answers to the release's alias on each network the
    /// proxy reaches it on (a `join` stage put it there): one inspect, which
    /// lists its networks and their aliases.
    async fn answers_to_name(&self, name: &str, attempt: &Attempt) -> bool {
        let said = self
            .docker(
                words(&[
                    "container",
                    "inspect",
                    "--format",
                    "{{range $name, $e := .NetworkSettings.Networks}}{{$name}} {{range $e.Aliases}}{{.}} {{end}}\n{{end}}",
                    "--",
                    name,
                ]),
                attempt,
            )
            .await;
        let alias = self.r.alias();
        // Each network it is on, and whether it has the alias there.
        let on: Vec<(&str, bool)> = said
            .out
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                Some((words.next()?, words.any(|a| a == alias)))
            })
            .collect();
        said.ok
            && match &self.r.way {
                Way::Run { network, .. } => on.contains(&(network.as_str(), true)),
                Way::Compose { .. } => !on.is_empty() && on.iter().all(|&(_, named)| named),
            }
    }

    /// Moves the traffic to the new release: it takes the name beside the
    /// running one (unless a `join` gave it the name already), the proxy has
    /// `settle` to see it, and the running release is retired; when a `join`
    /// retired it already, the new one only takes the app's name.
    async fn switch(&self, attempt: &Attempt) -> Result<(), String> {
        let r = &self.r;
        if self.answers_to_name(&r.next, attempt).await {
            attempt
                .output
                .info(format!(
                    "{} already answers to {} (joined earlier): no wait for the proxy",
                    r.next,
                    r.alias()
                ))
                .await;
        } else {
            self.take_traffic(&r.next, attempt).await?;
            tokio::time::sleep(r.settle).await;
        }
        if self.exists(&r.container, attempt).await {
            self.retire(true, true, attempt).await
        } else {
            self.rename("name the new release", &r.next, &r.container, attempt)
                .await
        }
    }

    /// Sets the running release aside as `PREVIOUS` (and names the new one
    /// the app, with `name_next`), then drains it.
    ///
    /// A release that answers the proxy's name by its container name alone
    /// leaves the name at the rename while it still answers: it is drained
    /// only once the proxy has had `settle` to forget it, so that nothing
    /// reaches an address that is gone. One that holds the name as a network
    /// alias (compose gives every container of a service one; a release that
    /// took traffic did) keeps it until it stops, which docker allows no other
    /// way: the drain is then how it leaves (on SIGTERM it refuses new
    /// connections, so a proxy passes over it at once, and finishes those in
    /// flight; taken off the network, it would drop them). Inside a window
    /// (`for_users` false) nothing waits: every answer is the page.
    async fn retire(
        &self,
        name_next: bool,
        for_users: bool,
        attempt: &Attempt,
    ) -> Result<(), String> {
        let r = &self.r;
        let _ = self
            .docker(words(&["rm", "-f", "--", &r.previous]), attempt)
            .await;
        // Asked before the rename: by the name it answers to now.
        let leaves_answering = for_users
            && r.alias() == r.container
            && !self.answers_to_name(&r.container, attempt).await;
        self.rename(
            "keep the running release",
            &r.container,
            &r.previous,
            attempt,
        )
        .await?;
        if name_next {
            self.rename("name the new release", &r.next, &r.container, attempt)
                .await?;
        }
        if leaves_answering {
            attempt
                .output
                .info(format!(
                    "{} left the name {} and still answers: drained once the proxy has had {} to forget it",
                    r.previous,
                    r.alias(),
                    humantime::format_duration(r.settle)
                ))
                .await;
            tokio::time::sleep(r.settle).await;
        }
        self.drain("drain the previous release", &r.previous, attempt)
            .await
    }

    pub(super) async fn rename(
        &self,
        what: &str,
        from: &str,
        to: &str,
        attempt: &Attempt,
    ) -> Result<(), String> {
        self.must(what, words(&["rename", from, to]), attempt).await
    }

    /// `docker stop` with the release's grace: SIGTERM, requests in flight
    /// finish, then SIGKILL.
    async fn drain(&self, what: &str, name: &str, attempt: &Attempt) -> Result<(), String> {
        let grace = format!("--time={}", self.r.drain.as_secs());
        self.must(what, words(&["stop", &grace, name]), attempt)
            .await
    }

    /// The switch backwards, from wherever it stopped (a `join`'s too). The
    /// new release stays, out of traffic, as `NEXT`: the start's undo
    /// removes it.
    async fn switch_back(&self, attempt: &Attempt) -> Result<(), String> {
        let r = &self.r;
        if !self.exists(&r.previous, attempt).await {
            // The running release was never set aside: the new one only
            // leaves the traffic, if it took any.
            if self.exists(&r.next, attempt).await && self.answers_to_name(&r.next, attempt).await {
                self.step_out(attempt).await?;
            }
            return Ok(());
        }
        self.must(
            "start the previous release",
            words(&["start", &r.previous]),
            attempt,
        )
        .await?;
        // It kept its name on the network: started, it answers to it again.
        self.healthy(&r.previous, attempt).await?;
        if !self.exists(&r.next, attempt).await {
            self.rename("set the new release aside", &r.container, &r.next, attempt)
                .await?;
        }
        self.rename(
            "give the previous release its name back",
            &r.previous,
            &r.container,
            attempt,
        )
        .await?;
        tokio::time::sleep(r.settle).await;
        self.step_out(attempt).await
    }

    /// The new release leaves the traffic without dropping a request: drained
    /// with the name, as the old one is on the way forward, then off the name
    /// and started again, out of traffic, for the hooks that still use it (a
    /// migration's way down).
    async fn step_out(&self, attempt: &Attempt) -> Result<(), String> {
        let r = &self.r;
        self.drain("drain the new release", &r.next, attempt)
            .await?;
        self.leave_traffic(&r.next, attempt).await?;
        let started = self.docker(words(&["start", &r.next]), attempt).await;
        if !started.ok {
            attempt
                .output
                .info(format!(
                    "the new release, out of traffic, did not start again for the hooks: {}",
                    excerpt(&started.text)
                ))
                .await;
        }
        Ok(())
    }
}

/// Tells how a command went; the reason when it failed.
pub(super) async fn told(what: &str, said: &Said, attempt: &Attempt) -> Result<(), String> {
    attempt
        .output
        .info(format!(
            "{what}: {}",
            if said.ok { "done" } else { "failed" }
        ))
        .await;
    if said.ok {
        Ok(())
    } else {
        Err(format!("{what}: {}", excerpt(&said.text)))
    }
}

/// Container ids, one a line.
pub(super) fn ids(out: &str) -> BTreeSet<String> {
    out.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Work for ReleaseWork {
    fn attempt(&self, attempt: Attempt) -> Attempted<'_> {
        Box::pin(async move {
            let r = &self.r;
            let done = match (self.stage, self.undo) {
                (Stage::Start, false) => self.start(&attempt).await,
                (Stage::Start, true) => {
                    let _ = self
                        .docker(words(&["rm", "-f", "--", &r.next]), &attempt)
                        .await;
                    Ok(())
                }
                (Stage::Join, false) => self.join(&attempt).await,
                (Stage::Switch, false) => self.switch(&attempt).await,
                (Stage::Join | Stage::Switch, true) => self.switch_back(&attempt).await,
                (Stage::Finish, _) => {
                    self.must(
                        "remove the previous release",
                        words(&["rm", "-f", "--", &r.previous]),
                        &attempt,
                    )
                    .await
                }
            };
            Outcome::new(match done {
                Ok(()) => End::Exited(0),
                Err(why) => End::Failed(why),
            })
        })
    }
}
