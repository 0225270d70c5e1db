//! The dispatcher with a fake kind under tokio's paused clock: exact times, no
//! sleeps, no processes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep};

use super::*;

/// What a fake attempt does.
#[derive(Debug, Clone, Copy)]
enum Act {
    /// Succeeds after this long.
    Pass(u64),
    /// Fails (exit 1) after this long.
    Fail(u64),
    /// Runs until cancelled, then cleans up.
    Hang,
    /// Runs until cancelled and never ends its cleanup.
    Deaf,
    Panic,
    /// What was to run it refused it: it never started.
    Refuse,
}

type Log = Arc<Mutex<Vec<(u64, String)>>>;

/// A fake kind: each attempt takes the next act of its script.
struct Fake {
    name: String,
    acts: Mutex<VecDeque<Act>>,
    log: Log,
    start: Instant,
}

impl Work for Fake {
    fn attempt(&self, attempt: Attempt) -> Attempted<'_> {
        Box::pin(async move {
            let at = millis(self.start.elapsed());
            let act = self
                .acts
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Act::Pass(0));
            self.log
                .lock()
                .unwrap()
                .push((at, format!("{}#{}", self.name, attempt.number)));
            attempt.output.info(format!("{act:?}")).await;
            match act {
                Act::Pass(ms) | Act::Fail(ms) => {
                    sleep(Duration::from_millis(ms)).await;
                    let code = i32::from(matches!(act, Act::Fail(_)));
                    Outcome::new(End::Exited(code))
                }
                Act::Hang => {
                    attempt.cancel.cancelled().await;
                    sleep(Duration::from_millis(500)).await;
                    Outcome {
                        detail: Some("cleaned up".into()),
                        ..Outcome::new(End::Signaled(15))
                    }
                }
                Act::Deaf => std::future::pending().await,
                Act::Panic => panic!("boom"),
                Act::Refuse => Outcome::new(End::Refused("no such container".into())),
            }
        })
    }
}

struct Plan {
    units: Vec<Unit>,
    works: HashMap<Task, Arc<Fake>>,
    log: Log,
    start: Instant,
    domains: Vec<String>,
    budget: usize,
}

fn settings(timeout: u64, retries: u32, delay: u64, backoff: f64) -> Settings {
    Settings {
        timeout: Duration::from_millis(timeout),
        retries,
        retry_delay: Duration::from_millis(delay),
        backoff,
    }
}

const PLAIN: (u64, u32, u64, f64) = (60_000, 0, 1000, 2.0);

impl Plan {
    fn new() -> Self {
        Self {
            units: Vec::new(),
            works: HashMap::new(),
            log: Log::default(),
            start: Instant::now(),
            domains: Vec::new(),
            budget: 0,
        }
    }

    fn fake(&self, name: String, acts: &[Act]) -> Arc<Fake> {
        Arc::new(Fake {
            name,
            acts: Mutex::new(acts.iter().copied().collect()),
            log: Arc::clone(&self.log),
            start: self.start,
        })
    }

    /// Adds a unit; returns its index.
    fn unit(
        &mut self,
        id: &str,
        needs: &[usize],
        when: When,
        policy: (u64, u32, u64, f64),
        acts: &[Act],
    ) -> usize {
        let i = self.units.len();
        self.units.push(Unit {
            id: id.to_owned(),
            needs: needs.to_vec(),
            when,
            settings: settings(policy.0, policy.1, policy.2, policy.3),
            hook: None,
            domain: None,
        });
        self.works
            .insert(Task::Step(i), self.fake(id.to_owned(), acts));
        i
    }

    fn step(&mut self, id: &str, needs: &[usize], acts: &[Act]) -> usize {
        self.unit(id, needs, When::Success, PLAIN, acts)
    }

    fn hook(&mut self, unit: usize, role: HookRole, acts: &[Act]) {
        self.units[unit].hook = Some(Hook {
            settings: settings(PLAIN.0, PLAIN.1, PLAIN.2, PLAIN.3),
            role,
            also_if_failed: false,
        });
        let name = format!("{}/rollback", self.units[unit].id);
        self.works.insert(Task::Hook(unit), self.fake(name, acts));
    }

    /// Runs the plan with SIGINT at these offsets (ms).
    async fn run(&self, interrupts: &[u64]) -> (Report, Vec<Event>) {
        let sigints: Vec<(u64, Interrupt)> = interrupts
            .iter()
            .map(|&at| (at, Interrupt::new("SIGINT")))
            .collect();
        self.run_with(sigints).await
    }

    /// Runs the plan with these interrupts at their offsets (ms).
    async fn run_with(&self, interrupts: Vec<(u64, Interrupt)>) -> (Report, Vec<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        for (at, interrupt) in interrupts {
            let tx = tx.clone();
            let start = self.start;
            tokio::spawn(async move {
                tokio::time::sleep_until(start + Duration::from_millis(at)).await;
                let _ = tx.send(interrupt);
            });
        }
        let mut sink = Vec::new();
        let report = super::run(Run {
            resume: None,
            units: &self.units,
            jobs: 4,
            tasks: self,
            masker: &Masker::default(),
            sink: &mut sink,
            interrupts: rx,
            domains: &self.domains,
            budget: self.budget,
        })
        .await;
        (report, sink)
    }

    /// Attempts in the order they started: `(ms, "name#attempt")`.
    fn log(&self) -> Vec<(u64, String)> {
        self.log.lock().unwrap().clone()
    }

    fn started(&self) -> Vec<String> {
        self.log().into_iter().map(|(_, name)| name).collect()
    }
}

impl Tasks for Plan {
    fn prepare(&self, task: Task, _: &HashMap<String, String>) -> Prepared {
        Prepared {
            work: self.works[&task].clone(),
            command: format!("{task:?}"),
        }
    }
}

impl Sink for Vec<Event> {
    fn event(&mut self, event: Event) {
        self.push(event);
    }
}

fn reason(report: &Report, unit: usize) -> String {
    let run = report.units[unit].run.as_ref().expect("it ran");
    run.attempts
        .last()
        .and_then(|a| a.reason.clone())
        .unwrap_or_default()
}

fn hook_ids(plan: &Plan, report: &Report) -> Vec<String> {
    report
        .rollback
        .iter()
        .map(|&i| plan.units[i].id.clone())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn retries_wait_by_the_backoff() {
    let mut plan = Plan::new();
    let a = plan.unit(
        "a",
        &[],
        When::Success,
        (60_000, 3, 1000, 2.0),
        &[Act::Fail(100), Act::Fail(100), Act::Pass(100)],
    );
    let (report, events) = plan.run(&[]).await;
    assert_eq!(report.status, RunStatus::Succeeded);
    // 100 ms each attempt; waits of 1 s, then 2 s.
    assert_eq!(
        plan.log(),
        [
            (0, "a#1".into()),
            (1100, "a#2".into()),
            (3200, "a#3".into())
        ]
    );
    let waits: Vec<Option<u64>> = events
        .iter()
        .filter_map(|e| match e {
            Event::AttemptFailed { retry_in_ms, .. } => Some(*retry_in_ms),
            _ => None,
        })
        .collect();
    assert_eq!(waits, [Some(1000), Some(2000)]);
    let run = report.units[a].run.as_ref().expect("ran");
    assert_eq!(run.attempts.len(), 3);
    assert_eq!(run.duration(), Duration::from_millis(3300));
}

#[tokio::test(start_paused = true)]
async fn hooks_run_in_reverse_completion_order_with_reopening_last() {
    let mut plan = Plan::new();
    let m = plan.step("gate", &[], &[Act::Pass(4000)]);
    plan.hook(m, HookRole::Reopen, &[Act::Pass(10)]);
    let a = plan.step("a", &[], &[Act::Pass(1000)]);
    plan.hook(a, HookRole::Undo, &[Act::Pass(10)]);
    let b = plan.step("b", &[], &[Act::Pass(3000)]);
    plan.hook(b, HookRole::Undo, &[Act::Pass(10)]);
    let bad = plan.step("bad", &[a], &[Act::Fail(1000)]);
    let (report, _) = plan.run(&[]).await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(report.stopped.as_deref(), Some("step `bad` failed"));
    // Completed a (1 s), b (3 s), gate (4 s): the running steps finish.
    assert_eq!(hook_ids(&plan, &report), ["b", "a", "gate"]);
    let hooks: Vec<String> = plan
        .started()
        .into_iter()
        .filter(|n| n.contains("rollback"))
        .collect();
    assert_eq!(hooks, ["b/rollback#1", "a/rollback#1", "gate/rollback#1"]);
    assert_eq!(report.units[bad].status, Status::Failed);
    for unit in [m, a, b] {
        assert_eq!(report.units[unit].status, Status::RolledBack);
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_hook_holds_the_hook_that_reopens() {
    let mut plan = Plan::new();
    let m = plan.step("gate", &[], &[Act::Pass(0)]);
    plan.hook(m, HookRole::Reopen, &[Act::Pass(0)]);
    let a = plan.step("a", &[m], &[Act::Pass(0)]);
    plan.hook(a, HookRole::Undo, &[Act::Fail(0)]);
    plan.step("bad", &[a], &[Act::Fail(0)]);
    let (report, events) = plan.run(&[]).await;
    assert_eq!(report.status, RunStatus::RollbackIncomplete);
    assert_eq!(report.status, RunStatus::RollbackIncomplete);
    assert_eq!(hook_ids(&plan, &report), ["a"]);
    assert_eq!(report.held.len(), 1);
    assert_eq!(report.held[0].unit, m);
    assert!(!plan.started().contains(&"gate/rollback#1".to_owned()));
    assert_eq!(report.units[a].status, Status::RollbackFailed);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::RollbackHeld { step, .. } if step == "gate"))
    );
}

#[tokio::test(start_paused = true)]
async fn the_deadline_cancels_an_attempt_and_keeps_what_its_cleanup_said() {
    let mut plan = Plan::new();
    let hang = plan.unit("hang", &[], When::Success, (2000, 0, 0, 1.0), &[Act::Hang]);
    let deaf = plan.unit("deaf", &[], When::Success, (2000, 0, 0, 1.0), &[Act::Deaf]);
    let (report, _) = plan.run(&[]).await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(
        reason(&report, hang),
        "timed out after 2s; its process tree was ended; cleaned up"
    );
    // The deadline decides the attempt; the cleanup (500 ms) is reported, not counted.
    let run = report.units[hang].run.as_ref().expect("ran");
    assert_eq!(run.attempts[0].duration_ms, 2500);
    assert!(
        reason(&report, deaf)
            .ends_with("it did not end within 10s of being cancelled; its processes were killed"),
        "{}",
        reason(&report, deaf)
    );
    assert_eq!(report.duration, Duration::from_secs(12));
}

#[tokio::test(start_paused = true)]
async fn a_first_interrupt_lets_running_steps_finish_then_rolls_back() {
    let mut plan = Plan::new();
    let a = plan.step("a", &[], &[Act::Pass(5000)]);
    plan.hook(a, HookRole::Undo, &[Act::Pass(0)]);
    let b = plan.step("b", &[a], &[Act::Pass(0)]);
    let (report, _) = plan.run(&[1000]).await;
    assert_eq!(report.status, RunStatus::Interrupted);
    assert_eq!(report.status, RunStatus::Interrupted);
    assert_eq!(report.stopped.as_deref(), Some("interrupted by SIGINT"));
    assert_eq!(report.units[a].status, Status::RolledBack);
    assert_eq!(report.units[b].status, Status::Skipped);
    assert_eq!(plan.started(), ["a#1", "a/rollback#1"]);
}

#[tokio::test(start_paused = true)]
async fn a_second_interrupt_cancels_running_attempts() {
    let mut plan = Plan::new();
    let first = plan.step("first", &[], &[Act::Pass(0)]);
    plan.hook(first, HookRole::Undo, &[Act::Pass(0)]);
    let hang = plan.step("hang", &[first], &[Act::Hang]);
    let (report, _) = plan.run(&[1000, 2000]).await;
    assert_eq!(report.status, RunStatus::Interrupted);
    assert_eq!(
        reason(&report, hang),
        "killed by a second interrupt; cleaned up"
    );
    let run = report.units[hang].run.as_ref().expect("ran");
    assert_eq!(run.attempts[0].duration_ms, 2500);
    assert_eq!(report.units[first].status, Status::RolledBack);
}

#[tokio::test(start_paused = true)]
async fn a_lost_lock_ends_running_attempts_at_once_then_rolls_back() {
    let mut plan = Plan::new();
    let first = plan.step("first", &[], &[Act::Pass(0)]);
    plan.hook(first, HookRole::Undo, &[Act::Pass(0)]);
    let hang = plan.step("hang", &[first], &[Act::Hang]);
    let lost = Interrupt::at_once("the loss of host web1's lock");
    let (report, _) = plan.run_with(vec![(1000, lost)]).await;
    assert_eq!(report.status, RunStatus::Interrupted);
    assert_eq!(
        report.stopped.as_deref(),
        Some("interrupted by the loss of host web1's lock")
    );
    let run = report.units[hang].run.as_ref().expect("ran");
    assert_eq!(run.attempts[0].duration_ms, 1500);
    assert_eq!(report.units[first].status, Status::RolledBack);
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_during_a_retry_wait_starts_no_new_attempt() {
    let mut plan = Plan::new();
    let a = plan.unit(
        "a",
        &[],
        When::Success,
        (60_000, 5, 10_000, 1.0),
        &[Act::Fail(0), Act::Pass(0)],
    );
    let (report, _) = plan.run(&[3000]).await;
    assert_eq!(report.status, RunStatus::Interrupted);
    assert_eq!(plan.started(), ["a#1"]);
    assert_eq!(report.units[a].status, Status::Failed);
    let run = report.units[a].run.as_ref().expect("ran");
    assert_eq!(run.ended, Duration::from_secs(3));
    assert!(
        run.tail
            .back()
            .is_some_and(|l| l.contains("interrupted while waiting to retry")),
        "{:?}",
        run.tail
    );
}

#[tokio::test(start_paused = true)]
async fn interrupts_during_the_rollback_do_not_stop_it() {
    let mut plan = Plan::new();
    let a = plan.step("a", &[], &[Act::Pass(0)]);
    plan.hook(a, HookRole::Undo, &[Act::Pass(5000)]);
    let b = plan.step("b", &[a], &[Act::Pass(0)]);
    plan.hook(b, HookRole::Undo, &[Act::Pass(5000)]);
    plan.step("bad", &[b], &[Act::Fail(0)]);
    let (report, events) = plan.run(&[1000, 2000, 6000]).await;
    assert_eq!(report.status, RunStatus::Interrupted);
    assert_eq!(hook_ids(&plan, &report), ["b", "a"]);
    assert_eq!(report.units[a].status, Status::RolledBack);
    assert_eq!(report.units[b].status, Status::RolledBack);
    let notices = events
        .iter()
        .filter(
            |e| matches!(e, Event::Stopping { reason } if reason.contains("during the rollback")),
        )
        .count();
    assert_eq!(notices, 3);
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_in_the_after_phase_stops_it_like_the_plan() {
    let mut plan = Plan::new();
    plan.step("a", &[], &[Act::Pass(0)]);
    let x = plan.unit("x", &[], When::Always, PLAIN, &[Act::Pass(1500)]);
    let y = plan.unit("y", &[x], When::Always, PLAIN, &[Act::Pass(0)]);
    let z = plan.unit("z", &[], When::Failure, PLAIN, &[Act::Pass(0)]);
    let hang = plan.unit("hang", &[], When::Always, PLAIN, &[Act::Hang]);
    let (report, _) = plan.run(&[1000, 2000]).await;
    assert_eq!(report.status, RunStatus::Interrupted);
    // The plan had succeeded: nothing to roll back, no failure steps.
    assert!(report.stopped.is_none());
    assert_eq!(report.units[z].status, Status::Skipped);
    // The first interrupt (1 s) let x finish (1.5 s) and started nothing new;
    // the second (2 s) cancelled what still ran.
    assert_eq!(report.units[x].status, Status::Succeeded);
    assert_eq!(report.units[y].status, Status::Skipped);
    assert_eq!(
        reason(&report, hang),
        "killed by a second interrupt; cleaned up"
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_kind_fails_its_step_and_the_run_goes_on_to_its_rollback() {
    let mut plan = Plan::new();
    let a = plan.step("a", &[], &[Act::Pass(0)]);
    plan.hook(a, HookRole::Undo, &[Act::Pass(0)]);
    let boom = plan.step("boom", &[a], &[Act::Panic]);
    let after = plan.unit("after", &[], When::Failure, PLAIN, &[Act::Pass(0)]);
    let (report, events) = plan.run(&[]).await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(report.units[boom].status, Status::Failed);
    assert_eq!(
        reason(&report, boom),
        "internal error in runner: its task panicked: boom"
    );
    assert_eq!(report.units[a].status, Status::RolledBack);
    assert_eq!(report.units[after].status, Status::Succeeded);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::StepFinished { step, status: Status::Failed, .. } if step == "boom"
    )));
}

#[tokio::test(start_paused = true)]
async fn a_hook_that_asks_for_it_undoes_its_own_failed_step_first() {
    let mut plan = Plan::new();
    let gate = plan.step("gate", &[], &[Act::Pass(0)]);
    plan.hook(gate, HookRole::Reopen, &[Act::Pass(0)]);
    let a = plan.step("a", &[gate], &[Act::Pass(0)]);
    plan.hook(a, HookRole::Undo, &[Act::Pass(0)]);
    let migrate = plan.step("migrate", &[a], &[Act::Fail(100)]);
    plan.hook(migrate, HookRole::Undo, &[Act::Pass(0)]);
    if let Some(hook) = plan.units[migrate].hook.as_mut() {
        hook.also_if_failed = true;
    }
    let (report, _) = plan.run(&[]).await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(hook_ids(&plan, &report), ["migrate", "a", "gate"]);
    // It failed, and its hook undid what it did: both show.
    assert_eq!(report.units[migrate].status, Status::Failed);
    assert!(
        report.units[migrate]
            .hook
            .as_ref()
            .is_some_and(TaskReport::succeeded)
    );
}

#[tokio::test(start_paused = true)]
async fn a_step_that_never_started_is_not_undone_by_its_own_hook() {
    let mut plan = Plan::new();
    let a = plan.step("a", &[], &[Act::Pass(0)]);
    plan.hook(a, HookRole::Undo, &[Act::Pass(0)]);
    let migrate = plan.unit(
        "migrate",
        &[a],
        When::Success,
        (60_000, 1, 0, 1.0),
        &[Act::Refuse, Act::Refuse],
    );
    plan.hook(migrate, HookRole::Undo, &[Act::Pass(0)]);
    if let Some(hook) = plan.units[migrate].hook.as_mut() {
        hook.also_if_failed = true;
    }
    let (report, _) = plan.run(&[]).await;
    assert_eq!(report.status, RunStatus::Failed);
    // Only `a` is undone: `migrate` changed nothing.
    assert_eq!(hook_ids(&plan, &report), ["a"]);
    assert_eq!(report.units[migrate].status, Status::Failed);
    assert!(report.units[migrate].hook.is_none());
    let run = report.units[migrate].run.as_ref().expect("ran");
    assert!(run.never_started());
    assert!(reason(&report, migrate).contains("never started"));
}

#[tokio::test(start_paused = true)]
async fn after_phase_steps_may_need_plan_steps() {
    let mut plan = Plan::new();
    let ok = plan.step("ok", &[], &[Act::Pass(0)]);
    let bad = plan.step("bad", &[ok], &[Act::Fail(0)]);
    let on_bad = plan.unit("on-bad", &[bad], When::Failure, PLAIN, &[Act::Pass(0)]);
    let on_ok = plan.unit("on-ok", &[ok], When::Failure, PLAIN, &[Act::Pass(0)]);
    let any = plan.unit("any", &[], When::Failure, PLAIN, &[Act::Pass(0)]);
    let after_ok = plan.unit("after-ok", &[ok], When::Always, PLAIN, &[Act::Pass(0)]);
    let (report, _) = plan.run(&[]).await;
    assert_eq!(report.status, RunStatus::Failed);
    // A `failure` step with needs runs when one of them failed.
    assert_eq!(report.units[on_bad].status, Status::Succeeded);
    assert_eq!(report.units[on_ok].status, Status::Skipped);
    assert_eq!(report.units[any].status, Status::Succeeded);
    assert_eq!(report.units[after_ok].status, Status::Succeeded);
    let started = plan.started();
    let position = |name: &str| started.iter().position(|s| s == name).unwrap();
    assert!(position("after-ok#1") > position("bad#1"), "after the plan");
}

/// Two hosts in batches of one: `drain` and `switch` on each, `switch@h2`
/// failing; then a step that runs once, after both.
fn rolling(budget: usize) -> (Plan, [usize; 5]) {
    let mut plan = Plan::new();
    plan.domains = vec!["h1".into(), "h2".into()];
    plan.budget = budget;
    let drain1 = plan.step("drain@h1", &[], &[Act::Pass(10)]);
    let switch1 = plan.step("switch@h1", &[drain1], &[Act::Pass(10)]);
    let drain2 = plan.step("drain@h2", &[switch1], &[Act::Pass(10)]);
    let switch2 = plan.step("switch@h2", &[drain2], &[Act::Fail(10)]);
    let done = plan.step("announce", &[switch1, switch2], &[Act::Pass(10)]);
    for (unit, domain) in [(drain1, 0), (switch1, 0), (drain2, 1), (switch2, 1)] {
        plan.units[unit].domain = Some(domain);
        plan.hook(unit, HookRole::Undo, &[Act::Pass(10)]);
    }
    (plan, [drain1, switch1, drain2, switch2, done])
}

#[tokio::test(start_paused = true)]
async fn a_host_failing_within_the_budget_rolls_back_alone_and_the_rest_goes_on() {
    let (plan, [drain1, switch1, drain2, switch2, done]) = rolling(1);
    let (report, events) = plan.run(&[]).await;
    assert_eq!(report.status, RunStatus::Partial);
    assert_eq!(report.status, RunStatus::Partial);
    assert_eq!(report.failed_domains, [1]);
    // Only the failed host's changes were undone, before the step after it.
    assert_eq!(hook_ids(&plan, &report), ["drain@h2"]);
    assert_eq!(report.units[drain2].status, Status::RolledBack);
    assert_eq!(report.units[switch2].status, Status::Failed);
    assert_eq!(report.units[drain1].status, Status::Succeeded);
    assert_eq!(report.units[switch1].status, Status::Succeeded);
    assert_eq!(report.units[done].status, Status::Succeeded);
    let started = plan.started();
    let position = |name: &str| started.iter().position(|s| s == name).unwrap();
    assert!(position("announce#1") > position("drain@h2/rollback#1"));
    assert!(events.iter().any(|e| matches!(
        e,
        Event::DomainFailed { domain, failed: 1, allowed: 1, .. } if domain == "h2"
    )));
}

#[tokio::test(start_paused = true)]
async fn past_the_budget_every_host_that_changed_rolls_back() {
    let (plan, [_, _, _, _, done]) = rolling(0);
    let (report, _) = plan.run(&[]).await;
    assert_eq!(report.status, RunStatus::Failed);
    assert!(report.failed_domains.is_empty());
    assert_eq!(
        hook_ids(&plan, &report),
        ["drain@h2", "switch@h1", "drain@h1"]
    );
    assert_eq!(report.units[done].status, Status::Skipped);
}

#[tokio::test(start_paused = true)]
async fn a_second_host_failing_past_the_budget_rolls_back_all() {
    let mut plan = Plan::new();
    plan.domains = vec!["h1".into(), "h2".into(), "h3".into()];
    plan.budget = 1;
    let a1 = plan.step("a@h1", &[], &[Act::Fail(10)]);
    let a2 = plan.step("a@h2", &[a1], &[Act::Pass(10)]);
    let a3 = plan.step("a@h3", &[a2], &[Act::Fail(10)]);
    for (unit, domain) in [(a1, 0), (a2, 1), (a3, 2)] {
        plan.units[unit].domain = Some(domain);
        plan.hook(unit, HookRole::Undo, &[Act::Pass(10)]);
    }
    let (report, _) = plan.run(&[]).await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(report.failed_domains, [0]);
    assert_eq!(hook_ids(&plan, &report), ["a@h2"]);
    assert_eq!(report.units[a2].status, Status::RolledBack);
}
