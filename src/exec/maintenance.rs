//! `runner maintenance on|off|status PLAN`: the plan's `[maintenance]` commands
//! from the command line, each toggle confirmed by `status` (the post-mortem's
//! `maintenance.sh enable|disable|status`).

use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::process::{End, Spec};
use super::work::{Target, Work};
use crate::exit_code;
use crate::kinds::Scope;
use crate::plan::Plan;
use crate::plan::model::Toggle;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Request {
    On,
    Off,
    Status,
}

/// How long each maintenance command may take from the command line.
const TIMEOUT: Duration = Duration::from_secs(120);

pub fn run(plan: &Plan, request: Request) -> i32 {
    let Some(section) = &plan.maintenance else {
        eprintln!(
            "error: {} has no [maintenance] section, so runner does not know how this app enters maintenance",
            plan.path.display()
        );
        eprintln!(
            "help: add [maintenance] with `container`, `on`, `off` and `status` commands (see plans/production.toml)"
        );
        return exit_code::INVALID;
    };
    let started_at = SystemTime::now();
    let run_id = super::run_id(started_at);
    // Toggling under a running deploy would fight it; reading the state would not.
    let lock = match request {
        Request::Status => None,
        _ => match super::lock_plan(plan, &run_id, started_at) {
            Ok(lock) => Some(lock),
            Err(code) => return code,
        },
    };
    let docker = crate::docker::discover(plan.sudo, std::env::var("DOCKER_CMD").ok());
    let docker = match super::usable(docker) {
        Ok(docker) => docker,
        Err(code) => return code,
    };
    let runtime = match super::runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let none = |_: &str| None;
    let scope = Scope {
        plan,
        docker: &docker.command,
        mask_secrets: false,
        run_id: Some(&run_id),
        output: &none,
    };
    let base = Spec {
        argv: Vec::new(),
        dir: plan.dir.clone(),
        env: vec![
            ("DOCKER_CMD".to_owned(), docker.command.join(" ")),
            ("RUNNER_RUN_ID".to_owned(), run_id.clone()),
            ("RUNNER_STEP".to_owned(), "maintenance".to_owned()),
        ],
        capture: false,
        stdout_file: None,
        env_file: None,
        timeout: TIMEOUT,
    };
    let marker = format!("{run_id}/maintenance");
    let target = |container| Target {
        docker: docker.command.clone(),
        container,
        marker: marker.clone(),
    };
    let state = if request == Request::Off {
        Toggle::Off
    } else {
        Toggle::On
    };
    let toggle = super::toggle_work(plan, &scope, &base, target, &marker, state);
    let masker = super::event::Masker::new(
        plan.vars
            .values()
            .filter(|v| v.secret)
            .map(|v| v.value.clone()),
    );
    let (_kill, kill) = watch::channel(false);
    let print = move |line: super::process::Line| {
        super::output::print_out(&format!("  │ {}\n", masker.mask(&line.text)));
    };
    let code = match request {
        Request::Status => {
            let mut status = toggle.status.clone();
            status.capture = true;
            let mut work = Work::Exec(super::work::Exec {
                spec: status,
                target: toggle.target.clone(),
                stdout_file: None,
                expect_output: None,
            });
            work.set_attempt(1);
            let outcome = runtime.block_on(work.perform(|_| {}, kill));
            let printed = outcome.captured.unwrap_or_default();
            let (on, off) = (
                crate::kinds::expected_status(section, Toggle::On),
                crate::kinds::expected_status(section, Toggle::Off),
            );
            if !outcome.end.success() {
                eprintln!("error: `status` failed: {}", outcome.end.reason());
                exit_code::STEP_FAILED
            } else if printed == on {
                println!("maintenance is on");
                exit_code::SUCCESS
            } else if printed == off {
                println!("maintenance is off");
                exit_code::SUCCESS
            } else {
                eprintln!(
                    "error: maintenance state unknown: `status` printed {printed:?}, neither {on:?} (on) nor {off:?} (off)"
                );
                exit_code::STEP_FAILED
            }
        }
        Request::On | Request::Off => {
            println!(
                "maintenance {}: {}",
                state.as_str(),
                crate::plan::template::shell_join(&toggle.toggle.argv)
            );
            let mut work = Work::Toggle(toggle);
            work.set_attempt(1);
            let outcome = runtime.block_on(work.perform(print, kill));
            match outcome.end {
                End::Exited(0) => {
                    println!("maintenance is {} (confirmed by `status`)", state.as_str());
                    exit_code::SUCCESS
                }
                end => {
                    let detail = outcome.detail.map(|d| format!("; {d}")).unwrap_or_default();
                    eprintln!("error: {}{detail}", end.reason());
                    exit_code::STEP_FAILED
                }
            }
        }
    };
    drop(lock);
    code
}
