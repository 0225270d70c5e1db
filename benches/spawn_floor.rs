//! The floor under runner's chain benchmark: what starting `sh -c` steps costs
//! with the guarantees issue 3 asks of every step, and nothing else (no plan, no
//! scheduling, no events, no record).
//!
//!     spawn_floor tokio|std STEPS
//!
//! Both run STEPS × `sh -c 'true;'` one after the other, each with a working
//! directory, four environment variables, stdin from /dev/null, its own process
//! group, and stdout and stderr through pipes, read line by line:
//!
//! - `tokio`: the mechanism the issue prescribes (`tokio::process` on a
//!   current-thread runtime, both pipes read concurrently while the wait races a
//!   timeout), as runner does it.
//! - `std`: the cheapest Rust equivalent, blocking `std::process` calls.
//!
//! `benches/exec.py` times this beside make and runner in one run. It is a
//! `harness = false` bench target, so `cargo bench --bench spawn_floor` builds it
//! with the release settings; run by cargo without arguments, it does 200 steps
//! of each and prints the times.

use std::io::BufRead as _;
use std::os::unix::process::CommandExt as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt as _;

const SCRIPT: &str = "true;";

/// One step's command, with a step's guarantees: its own directory, variables
/// and process group, stdin from /dev/null, stdout and stderr through pipes.
fn step_command(sh: &str, dir: &std::path::Path, step: usize) -> std::process::Command {
    let mut command = std::process::Command::new(sh);
    command
        .args(["-c", SCRIPT])
        .current_dir(dir)
        .envs([
            ("DOCKER_CMD", "docker".to_owned()),
            ("RUNNER_RUN_ID", "floor".to_owned()),
            ("RUNNER_STEP", format!("s{step}")),
            ("RUNNER_ATTEMPT", "1".to_owned()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    command
}

async fn drain_lines(pipe: impl tokio::io::AsyncRead + Unpin) {
    let mut reader = tokio::io::BufReader::new(pipe);
    let mut line = Vec::new();
    while reader.read_until(b'\n', &mut line).await.unwrap_or(0) > 0 {
        line.clear();
    }
}

async fn tokio_step(sh: &str, dir: &std::path::Path, step: usize) -> bool {
    let mut child = tokio::process::Command::from(step_command(sh, dir, step))
        .kill_on_drop(true)
        .spawn()
        .expect("sh starts");
    let stdout = drain_lines(child.stdout.take().expect("piped"));
    let stderr = drain_lines(child.stderr.take().expect("piped"));
    let wait = async {
        tokio::select! {
            status = child.wait() => status.is_ok_and(|s| s.success()),
            () = tokio::time::sleep(Duration::from_secs(60)) => false,
        }
    };
    let ((), (), succeeded) = tokio::join!(stdout, stderr, wait);
    succeeded
}

fn std_step(sh: &str, dir: &std::path::Path, step: usize) -> bool {
    let mut child = step_command(sh, dir, step).spawn().expect("sh starts");
    // The script writes nothing, so reading one pipe after the other cannot
    // leave the child blocked on a full pipe.
    let stderr = child.stderr.take().expect("piped");
    for pipe in [
        Box::new(child.stdout.take().expect("piped")) as Box<dyn std::io::Read>,
        Box::new(stderr),
    ] {
        let mut reader = std::io::BufReader::new(pipe);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            line.clear();
        }
    }
    child.wait().is_ok_and(|s| s.success())
}

fn run(mode: &str, steps: usize) -> Duration {
    let sh = which::which("sh").expect("sh on PATH");
    let sh = sh.to_str().expect("a UTF-8 path");
    let dir = std::env::temp_dir();
    let started = Instant::now();
    let succeeded = match mode {
        "tokio" => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                for step in 0..steps {
                    if !tokio_step(sh, &dir, step).await {
                        return false;
                    }
                }
                true
            })
        }
        "std" => (0..steps).all(|step| std_step(sh, &dir, step)),
        other => {
            eprintln!("unknown mode {other}: expected tokio or std");
            std::process::exit(2);
        }
    };
    assert!(succeeded, "a step failed");
    started.elapsed()
}

fn main() {
    // cargo bench adds `--bench`; the modes and the step count are positional.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    match args.as_slice() {
        [mode, steps] => {
            let steps = steps.parse().expect("STEPS is a number");
            run(mode, steps);
        }
        [] => {
            for mode in ["tokio", "std"] {
                let took = run(mode, 200);
                println!("{mode:>5}: 200 steps in {took:.1?}");
            }
        }
        _ => {
            eprintln!("usage: spawn_floor tokio|std STEPS");
            std::process::exit(2);
        }
    }
}
