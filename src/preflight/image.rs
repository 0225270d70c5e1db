//! Looking into the image a step will make a container from, before the run:
//! the container that will run the plan's later steps does not exist yet, but
//! the image it is made from often does.
//!
//! Only what the plan names is looked into (`creates = { containers = [{ name,
//! image }] }`). The look runs `sh` in a throwaway container of that image,
//! with no network and nothing mounted, removed when it ends: the app and its
//! containers are never touched.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{Looked, look_result};
use crate::docker::{self, Docker};

/// How long a look into an image may take, its container's start included.
const LOOK_TIMEOUT: Duration = Duration::from_secs(20);

/// An image, and who runs what in the container made from it: its `user`,
/// its `workdir`.
pub(super) type ImageSeat = (String, Option<String>, Option<String>);

/// Whether this engine has `image` now: `Err` with docker's words when it
/// cannot tell.
pub(super) fn present(docker: &Docker, image: &str) -> Result<bool, String> {
    let mut argv = docker.command.clone();
    argv.extend(["image", "inspect", "--format", "{{.Id}}", "--", image].map(str::to_owned));
    match docker::briefly_with(&argv, &docker.env, super::CHECK_TIMEOUT) {
        Ok(out) if out.status.success() => Ok(true),
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.to_ascii_lowercase().contains("no such image") {
                Ok(false)
            } else {
                Err(super::first_line(&stderr).to_owned())
            }
        }
        Err(why) => Err(why.to_string()),
    }
}

/// Looks for `programs` in a throwaway container of the seat's image, as its
/// user, from its workdir.
pub(super) fn look(docker: &Docker, seat: &ImageSeat, programs: &BTreeSet<String>) -> Looked {
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
    argv.extend(["-c", super::LOOK, "sh"].map(str::to_owned));
    argv.extend(programs.iter().cloned());
    let result = docker::briefly_with(&argv, &docker.env, LOOK_TIMEOUT);
    if result.is_err() {
        let mut remove = docker.command.clone();
        remove.extend(["rm", "--force", "--", &name].map(str::to_owned));
        let _ = docker::briefly_with(&remove, &docker.env, super::CHECK_TIMEOUT);
    }
    look_result(result, &argv)
}

/// A number of its own for each look of this process.
fn next() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
