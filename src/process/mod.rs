//! Host processes, as steps need them: each in its own process group with stdin
//! closed, its output read in bounded memory as it comes, ended with its whole
//! tree when the attempt is cancelled, and swept of what it leaves behind.

mod pipe;
mod tree;

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::time::sleep;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

pub(crate) use pipe::Pipe;
pub(crate) use tree::{
    MARKER, adopt_orphans, end_adopted, end_leftovers, forget_helper, spawn_helper,
};

use crate::engine::{End, Output, Stream};

/// How long output pipes may stay open once the process tree is gone (a process
/// that escaped every sweep may hold them); then reading stops.
const PIPE_DRAIN: Duration = Duration::from_secs(2);

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) argv: Vec<String>,
    pub(crate) dir: PathBuf,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) stdout: Pipe,
    pub(crate) stderr: Pipe,
    /// Variables whose values go to the process's stdin as `NAME=value` lines
    /// (`docker exec --env-file /dev/stdin`, through sudo): private to the two
    /// processes, never on disk. Else stdin is closed.
    pub(crate) values_on_stdin: Option<Vec<String>>,
}

impl Spec {
    /// `argv` in `dir`, its output shown.
    pub(crate) fn new(argv: Vec<String>, dir: &Path) -> Self {
        Self {
            argv,
            dir: dir.to_owned(),
            env: Vec::new(),
            stdout: Pipe::shown(),
            stderr: Pipe::shown(),
            values_on_stdin: None,
        }
    }

    /// Sets a variable, replacing an earlier value.
    pub(crate) fn set(&mut self, name: &str, value: String) {
        match self.env.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = value,
            None => self.env.push((name.to_owned(), value)),
        }
    }

    fn marker(&self) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == MARKER)
            .map(|(_, v)| v.as_str())
    }
}

/// `NAME=value` lines for `docker exec --env-file /dev/stdin`, from `env`.
fn env_lines(names: &[String], env: &[(String, String)]) -> Result<Vec<u8>, String> {
    let mut text = String::new();
    for name in names {
        let value = env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str());
        if value.contains(['\n', '\r']) {
            return Err(format!(
                "the value of {name} holds a line break, which docker cannot take through sudo (an --env-file line)"
            ));
        }
        text.push_str(name);
        text.push('=');
        text.push_str(value);
        text.push('\n');
    }
    Ok(text.into_bytes())
}

/// How a process ended, and what was kept of its output.
#[derive(Debug)]
pub(crate) struct Ran {
    pub(crate) end: End,
    /// The first bytes of stdout, when kept.
    pub(crate) stdout: String,
    /// The first lines of stderr, when kept.
    pub(crate) stderr: Vec<String>,
}

impl Ran {
    fn ended(end: End) -> Self {
        Self {
            end,
            stdout: String::new(),
            stderr: Vec::new(),
        }
    }
}

/// Runs `spec` until it ends or `cancel` fires (then its whole tree is ended:
/// SIGTERM, [`GRACE`], SIGKILL). Shown lines go to `output`.
pub(crate) async fn run(spec: &Spec, output: Option<&Output>, cancel: &CancellationToken) -> Ran {
    let stdin = match &spec.values_on_stdin {
        Some(names) => match env_lines(names, &spec.env) {
            Ok(lines) => Some(lines),
            Err(why) => return Ran::ended(End::SpawnFailed(why)),
        },
        None => None,
    };
    run_process(spec, stdin, output, cancel).await
}

async fn run_process(
    spec: &Spec,
    stdin: Option<Vec<u8>>,
    output: Option<&Output>,
    cancel: &CancellationToken,
) -> Ran {
    let Some((program, args)) = spec.argv.split_first() else {
        return Ran::ended(End::SpawnFailed("empty command".into()));
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .current_dir(&spec.dir)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: a terminal's Ctrl-C reaches runner only, and the whole
        // tree can be signalled at once.
        .process_group(0)
        .kill_on_drop(true);
    let (mut child, mut group) = match tree::spawn(&mut command, spec.marker()) {
        Ok(spawned) => spawned,
        Err(e) => {
            let why = if e.kind() == std::io::ErrorKind::NotFound && !spec.dir.is_dir() {
                format!("its directory {} does not exist", spec.dir.display())
            } else {
                format!("{program}: {e}")
            };
            return Ran::ended(End::SpawnFailed(why));
        }
    };
    tracing::debug!(group = group.leader(), argv0 = %program, "spawned");
    if let (Some(lines), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // Small (a few variables): the pipe takes it at once; a reader that dies
        // first only makes the write fail.
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            let _ = pipe.write_all(&lines).await;
        });
    }
    let reader = |pipe, stream, to: &Pipe| {
        AbortOnDropHandle::new(tokio::spawn(pipe::read(
            pipe,
            stream,
            to.clone(),
            output.cloned(),
        )))
    };
    let stdout = child.stdout.take().map(|out| {
        reader(
            Box::new(out) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Stream::Stdout,
            &spec.stdout,
        )
    });
    let stderr = child.stderr.take().map(|err| {
        reader(
            Box::new(err) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Stream::Stderr,
            &spec.stderr,
        )
    });
    let status = tokio::select! {
        status = child.wait() => status,
        () = cancel.cancelled() => group.end(&mut child).await,
    };
    group.sweep().await;
    let out = drain(stdout).await;
    let err = drain(stderr).await;
    let mut end = match status {
        Ok(status) => from_status(status),
        Err(e) => End::SpawnFailed(format!("waiting for it failed: {e}")),
    };
    if let (true, Some(why)) = (end.success(), out.file_error) {
        end = End::Failed(why);
    }
    Ran {
        end,
        stdout: String::from_utf8_lossy(&out.bytes).into_owned(),
        stderr: err.lines,
    }
}

async fn drain(task: Option<AbortOnDropHandle<pipe::Read>>) -> pipe::Read {
    let Some(task) = task else {
        return pipe::Read::default();
    };
    tokio::select! {
        // Mostly at its end already: then the timer is never even armed.
        biased;
        read = task => read.unwrap_or_default(),
        () = sleep(PIPE_DRAIN) => pipe::Read::default(),
    }
}

fn from_status(status: ExitStatus) -> End {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => End::Exited(code),
        (None, Some(sig)) => End::Signaled(sig),
        (None, None) => End::Exited(-1),
    }
}

/// Runs a short helper command (a diagnosis, a cleanup) within `limit`: its
/// stdout, or why it failed.
pub(crate) async fn output(
    argv: Vec<String>,
    env: &[(String, String)],
    dir: &Path,
    limit: Duration,
) -> Result<String, String> {
    let spec = Spec {
        stdout: Pipe::kept(),
        stderr: Pipe::kept(),
        env: env.to_vec(),
        ..Spec::new(argv, dir)
    };
    let cancel = CancellationToken::new();
    let run = run(&spec, None, &cancel);
    tokio::pin!(run);
    let ran = tokio::select! {
        ran = &mut run => ran,
        () = sleep(limit) => {
            cancel.cancel();
            let _ = run.await;
            return Err(format!("no answer within {}s", limit.as_secs()));
        }
    };
    match ran.end {
        End::Exited(0) => Ok(ran.stdout),
        End::SpawnFailed(why) => Err(why),
        end => Err(ran
            .stderr
            .into_iter()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_else(|| end.reason())),
    }
}
