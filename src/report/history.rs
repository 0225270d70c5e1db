//! A plan's history: the records of its runs beside it (`.runner/runs/`),
//! read for `runner runs`, `runner show`, `runner rollback` and the pruning
//! of old releases.

use std::path::{Path, PathBuf};

use super::record::Record;
use crate::error::Error;

/// A record found beside the plan (and its text), or why it could not be read.
pub(crate) struct Found {
    pub(crate) path: PathBuf,
    pub(crate) record: Result<(Record, String), String>,
    /// The host that keeps it, for a run this machine has no record of (one
    /// made from another machine).
    pub(crate) on_host: Option<String>,
}

/// The most of a record that is read: records are small, and a huge file in
/// the runs folder must not take the memory.
const RECORD_LIMIT: u64 = 64 * 1024 * 1024;

/// A record's text. Only a regular file is read: a FIFO, a device or a folder
/// in the runs folder is skipped and named, never waited on (it is opened
/// without blocking, then checked).
fn read_record(path: &Path) -> Result<(Record, String), String> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file, skipped".to_owned());
    }
    let mut text = String::new();
    file.take(RECORD_LIMIT)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    let record = serde_json::from_str::<Record>(&text).map_err(|e| e.to_string())?;
    Ok((record, text))
}

/// The folder of a plan's records, and the plan file links resolved.
fn folder(plan: &Path) -> Result<(PathBuf, PathBuf), Error> {
    let real = std::fs::canonicalize(plan).map_err(|source| Error::PlanRead {
        path: plan.to_owned(),
        source,
    })?;
    let dir = real.parent().unwrap_or(Path::new("/")).to_owned();
    Ok((crate::layout::records(&dir), real))
}

/// The plan's records, oldest first, their folder, and the plan file, links
/// resolved.
pub(crate) fn found(plan: &Path) -> Result<(PathBuf, PathBuf, Vec<Found>), Error> {
    let (dir, real) = folder(plan)?;
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((dir, real, Vec::new()));
        }
        Err(e) => {
            return Err(Error::History {
                message: format!("cannot read {}: {e}", dir.display()),
                help: None,
            });
        }
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let record = read_record(&path);
        let theirs = match &record {
            // A record of an older runner has no `plan_path`: it is kept.
            Ok((r, _)) => r.plan_path.is_empty() || Path::new(&r.plan_path) == real,
            Err(_) => true,
        };
        if theirs {
            out.push(Found {
                path,
                record,
                on_host: None,
            });
        }
    }
    // By start (run ids of one second do not sort by time); unreadable last.
    out.sort_by(|a, b| {
        let key = |f: &Found| {
            f.record
                .as_ref()
                .map_or((1, String::new()), |(r, _)| (0, r.started_at.clone()))
        };
        key(a).cmp(&key(b)).then_with(|| a.path.cmp(&b.path))
    });
    Ok((dir, real, out))
}

/// `found` with the records the hosts keep of runs this machine has none of
/// (made from another machine), by start; each host that could not be read
/// is told on stderr.
pub(crate) fn with_hosts(plan: Option<&crate::plan::Plan>, mut found: Vec<Found>) -> Vec<Found> {
    let Some(plan) = plan.filter(|p| !p.hosts.is_empty()) else {
        return found;
    };
    let (kept, unread) = crate::remote::state::kept_records(plan);
    for (host, why) in unread {
        eprintln!("runner: host {host}: its history could not be read: {why}");
    }
    for (host, files) in kept {
        for (_, text) in files {
            let Ok(record) = serde_json::from_str::<Record>(text.trim()) else {
                continue;
            };
            let known = found.iter().any(|f| {
                f.record
                    .as_ref()
                    .is_ok_and(|(r, _)| r.run_id == record.run_id)
            });
            if !known {
                found.push(Found {
                    path: PathBuf::from(format!("{host}:runs/{}.json", record.run_id)),
                    record: Ok((record, text)),
                    on_host: Some(host.clone()),
                });
            }
        }
    }
    found.sort_by(|a, b| {
        let key = |f: &Found| {
            f.record
                .as_ref()
                .map_or((1, String::new()), |(r, _)| (0, r.started_at.clone()))
        };
        key(a).cmp(&key(b))
    });
    found
}

/// The plan's readable records, oldest first.
pub(crate) fn records(plan: &Path) -> Result<Vec<Record>, Error> {
    let (_, _, found) = found(plan)?;
    Ok(found
        .into_iter()
        .filter_map(|f| f.record.ok().map(|(r, _)| r))
        .collect())
}
