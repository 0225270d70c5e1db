//! Looking for the programs a step runs where it will run them, in one `sh`
//! each: in a running container (`docker exec`), or in the image a step will
//! make a container from (a throwaway container of it).
//!
//! An image is looked into only when the plan names it (`creates = {
//! containers = [{ name, image }] }`): the container that will run the
//! plan's later steps does not exist yet, but its image often does. That look
//! runs with no network and nothing mounted, and the container is removed when
//! it ends: the app and its containers are never touched.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::docker::{self, Docker, ExecOptions};
use crate::plan::template::shell_join;

/// How long one check may take.
pub(super) const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Who runs in a container, and where: one `docker exec` looks for all the
/// programs of those that share it.
pub(super) type Seat = (String, Option<String>, Option<String>);

/// What one look found.
#[derive(Debug, Clone)]
pub(super) enum Looked {
    /// The programs it did not find.
    Missing(BTreeSet<String>),
    /// The look itself failed: why, as docker says it.
    Failed(String),
}

/// An image, and who runs what in the container made from it: its `user`,
/// its `workdir`.
pub(super) type ImageSeat = (String, Option<String>, Option<String>);

/// Prints each operand the shell cannot find as a program.
const LOOK: &str = r#"for p; do case $p in */*) [ -f "$p" ] && [ -x "$p" ] || echo "$p" ;; *) command -v "$p" >/dev/null 2>&1 || echo "$p" ;; esac; done; echo "runner-looked""#;

/// Looks for `programs` in the seat's container, as its user, from its workdir.
pub(super) fn in_container(docker: &Docker, seat: &Seat, programs: &BTreeSet<String>) -> Looked {
    let (container, user, workdir) = seat;
    let options = ExecOptions {
        user: user.as_deref(),
        workdir: workdir.as_deref(),
        ..ExecOptions::default()
    };
    let mut argv = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        LOOK.to_owned(),
        "sh".to_owned(),
    ];
    argv.extend(programs.iter().cloned());
    let argv = docker.exec_argv(container, &options, &argv);
    look_result(
        docker::briefly_with(&argv, &docker.env, CHECK_TIMEOUT),
        &argv,
    )
}

/// What a look (`LOOK` run by `argv`) found.
fn look_result(result: Result<std::process::Output, docker::Brief>, argv: &[String]) -> Looked {
    match result {
        Ok(out) => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            if out.status.success() && stdout.lines().last() == Some("runner-looked") {
                Looked::Missing(
                    stdout
                        .lines()
                        .filter(|l| *l != "runner-looked")
                        .map(str::to_owned)
                        .collect(),
                )
            } else {
                // docker prints some refusals of an exec on stdout.
                let stderr = String::from_utf8_lossy(&out.stderr);
                let said = [stderr.trim(), stdout.trim()]
                    .into_iter()
                    .find(|s| !s.is_empty());
                Looked::Failed(match said {
                    Some(said) => said.to_owned(),
                    None => format!("`{}` ended with {}", shell_join(argv), out.status),
                })
            }
        }
        Err(why) => Looked::Failed(why.to_string()),
    }
}

/// How long a look into an image may take, its container's start included.
const LOOK_TIMEOUT: Duration = Duration::from_secs(20);

/// Whether this engine has `image` now: `Err` with docker's words when it
/// cannot tell.
pub(super) fn image_present(docker: &Docker, image: &str) -> Result<bool, String> {
    let mut argv = docker.command.clone();
    argv.extend(["image", "inspect", "--format", "{{.Id}}", "--", image].map(str::to_owned));
    match docker::briefly_with(&argv, &docker.env, CHECK_TIMEOUT) {
        Ok(out) if out.status.success() => Ok(true),
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.to_ascii_lowercase().contains("no such image") {
                Ok(false)
            } else {
                Err(first_line(&stderr).to_owned())
            }
        }
        Err(why) => Err(why.to_string()),
    }
}

/// Looks for `programs` in a throwaway container of the seat's image, as its
/// user, from its workdir.
pub(super) fn in_image(docker: &Docker, seat: &ImageSeat, programs: &BTreeSet<String>) -> Looked {
    let (image, user, workdir) = seat;
    // A name of its own, so that a look cut by its timeout can be removed.
    let name = format!("runner-preflight-{}-{}", std::process::id(), next());
    let mut argv = docker.command.clone();
    argv.extend(
        [
            "run",
            "--rm",
            "--network=none",
            "--entrypoint=sh",
            "--label=runner.preflight=true",
        ]
        .map(str::to_owned),
    );
    argv.push(format!("--name={name}"));
    argv.extend(user.as_ref().map(|u| format!("--user={u}")));
    argv.extend(workdir.as_ref().map(|w| format!("--workdir={w}")));
    argv.extend(["--".to_owned(), image.clone()]);
    argv.extend(["-c", LOOK, "sh"].map(str::to_owned));
    argv.extend(programs.iter().cloned());
    let result = docker::briefly_with(&argv, &docker.env, LOOK_TIMEOUT);
    if result.is_err() {
        let mut remove = docker.command.clone();
        remove.extend(["rm", "--force", "--", &name].map(str::to_owned));
        let _ = docker::briefly_with(&remove, &docker.env, CHECK_TIMEOUT);
    }
    look_result(result, &argv)
}

/// A number of its own for each look of this process.
fn next() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

pub(super) fn first_line(text: &str) -> &str {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}
