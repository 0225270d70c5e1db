//! One attempt of one command: a process in its own process group, its output
//! streamed line by line, ended with its whole tree on timeout or when killed.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;

/// After SIGTERM, how long a process tree gets before SIGKILL.
pub const GRACE: Duration = Duration::from_secs(3);
/// The most of a step's stdout kept for `capture` (the rest is still streamed).
const CAPTURE_LIMIT: usize = 1 << 20;
/// How long output pipes may stay open after the process tree is gone (a process
/// that left the group may hold them); then reading stops.
const PIPE_DRAIN: Duration = Duration::from_secs(2);

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    pub argv: Vec<String>,
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
    pub capture: bool,
    /// Stdout goes to this file instead of the output stream (the caller decides
    /// whether it is kept).
    pub stdout_file: Option<PathBuf>,
    /// Variables written to a private file for `docker exec --env-file` (through
    /// sudo), from `env`; the file exists only while the process runs.
    pub env_file: Option<EnvFile>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct EnvFile {
    pub path: PathBuf,
    pub names: Vec<String>,
}

impl EnvFile {
    fn write(&self, env: &[(String, String)]) -> Result<(), String> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut text = String::new();
        for name in &self.names {
            let value = env
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map_or("", |(_, v)| v.as_str());
            if value.contains('\n') {
                return Err(format!(
                    "the value of {name} holds a line break, which docker's --env-file cannot carry"
                ));
            }
            text.push_str(&format!("{name}={value}\n"));
        }
        let _ = std::fs::remove_file(&self.path);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
    /// runner's own words about the step (a probe's transport and outcome).
    Info,
}

/// A line of output, as it comes.
#[derive(Debug)]
pub struct Line {
    pub stream: Stream,
    pub text: String,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    Exited(i32),
    Signaled(i32),
    TimedOut(Duration),
    /// Ended by a second interrupt.
    Killed,
    /// The process could not start.
    SpawnFailed(String),
    /// The step's own check failed (expected output, status, confirmation).
    Failed(String),
}

impl End {
    pub fn success(&self) -> bool {
        *self == End::Exited(0)
    }

    pub fn exit_code(&self) -> Option<i32> {
        match self {
            End::Exited(code) => Some(*code),
            _ => None,
        }
    }

    /// Why the attempt failed, in words.
    pub fn reason(&self) -> String {
        match self {
            End::Exited(code) => format!("exited with code {code}"),
            End::Signaled(sig) => match Signal::try_from(*sig) {
                Ok(signal) => format!("killed by signal {sig} ({})", signal.as_str()),
                Err(_) => format!("killed by signal {sig}"),
            },
            End::TimedOut(after) => format!(
                "timed out after {}; its process tree was ended",
                humantime::format_duration(*after)
            ),
            End::Killed => "killed by a second interrupt".to_owned(),
            End::SpawnFailed(why) => format!("could not start: {why}"),
            End::Failed(why) => why.clone(),
        }
    }
}

/// The result of one attempt.
#[derive(Debug)]
pub struct Outcome {
    pub end: End,
    pub duration: Duration,
    /// The trimmed stdout, when the spec asked for it.
    pub captured: Option<String>,
    /// More about how it ended (e.g. what became of a process in a container).
    pub detail: Option<String>,
    /// Which transport decided a probe, and the URL.
    pub transport: Option<String>,
}

impl Outcome {
    fn ended(end: End, started: Instant) -> Self {
        Self {
            end,
            duration: started.elapsed(),
            captured: None,
            detail: None,
            transport: None,
        }
    }
}

/// Runs `spec` once. Output lines go to `lines` as they come; the attempt is ended
/// (with its process tree) after `spec.timeout`, or when `kill` turns true.
pub async fn run<F>(spec: &Spec, lines: F, kill: watch::Receiver<bool>) -> Outcome
where
    F: Fn(Line) + Clone + Send + 'static,
{
    let started = Instant::now();
    let Some((program, args)) = spec.argv.split_first() else {
        return Outcome::ended(End::SpawnFailed("empty command".into()), started);
    };
    if let Some(file) = &spec.env_file
        && let Err(why) = file.write(&spec.env)
    {
        return Outcome::ended(End::SpawnFailed(why), started);
    }
    let outcome = run_process(spec, program, args, lines, kill, started).await;
    if let Some(file) = &spec.env_file {
        let _ = std::fs::remove_file(&file.path);
    }
    outcome
}

async fn run_process<F>(
    spec: &Spec,
    program: &String,
    args: &[String],
    lines: F,
    mut kill: watch::Receiver<bool>,
    started: Instant,
) -> Outcome
where
    F: Fn(Line) + Clone + Send + 'static,
{
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .current_dir(&spec.dir)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: a terminal's Ctrl-C reaches runner only, and the whole
        // tree can be signalled at once.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let why = if e.kind() == std::io::ErrorKind::NotFound && !spec.dir.is_dir() {
                format!("its directory {} does not exist", spec.dir.display())
            } else {
                format!("{program}: {e}")
            };
            return Outcome::ended(End::SpawnFailed(why), started);
        }
    };
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);

    let capture = spec.capture;
    let line_sink = lines.clone();
    let stdout = child.stdout.take().map(|out| match &spec.stdout_file {
        Some(path) => tokio::spawn(to_file(out, path.clone())),
        None => tokio::spawn(async move {
            Drained::Lines(read_lines(out, Stream::Stdout, line_sink, capture).await)
        }),
    });
    let stderr = child
        .stderr
        .take()
        .map(|err| tokio::spawn(read_lines(err, Stream::Stderr, lines, false)));

    tracing::debug!(?group, argv0 = %program, "spawned");
    let mut ended_by = None;
    let status = tokio::select! {
        status = child.wait() => status,
        () = tokio::time::sleep(spec.timeout) => {
            ended_by = Some(End::TimedOut(spec.timeout));
            end_tree(&mut child, group).await
        }
        () = killed(&mut kill) => {
            ended_by = Some(End::Killed);
            end_tree(&mut child, group).await
        }
    };
    // The command is done: whatever it left behind in its group goes too.
    if let Some(group) = group {
        sweep(group).await;
    }
    let (captured, file_error) = match stdout {
        Some(task) => match drain(task).await {
            Some(Drained::Lines(text)) => (text, None),
            Some(Drained::File(result)) => (None, result.err()),
            None => (None, None),
        },
        None => (None, None),
    };
    if let Some(task) = stderr {
        drain(task).await;
    }
    let mut end = ended_by.unwrap_or_else(|| match status {
        Ok(status) => from_status(status),
        Err(e) => End::SpawnFailed(format!("waiting for it failed: {e}")),
    });
    if let (true, Some(why)) = (end.success(), file_error) {
        end = End::Failed(why);
    }
    Outcome {
        captured: captured.map(|text| text.trim().to_owned()),
        ..Outcome::ended(end, started)
    }
}

async fn killed(kill: &mut watch::Receiver<bool>) {
    if kill.wait_for(|k| *k).await.is_err() {
        // The sender is gone: nobody can ask for a kill any more.
        std::future::pending::<()>().await;
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

/// SIGTERM to the group, SIGKILL after the grace period.
async fn end_tree(
    child: &mut tokio::process::Child,
    group: Option<Pid>,
) -> std::io::Result<ExitStatus> {
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGTERM);
    }
    match tokio::time::timeout(GRACE, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            if let Some(group) = group {
                let _ = killpg(group, Signal::SIGKILL);
            }
            child.wait().await
        }
    }
}

/// Ends what is left of a group whose leader has exited.
async fn sweep(group: Pid) {
    if killpg(group, None).is_err() {
        return;
    }
    tracing::debug!(?group, "ending what the step left running");
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if killpg(group, None).is_err() {
            return;
        }
    }
    let _ = killpg(group, Signal::SIGKILL);
}

async fn drain<T>(task: tokio::task::JoinHandle<T>) -> Option<T> {
    let abort = task.abort_handle();
    match tokio::time::timeout(PIPE_DRAIN, task).await {
        Ok(result) => result.ok(),
        Err(_) => {
            abort.abort();
            None
        }
    }
}

/// Copies `pipe` into a new file at `path`. The file is flushed to disk before the
/// copy counts as done; an error is reported as the captured text's absence.
async fn to_file(mut pipe: impl AsyncRead + Unpin, path: PathBuf) -> Drained {
    let copy = async {
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let mut file = tokio::fs::File::create(&path).await?;
        tokio::io::copy(&mut pipe, &mut file).await?;
        file.sync_all().await
    };
    Drained::File(
        copy.await
            .map_err(|e| format!("cannot write its stdout to {}: {e}", path.display())),
    )
}

/// What reading a process's stdout gave.
enum Drained {
    /// Streamed as lines; the text when capturing.
    Lines(Option<String>),
    /// Copied to a file.
    File(Result<(), String>),
}

/// Sends every line of `pipe`; keeps stdout when capturing.
async fn read_lines(
    pipe: impl AsyncRead + Unpin,
    stream: Stream,
    lines: impl Fn(Line),
    capture: bool,
) -> Option<String> {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    let mut kept = capture.then(String::new);
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&buf);
                if let Some(kept) = kept.as_mut()
                    && kept.len() + text.len() <= CAPTURE_LIMIT
                {
                    kept.push_str(&text);
                }
                let text = text.trim_end_matches(['\n', '\r']).to_owned();
                lines(Line { stream, text });
            }
        }
    }
    kept
}
