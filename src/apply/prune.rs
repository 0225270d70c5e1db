//! Old releases pruned: the images of the newest `keep` releases (the running
//! one and those `runner rollback` goes back to) stay; the older images the
//! plan's runs recorded go, never one a container uses (running, or kept
//! stopped for a rollback); each is removed by its name, so an image another
//! name still stands for stays (nothing is forced).

use std::collections::HashSet;
use std::time::Duration;

use super::images::image_id;
use super::releases::Releases;
use crate::docker::{Docker, briefly_with};

/// What pruning would do, or did, to one image.
pub(crate) struct Pruned {
    pub(crate) image: String,
    pub(crate) run: String,
    /// `None`: removed (or to be removed); else why it stays.
    pub(crate) kept: Option<String>,
}

/// The images of releases older than the newest `keep`, each with the run
/// that deployed it; removed unless `dry`.
pub(crate) fn prune(releases: &Releases, keep: usize, docker: &Docker, dry: bool) -> Vec<Pruned> {
    // The newest `keep` releases (a release deployed again counts once).
    let mut kept_ids = HashSet::new();
    let mut seen: Vec<&crate::report::record::Record> = Vec::new();
    for run in releases.runs.iter().rev() {
        if seen.len() >= keep {
            break;
        }
        if seen
            .iter()
            .any(|r| r.vars == run.vars && r.images == run.images)
        {
            continue;
        }
        seen.push(run);
        kept_ids.extend(run.images.iter().filter_map(|i| i.id.clone()));
    }
    // The older ones this engine still has (one look for all).
    let older: HashSet<&str> = releases
        .runs
        .iter()
        .flat_map(|r| &r.images)
        .filter_map(|i| i.id.as_deref())
        .filter(|id| !kept_ids.contains(*id))
        .collect();
    let here = super::images::present(docker, older);
    let mut out = Vec::new();
    let mut done = HashSet::new();
    for run in releases.runs.iter().rev() {
        for image in &run.images {
            let Some(id) = &image.id else { continue };
            if !here.contains(id) || !done.insert(id.clone()) {
                continue;
            }
            let kept = match in_use(docker, id) {
                Some(container) => Some(format!("container {container} uses it")),
                None if dry => None,
                None => remove(docker, &image.image, id).err(),
            };
            out.push(Pruned {
                image: image.image.clone(),
                run: run.run_id.clone(),
                kept,
            });
        }
    }
    out
}

/// A container (running or not) made from the image, if any.
fn in_use(docker: &Docker, id: &str) -> Option<String> {
    let mut argv = docker.command.clone();
    argv.extend(
        [
            "ps",
            "-a",
            "--filter",
            &format!("ancestor={id}"),
            "--format",
            "{{.Names}}",
        ]
        .map(str::to_owned),
    );
    let out = briefly_with(&argv, &docker.env, Duration::from_secs(10)).ok()?;
    if !out.status.success() {
        return Some("(docker could not say which)".to_owned());
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(str::to_owned)
}

/// Removes the image by its name, when the name still stands for it: docker
/// then deletes it unless another name stands for it too. Never by its id,
/// which could take an image another plan has named since.
fn remove(docker: &Docker, image: &str, id: &str) -> Result<(), String> {
    if image_id(docker, image).as_deref() != Some(id) {
        return Err(format!("{image} stands for another image now"));
    }
    let mut argv = docker.command.clone();
    argv.extend(["image", "rm", image].map(str::to_owned));
    let out = briefly_with(&argv, &docker.env, Duration::from_secs(60))
        .map_err(|e| format!("docker image rm: {e:?}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// One line per image: what pruning did (or would do).
pub(crate) fn lines(pruned: &[Pruned], keep: usize, dry: bool) -> Vec<String> {
    pruned
        .iter()
        .map(|p| match &p.kept {
            None if dry => format!(
                "would remove {} (the release of run {}, older than the {keep} kept)",
                p.image, p.run
            ),
            None => format!(
                "removed {} (the release of run {}, older than the {keep} kept)",
                p.image, p.run
            ),
            Some(why) => format!("kept {} (the release of run {}): {why}", p.image, p.run),
        })
        .collect()
}
