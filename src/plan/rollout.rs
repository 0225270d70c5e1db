//! Several hosts: a plan's steps as per-host instances (`restart-app@web1`),
//! and the batches `[rollout] serial` makes of the hosts.
//!
//! A step with `on` has one instance per host it names; any other step has one.
//! Two per-host steps chain per host: `b@web1` waits for `a@web1` only. A step
//! that runs once and needs a per-host step waits for all its instances; a
//! per-host step that needs a step that runs once waits for it. The per-host
//! instances of batch k+1 wait for every per-host instance of batch k.

use super::model::{Share, When};
use super::{Host, Step};
use crate::graph::Dag;

/// One instance of a step: the step, and the host it runs for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub step: usize,
    pub host: Option<usize>,
}

/// The instances of a plan's steps, their needs and their order.
#[derive(Debug, Clone)]
pub struct Instances {
    pub list: Vec<Instance>,
    pub needs: Vec<Vec<usize>>,
    /// The batch of each host (indices into `Plan::hosts`); `None` for a host
    /// no step runs on.
    pub batch: Vec<Option<usize>>,
    pub dag: Dag,
}

impl Instances {
    /// Expands `steps`, or returns the cycles the batches would make, as paths
    /// of instance ids.
    pub fn expand(
        steps: &[Step],
        hosts: &[Host],
        serial: Option<Share>,
    ) -> Result<Self, Vec<Vec<String>>> {
        let used: Vec<usize> = (0..hosts.len())
            .filter(|h| steps.iter().any(|s| s.on.contains(h)))
            .collect();
        let size = serial.map_or(used.len(), |s| s.of(used.len(), true)).max(1);
        let mut batch = vec![None; hosts.len()];
        for (position, &h) in used.iter().enumerate() {
            batch[h] = Some(position / size);
        }
        let (list, of_step) = instances_of(steps);
        let mut needs: Vec<Vec<usize>> = list
            .iter()
            .map(|instance| instance_needs(steps, &list, &of_step, instance))
            .collect();
        // Batches: the first instances of a host in batch k+1 (those that wait
        // for nothing else on their host) wait for the last ones of every host
        // in batch k (those nothing else on their host waits for). Through the
        // chains on each host, that orders every instance of the two batches.
        order_batches(steps, &list, &batch, &mut needs);
        for n in &mut needs {
            n.sort_unstable();
            n.dedup();
        }
        let id = |i: usize| instance_id(steps, hosts, &list[i]);
        match Dag::build(needs.clone()) {
            Ok(dag) => Ok(Self {
                list,
                needs,
                batch,
                dag,
            }),
            Err(cycles) => Err(cycles
                .into_iter()
                .map(|cycle| cycle.into_iter().map(id).collect())
                .collect()),
        }
    }

    /// How many batches the hosts make.
    pub fn batches(&self) -> usize {
        self.batch.iter().flatten().max().map_or(0, |b| b + 1)
    }
}

/// Each step's instances (one, or one per host of its `on`), and the
/// instances of each step.
fn instances_of(steps: &[Step]) -> (Vec<Instance>, Vec<Vec<usize>>) {
    let mut list = Vec::new();
    let mut of_step: Vec<Vec<usize>> = Vec::with_capacity(steps.len());
    for (s, step) in steps.iter().enumerate() {
        let mut mine = Vec::new();
        if step.on.is_empty() {
            mine.push(list.len());
            list.push(Instance {
                step: s,
                host: None,
            });
        } else {
            for &h in &step.on {
                mine.push(list.len());
                list.push(Instance {
                    step: s,
                    host: Some(h),
                });
            }
        }
        of_step.push(mine);
    }
    (list, of_step)
}

/// What an instance needs: of a per-host need, the instance on its own host
/// when there is one, else every instance.
fn instance_needs(
    steps: &[Step],
    list: &[Instance],
    of_step: &[Vec<usize>],
    instance: &Instance,
) -> Vec<usize> {
    let mut needs = Vec::new();
    for &n in &steps[instance.step].needs {
        let same_host = instance.host.and_then(|h| {
            of_step[n]
                .iter()
                .copied()
                .find(|&i| list[i].host == Some(h))
        });
        match same_host {
            Some(i) => needs.push(i),
            None => needs.extend(&of_step[n]),
        }
    }
    needs
}

/// The first per-host instances of each batch after the first wait for the
/// last ones of the batch before it.
fn order_batches(
    steps: &[Step],
    list: &[Instance],
    batch: &[Option<usize>],
    needs: &mut [Vec<usize>],
) {
    let in_batch = |i: usize, b: usize| {
        list[i].host.is_some_and(|h| batch[h] == Some(b))
            && steps[list[i].step].when == When::Success
    };
    let same_host = |i: usize, j: usize| list[i].host.is_some() && list[i].host == list[j].host;
    let first: Vec<bool> = (0..list.len())
        .map(|i| !needs[i].iter().any(|&n| same_host(i, n)))
        .collect();
    let mut last = vec![true; list.len()];
    for (j, its_needs) in needs.iter().enumerate() {
        for &n in its_needs {
            if same_host(j, n) {
                last[n] = false;
            }
        }
    }
    let batches = batch.iter().flatten().max().map_or(0, |b| b + 1);
    let exits: Vec<Vec<usize>> = (0..batches)
        .map(|b| {
            (0..list.len())
                .filter(|&j| last[j] && in_batch(j, b))
                .collect()
        })
        .collect();
    for i in 0..list.len() {
        let Some(b) = list[i].host.and_then(|h| batch[h]).filter(|&b| b > 0) else {
            continue;
        };
        if first[i] && in_batch(i, b) {
            needs[i].extend(&exits[b - 1]);
        }
    }
}

/// `step@host`, or the step's id for a step that runs once.
pub fn instance_id(steps: &[Step], hosts: &[Host], instance: &Instance) -> String {
    let id = &steps[instance.step].id;
    match instance.host {
        Some(h) => format!("{id}@{}", hosts[h].name),
        None => id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::instance_id;
    use crate::plan::{Inputs, Plan, load_str};

    fn plan(hosts: usize, serial: &str, steps: &str) -> Plan {
        let mut text = String::from("[plan]\nname = \"t\"\n\n");
        for h in 1..=hosts {
            let _ = write!(
                text,
                "[hosts.web{h}]\ndocker = \"ssh://deploy@web{h}\"\nroles = [\"web\"]\n"
            );
        }
        if !serial.is_empty() {
            let _ = write!(text, "[rollout]\nserial = {serial}\n");
        }
        text.push_str(steps);
        let env = |_: &str| None;
        let inputs = Inputs {
            vars: &[],
            env: &env,
            kinds: crate::kinds::KINDS,
        };
        match load_str("t.toml".as_ref(), "/".into(), text, &inputs) {
            Ok(loaded) => loaded.plan,
            Err(d) => panic!("{}", d.render(false)),
        }
    }

    /// Each instance and what it waits for, by id.
    fn edges(plan: &Plan) -> Vec<String> {
        let x = plan.instances.as_ref().expect("expanded");
        let id = |i: usize| instance_id(&plan.steps, &plan.hosts, &x.list[i]);
        (0..x.list.len())
            .map(|i| {
                let needs: Vec<String> = x.needs[i].iter().map(|&n| id(n)).collect();
                format!("{} <- {}", id(i), needs.join(" "))
            })
            .collect()
    }

    const CHAIN: &str = "[steps.build]\nkind = \"shell\"\nrun = \"true\"\n\
        [steps.restart]\nkind = \"shell\"\non = \"web\"\nneeds = [\"build\"]\nrun = \"true\"\n\
        [steps.probe]\nkind = \"shell\"\non = \"web\"\nneeds = [\"restart\"]\nrun = \"true\"\n\
        [steps.smoke]\nkind = \"shell\"\nneeds = [\"probe\"]\nrun = \"true\"\n\
        [steps.tell]\nkind = \"shell\"\nwhen = \"failure\"\non = \"web\"\nrun = \"true\"\n";

    #[test]
    fn per_host_steps_chain_per_host_and_a_step_that_runs_once_waits_for_them_all() {
        assert_eq!(
            edges(&plan(2, "", CHAIN)),
            [
                "build <- ",
                "restart@web1 <- build",
                "restart@web2 <- build",
                "probe@web1 <- restart@web1",
                "probe@web2 <- restart@web2",
                "smoke <- probe@web1 probe@web2",
                "tell@web1 <- ",
                "tell@web2 <- ",
            ]
        );
    }

    #[test]
    fn a_batch_starts_when_the_one_before_it_is_done() {
        assert_eq!(
            edges(&plan(3, "2", CHAIN)),
            [
                "build <- ",
                "restart@web1 <- build",
                "restart@web2 <- build",
                "restart@web3 <- build probe@web1 probe@web2",
                "probe@web1 <- restart@web1",
                "probe@web2 <- restart@web2",
                "probe@web3 <- restart@web3",
                "smoke <- probe@web1 probe@web2 probe@web3",
                "tell@web1 <- ",
                "tell@web2 <- ",
                "tell@web3 <- ",
            ]
        );
        let p = plan(4, "\"25%\"", CHAIN);
        let x = p.instances.as_ref().expect("expanded");
        assert_eq!(x.batch, [Some(0), Some(1), Some(2), Some(3)]);
        assert_eq!(x.batches(), 4);
    }

    #[test]
    fn a_step_that_runs_once_between_per_host_steps_cannot_be_batched() {
        let steps = "[steps.drain]\nkind = \"shell\"\non = \"web\"\nrun = \"true\"\n\
            [steps.gate]\nkind = \"shell\"\nneeds = [\"drain\"]\nrun = \"true\"\n\
            [steps.restart]\nkind = \"shell\"\non = \"web\"\nneeds = [\"gate\"]\nrun = \"true\"\n";
        let mut text = String::from(
            "[plan]\nname = \"t\"\n[hosts.a]\ndocker = \"ssh://a\"\nroles = [\"web\"]\n[hosts.b]\ndocker = \"ssh://b\"\nroles = [\"web\"]\n[rollout]\nserial = 1\n",
        );
        text.push_str(steps);
        let env = |_: &str| None;
        let inputs = Inputs {
            vars: &[],
            env: &env,
            kinds: crate::kinds::KINDS,
        };
        let Err(d) = load_str("t.toml".as_ref(), "/".into(), text, &inputs) else {
            panic!("a cycle was accepted");
        };
        let text = d.render(false);
        assert!(
            text.contains("the rollout cannot order its steps:") && text.contains("gate"),
            "{text}"
        );
        // All at once, the same steps are fine.
        let all = plan(2, "", steps);
        assert_eq!(all.hosts.len(), 2);
    }
}
