//! A run's journal: each event that changes what a rollback must do, on disk
//! before runner acts on what follows it (write-ahead), so that a run that dies
//! (`kill -9`, the OOM killer, a reboot) leaves an account of what it did.
//!
//! One file per run, `.runner/journal/RUN.jsonl` beside the plan: a header
//! line, then one event or input a line: the engine's events, masked, without
//! the output lines (the record is made again from them), and what its core
//! was given (a recovery feeds the core exactly these; an input is written
//! before the event that tells it). Every line is written (`write(2)`: it
//! outlives runner's death, `kill -9` included) as it happens. What a reboot must not
//! lose is only what decides a recovery: what is known of the units it would
//! undo (those with a rollback hook), the rollback itself, captured outputs
//! and hosts. Before runner acts (a step or a hook starts), the file is synced
//! (`fdatasync`) when such an event is written and not yet on disk: one sync
//! covers all of them, and a chain of steps that recovery would not undo
//! syncs nothing. No act is ever ahead of what decides its undoing. The run
//! removes its journal once its record is written: a journal that is left is
//! a run that did not finish.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::core::Input;
pub(crate) use crate::engine::replay::Line;
use crate::engine::{Event, Given, Sink, Unit};

/// The format of a journal's lines, in its header.
/// 2: the core's inputs have lines of their own (`"input"`), and a
/// recovery replays those.
pub(crate) const VERSION: u32 = 2;

/// The first line of a journal: whose run it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Header {
    pub(crate) journal: u32,
    pub(crate) run_id: String,
    pub(crate) plan: String,
    pub(crate) plan_file: String,
    /// The plan file, links resolved.
    pub(crate) plan_path: String,
    pub(crate) started_at: String,
    pub(crate) pid: u32,
    pub(crate) user: String,
    pub(crate) host: String,
    /// The run's variables but its secrets (never written): `runner recover`
    /// undoes the run with the values it ran with.
    #[serde(default)]
    pub(crate) vars: std::collections::BTreeMap<String, String>,
    /// The run's folder of ssh sockets, when it reached hosts: a recovery
    /// removes what the dead run left there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sockets: Option<String>,
}

/// A line of the journal after its header: an event or an input of the
/// core, and when it was written (milliseconds since the Unix epoch: a
/// recover that takes the journal over later goes on on the same clock).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub(crate) at: u64,
    pub(crate) line: Line,
}

impl Entry {
    /// The event of an event line.
    pub(crate) fn event(&self) -> Option<&Event> {
        match &self.line {
            Line::Event(event) => Some(event),
            Line::Given(_) => None,
        }
    }

    /// A line as written: `None` for one cut short, or of another format.
    fn parse(text: &str) -> Option<Self> {
        #[derive(Deserialize)]
        struct At<T> {
            at: u64,
            #[serde(flatten)]
            line: T,
        }
        if let Ok(e) = serde_json::from_str::<At<Event>>(text) {
            return Some(Self {
                at: e.at,
                line: Line::Event(e.line),
            });
        }
        let given = serde_json::from_str::<At<Given>>(text).ok()?;
        Some(Self {
            at: given.at,
            line: Line::Given(given.line),
        })
    }
}

/// A line, written without serde's `flatten` (which buffers every field)
/// nor a copy of what it holds: `{"at":…,` then its fields.
fn line(at: u64, value: &impl Serialize) -> serde_json::Result<String> {
    let value = serde_json::to_string(value)?;
    Ok(match value.strip_prefix('{') {
        Some("}") | None => format!("{{\"at\":{at}}}"),
        Some(fields) => format!("{{\"at\":{at},{fields}"),
    })
}

/// Milliseconds since the Unix epoch.
pub(crate) fn epoch_ms(at: std::time::SystemTime) -> u64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Header {
    pub(crate) fn new(
        run_id: &str,
        plan: &crate::plan::Plan,
        started_at: std::time::SystemTime,
    ) -> Self {
        Self {
            journal: VERSION,
            run_id: run_id.to_owned(),
            plan: plan.name.clone(),
            plan_file: plan.path.display().to_string(),
            plan_path: plan.real_path().display().to_string(),
            started_at: humantime::format_rfc3339_millis(started_at).to_string(),
            pid: std::process::id(),
            user: crate::lock::user_name(),
            host: crate::lock::host_name(),
            vars: plan
                .vars
                .iter()
                .filter(|(_, v)| !v.secret)
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect(),
            sockets: None,
        }
    }
}

/// The folder of a plan's journals.
pub(crate) fn folder(plan_dir: &Path) -> PathBuf {
    crate::layout::journals(plan_dir)
}

/// An open journal.
pub(crate) struct Journal {
    file: File,
    path: PathBuf,
    /// The first write or sync that failed: the run must not act on.
    failed: Option<String>,
    /// An event that decides a recovery is written and not yet synced.
    dirty: bool,
    /// Copies kept elsewhere (each host's): every line goes to them too; one
    /// that fails is dropped, and the run goes on.
    copies: Vec<Box<dyn std::io::Write + Send>>,
    /// How many times the file was synced after its header.
    #[cfg(test)]
    syncs: usize,
}

impl Journal {
    /// Makes the run's journal (never a file that stands there already, nor
    /// the target of a link planted in its place), its header on disk.
    pub(crate) fn create(plan_dir: &Path, header: &Header) -> std::io::Result<Self> {
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
        let dir = folder(plan_dir);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        // runner's own folder: never a link planted in its place, nor a
        // folder of another user's.
        let meta = std::fs::symlink_metadata(&dir)?;
        if !meta.is_dir()
            || std::os::unix::fs::MetadataExt::uid(&meta) != nix::unistd::geteuid().as_raw()
        {
            return Err(std::io::Error::other(format!(
                "{} is not a folder of this user's (a link, or another user's): runner keeps its journals only in its own",
                dir.display()
            )));
        }
        let path = dir.join(format!("{}.jsonl", header.run_id));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)?;
        let mut journal = Self {
            file,
            path,
            failed: None,
            dirty: false,
            copies: Vec::new(),
            #[cfg(test)]
            syncs: 0,
        };
        journal.append(&serde_json::to_string(header).map_err(std::io::Error::other)?)?;
        journal.file.sync_data()?;
        // The file's name is on disk too.
        File::open(&dir)?.sync_all()?;
        Ok(journal)
    }

    /// Brings here the journal of a run whose machine died, as a host kept
    /// it: `header` (its paths this machine's), then its other lines as they
    /// were. Its path.
    pub(crate) fn import(
        plan_dir: &Path,
        header: &Header,
        lines: &str,
    ) -> std::io::Result<PathBuf> {
        let mut journal = Self::create(plan_dir, header)?;
        // Only whole lines: the last one may be cut short.
        let whole = lines.rfind('\n').map_or("", |end| &lines[..=end]);
        journal.file.write_all(whole.as_bytes())?;
        journal.file.sync_data()?;
        Ok(journal.path)
    }

    /// Takes over the journal of a run that died, to append a recovery's
    /// events to it: a `recover` that dies too leaves them for the next.
    pub(crate) fn reopen(path: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::FileExt as _;
        use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
        let file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
            .open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() || meta.uid() != nix::unistd::geteuid().as_raw() {
            return Err(std::io::Error::other(format!(
                "{} is not a journal of this user's",
                path.display()
            )));
        }
        let mut journal = Self {
            file,
            path: path.to_owned(),
            failed: None,
            dirty: false,
            copies: Vec::new(),
            #[cfg(test)]
            syncs: 0,
        };
        // A line the death cut short ends here, so the next is whole.
        let mut last = [0u8; 1];
        if meta.len() > 0
            && journal.file.read_at(&mut last, meta.len() - 1)? == 1
            && last[0] != b'\n'
        {
            journal.file.write_all(b"\n")?;
        }
        Ok(journal)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn append(&mut self, line: &str) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.file.write_all(&bytes)?;
        self.copies
            .retain_mut(|copy| copy.write_all(&bytes).is_ok());
        Ok(())
    }

    /// Keeps a copy of the journal in `copy` too: what it holds so far, then
    /// every line as it is written.
    pub(crate) fn copy_to(&mut self, mut copy: Box<dyn std::io::Write + Send>) {
        let whole = std::fs::read(&self.path).unwrap_or_default();
        if copy.write_all(&whole).is_ok() {
            self.copies.push(copy);
        }
    }

    /// Writes an event or an input. One that `decides` a recovery is on disk
    /// before the next act; before one that `acts`, every such line is (one
    /// sync for all). The first failure is kept: see [`Journal::failed`].
    fn record(&mut self, value: &impl Serialize, weight: Weight) {
        if self.failed.is_some() {
            return;
        }
        self.dirty |= weight.decides;
        let sync = weight.acts && self.dirty;
        let at = epoch_ms(std::time::SystemTime::now());
        let written = line(at, value)
            .map_err(std::io::Error::other)
            .and_then(|line| self.append(&line))
            .and_then(|()| if sync { self.file.sync_data() } else { Ok(()) });
        match written {
            Ok(()) if sync => {
                self.dirty = false;
                #[cfg(test)]
                {
                    self.syncs += 1;
                }
            }
            Ok(()) => {}
            Err(e) => {
                self.failed = Some(format!(
                    "the loss of its journal (cannot write the run's journal {}: {e})",
                    self.path.display()
                ));
            }
        }
    }

    /// Why the journal stopped keeping up, if it did.
    pub(crate) fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// The run is over and its record written: the journal goes.
    pub(crate) fn remove(self) -> std::io::Result<()> {
        remove(&self.path)
    }
}

/// Removes the journal at `path`, for good (its folder synced): a run that
/// ended, or one that `recover` found finished.
pub(crate) fn remove(path: &Path) -> std::io::Result<()> {
    std::fs::remove_file(path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// What an event is to a recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Weight {
    /// A recovery decides differently without it: it must reach the disk
    /// before the next act.
    decides: bool,
    /// runner acts once it is written (a step, a retry or a hook starts).
    acts: bool,
}

/// A sink that journals what matters, then passes every event on. When the
/// journal cannot be written, it says so (`broken`): the engine starts no step
/// after that, and stops the run.
pub(crate) struct Journaled<'a> {
    pub(crate) journal: &'a mut Journal,
    pub(crate) inner: &'a mut dyn Sink,
    /// The units a recovery would undo (those with a rollback hook).
    pub(crate) undoable: HashSet<String>,
}

impl Journaled<'_> {
    /// Whether an event goes into the journal, and what it is to a recovery.
    fn weight(&self, event: &Event) -> Option<Weight> {
        let undoable = |step: &String| self.undoable.contains(step);
        let (decides, acts) = match event {
            Event::RunStarted { .. } | Event::Output { .. } | Event::RunFinished { .. } => {
                return None;
            }
            Event::StepStarted { step, attempt, .. } => (*attempt == 1 && undoable(step), true),
            Event::RollbackStarted { .. } => (true, true),
            Event::StepFinished { step, .. } | Event::StepSkipped { step, .. } => {
                (undoable(step), false)
            }
            Event::AttemptFailed { .. } => (false, false),
            Event::Stopping { .. }
            | Event::Recovering { .. }
            | Event::HostReady { .. }
            | Event::DomainFailed { .. }
            | Event::RollbackHeld { .. }
            | Event::RollbackFinished { .. }
            | Event::Captured { .. } => (true, false),
        };
        Some(Weight { decides, acts })
    }

    /// What an input is to a recovery: each changes the core's state; those
    /// of a unit recovery would not undo do not change what it would do.
    fn input_weight(&self, given: &Given) -> Weight {
        let decides = match given {
            Given::Finished { step, hook, .. } => *hook || self.undoable.contains(step),
            Given::Skipped { step } => self.undoable.contains(step),
            // Lost with all that follows it, the start leaves nothing to
            // undo: whatever decides an undoing syncs it too.
            Given::Start => false,
            Given::Interrupt { .. } | Given::Died { .. } => true,
        };
        Weight {
            decides,
            acts: false,
        }
    }
}

impl Sink for Journaled<'_> {
    fn event(&mut self, event: Event) {
        if let Some(weight) = self.weight(&event) {
            self.journal.record(&event, weight);
        }
        self.inner.event(event);
    }

    fn input(&mut self, input: &Input, units: &[Unit]) {
        let given = Given::of(input, units);
        let weight = self.input_weight(&given);
        self.journal.record(&given, weight);
        self.inner.input(input, units);
    }

    fn broken(&self) -> Option<String> {
        self.journal.failed().map(str::to_owned)
    }
}

/// A run that left its journal: it did not finish.
#[derive(Debug)]
pub(crate) struct Unfinished {
    pub(crate) path: PathBuf,
    pub(crate) header: Header,
    /// Its lines, in the order they were written (a last line cut short by
    /// the run's death is left out).
    pub(crate) lines: Vec<Entry>,
}

impl Unfinished {
    /// Its events, with when each happened.
    pub(crate) fn events(&self) -> impl Iterator<Item = (u64, &Event)> {
        self.lines.iter().filter_map(|e| Some((e.at, e.event()?)))
    }
}

/// The journals a plan's runs left, oldest first; only this plan's (plans of
/// one folder share it), and only regular files.
pub(crate) fn unfinished(plan_dir: &Path, plan_path: &Path) -> Vec<Unfinished> {
    let Ok(entries) = std::fs::read_dir(folder(plan_dir)) else {
        return Vec::new();
    };
    let mut out: Vec<Unfinished> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .filter_map(|path| read(&path).map(|(header, lines)| (path, header, lines)))
        .filter(|(_, header, _)| Path::new(&header.plan_path) == plan_path)
        .map(|(path, header, lines)| Unfinished {
            path,
            header,
            lines,
        })
        .collect();
    out.sort_by(|a, b| a.header.started_at.cmp(&b.header.started_at));
    out
}

/// The most of a journal that is read.
const LIMIT: u64 = 64 * 1024 * 1024;

fn read(path: &Path) -> Option<(Header, Vec<Entry>)> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    file.take(LIMIT).read_to_string(&mut text).ok()?;
    let mut lines = text.lines();
    let header: Header = serde_json::from_str(lines.next()?).ok()?;
    let entries = lines.filter_map(Entry::parse).collect();
    Some((header, entries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Phase;

    struct Nothing;
    impl Sink for Nothing {
        fn event(&mut self, _: Event) {}
    }

    fn header(plan_path: &str) -> Header {
        Header {
            journal: VERSION,
            run_id: "20261204T000000Z-abcd".to_owned(),
            plan: "p".to_owned(),
            plan_file: "plan.toml".to_owned(),
            plan_path: plan_path.to_owned(),
            started_at: "2026-12-04T00:00:00.000Z".to_owned(),
            pid: 1,
            user: "u".to_owned(),
            host: "h".to_owned(),
            vars: std::collections::BTreeMap::new(),
            sockets: None,
        }
    }

    #[test]
    fn a_journal_keeps_what_a_rollback_needs_and_goes_when_the_run_ends() {
        let dir = tempfile::tempdir().expect("dir");
        let plan = dir.path().join("plan.toml");
        let mut journal =
            Journal::create(dir.path(), &header(&plan.display().to_string())).expect("journal");
        let mut inner = Nothing;
        let mut sink = Journaled {
            journal: &mut journal,
            inner: &mut inner,
            undoable: HashSet::from(["a".to_owned()]),
        };
        sink.event(started("a", 1));
        sink.event(Event::Output {
            step: "a".to_owned(),
            phase: Phase::Plan,
            stream: crate::engine::Stream::Stdout,
            line: "noise".to_owned(),
        });
        let found = unfinished(dir.path(), &plan);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].header.run_id, "20261204T000000Z-abcd");
        let events: Vec<&Event> = found[0].events().map(|(_, e)| e).collect();
        assert!(
            matches!(events[..], [Event::StepStarted { step, .. }] if step == "a"),
            "{events:?}"
        );
        // Another plan's journal in the same folder is not this plan's.
        assert!(unfinished(dir.path(), &dir.path().join("other.toml")).is_empty());
        // A second run cannot take the same file, nor a planted one.
        assert!(Journal::create(dir.path(), &header("x")).is_err());
        journal.remove().expect("remove");
        assert!(unfinished(dir.path(), &plan).is_empty());
    }

    fn started(step: &str, attempt: u32) -> Event {
        Event::StepStarted {
            step: step.to_owned(),
            phase: Phase::Plan,
            attempt,
            command: "true".to_owned(),
        }
    }

    fn finished(step: &str) -> Event {
        Event::StepFinished {
            step: step.to_owned(),
            phase: Phase::Plan,
            status: crate::engine::Status::Succeeded,
            attempts: 1,
            duration_ms: 1,
            reason: None,
            never_started: false,
        }
    }

    #[test]
    fn the_journal_syncs_before_an_act_only_what_decides_a_recovery() {
        let dir = tempfile::tempdir().expect("dir");
        let plan = dir.path().join("plan.toml");
        let mut journal =
            Journal::create(dir.path(), &header(&plan.display().to_string())).expect("journal");
        let mut inner = Nothing;
        let mut sink = Journaled {
            journal: &mut journal,
            inner: &mut inner,
            undoable: HashSet::from(["undo".to_owned()]),
        };
        // A chain of steps that recovery would not undo: written, never synced.
        for step in ["a", "b", "c"] {
            sink.event(started(step, 1));
            sink.event(started(step, 2));
            sink.event(finished(step));
        }
        assert_eq!(sink.journal.syncs, 0);
        // A step with a rollback hook is on disk before it acts.
        sink.event(started("undo", 1));
        assert_eq!(sink.journal.syncs, 1);
        // Its end is on disk before the next act, whichever step acts.
        sink.event(finished("undo"));
        assert_eq!(sink.journal.syncs, 1);
        sink.event(started("d", 1));
        assert_eq!(sink.journal.syncs, 2);
        sink.event(finished("d"));
        sink.event(started("e", 1));
        assert_eq!(sink.journal.syncs, 2, "nothing new decides a recovery");
        // The core's inputs: those of a unit recovery would not undo change
        // nothing it would do; an undoable unit's end does.
        let units = [unit("e"), unit("undo")];
        sink.input(&finished_input(0), &units);
        sink.event(started("f", 1));
        assert_eq!(sink.journal.syncs, 2);
        sink.input(&finished_input(1), &units);
        sink.event(started("g", 1));
        assert_eq!(sink.journal.syncs, 3);
        // Every line is written all the same (it outlives `kill -9`).
        let found = unfinished(dir.path(), &plan);
        assert_eq!(found[0].lines.len(), 9 + 5 + 4, "{:?}", found[0].lines);
        assert_eq!(
            found[0].lines[14].line,
            Line::Given(Given::of(&finished_input(0), &units))
        );
    }

    fn unit(id: &str) -> Unit {
        Unit {
            id: id.to_owned(),
            needs: Vec::new(),
            when: crate::engine::When::Success,
            settings: crate::engine::Settings {
                timeout: std::time::Duration::from_secs(1),
                retries: 0,
                retry_delay: std::time::Duration::ZERO,
                backoff: 1.0,
            },
            hook: None,
            domain: None,
        }
    }

    fn finished_input(unit: usize) -> Input {
        Input::Finished {
            task: crate::engine::Task::Step(unit),
            succeeded: true,
            never_started: false,
        }
    }

    #[test]
    fn a_line_reads_back_as_its_entry() {
        let event = finished("a");
        let entry = Entry::parse(&line(42, &event).expect("line")).expect("an entry");
        assert_eq!(
            entry,
            Entry {
                at: 42,
                line: Line::Event(event)
            }
        );
        let given = Given::Died {
            steps: vec!["a".to_owned()],
            hooks: vec!["b".to_owned()],
        };
        let entry = Entry::parse(&line(43, &given).expect("line")).expect("an entry");
        assert_eq!(
            entry,
            Entry {
                at: 43,
                line: Line::Given(given)
            }
        );
        assert_eq!(Entry::parse("{\"at\":44,\"event\":\"step_fin"), None);
    }
}
