//! The `Test` builder: a plan, arguments, an environment → status and output.

pub(crate) mod docker;
pub(crate) mod hosts;
pub(crate) mod machine;
pub(crate) mod process;
pub(crate) mod rollout;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub(crate) const RUNNER: &str = env!("CARGO_BIN_EXE_runner");

/// The repository root, for the plans under `plans/`.
pub(crate) fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) struct Test {
    pub dir: tempfile::TempDir,
    args: Vec<String>,
    env: Vec<(String, String)>,
    path: Option<String>,
}

pub(crate) struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Test {
    pub(crate) fn new() -> Self {
        machine::ready();
        Self {
            dir: tempfile::tempdir().expect("temporary directory"),
            args: Vec::new(),
            env: Vec::new(),
            path: None,
        }
    }

    /// Writes `plan.toml` in the test's directory.
    pub(crate) fn plan(self, text: &str) -> Self {
        self.file("plan.toml", text)
    }

    pub(crate) fn file(self, name: &str, text: &str) -> Self {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create folder");
        }
        std::fs::write(path, text).expect("write file");
        self
    }

    pub(crate) fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    pub(crate) fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Replaces PATH (to put fake tools first, or hide docker).
    pub(crate) fn path(mut self, path: &str) -> Self {
        self.path = Some(path.to_owned());
        self
    }

    pub(crate) fn path_of(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Waits until the journals of the test's runs hold `count` lines with
    /// `needle` (an event, as `"event":"stopping"`): a test acts once runner
    /// did something, not after a guessed time.
    pub(crate) fn wait_for_journal(&self, needle: &str, count: usize) {
        let deadline = std::time::Instant::now() + process::PATIENCE;
        loop {
            let seen: usize = std::fs::read_dir(self.path_of(".runner/journal"))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
                .map(|text| text.lines().filter(|l| l.contains(needle)).count())
                .sum();
            if seen >= count {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the journal never held {count} line(s) with {needle} (it held {seen})"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    pub(crate) fn run(&self) -> Run {
        output(self.command())
    }

    /// Runs with other arguments, in the same folder and environment.
    pub(crate) fn run_with(&self, args: &[&str]) -> Run {
        let mut command = self.base();
        command.args(args);
        output(command)
    }

    /// The runner command, ready to run or spawn.
    pub(crate) fn command(&self) -> Command {
        let mut command = self.base();
        command.args(&self.args);
        command
    }

    /// The runner command in the test's folder and environment, without arguments.
    fn base(&self) -> Command {
        let mut command = Command::new(RUNNER);
        command
            .current_dir(self.dir.path())
            .env_remove("DOCKER_CMD")
            .env_remove("COMPOSE_CMD")
            .env("NO_COLOR", "1");
        if let Some(path) = &self.path {
            command.env("PATH", path);
        }
        for (k, v) in &self.env {
            command.env(k, v);
        }
        command
    }
}

/// The run records in the test's `.runner/runs`, oldest first.
pub(crate) fn records(test: &Test) -> Vec<serde_json::Value> {
    let runs = test.path_of(".runner/runs");
    let mut files: Vec<_> = std::fs::read_dir(&runs)
        .unwrap_or_else(|e| panic!("the record folder {}: {e}", runs.display()))
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).expect("record");
            serde_json::from_str(&text).expect("record is JSON")
        })
        .collect()
}

/// A step of a record, by id.
pub(crate) fn step<'a>(record: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    record["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("step {id} in the record"))
}

/// Runs `command` to its end: status and output.
pub(crate) fn output(mut command: Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("run runner");
    Run {
        status: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Writes an executable shell script.
pub(crate) fn script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// The name of the user running the tests, as runner records it.
pub(crate) fn user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            let out = Command::new("id").arg("-un").output().expect("id");
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        })
}

/// The text of every `<text>` of an SVG document, checked to be SVG.
pub(crate) fn svg_texts(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not XML: {e}\n{svg}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(|t| t.trim().to_owned()))
        .collect()
}

/// What `runner maintenance status PLAN` prints (trimmed); panics if it fails.
pub(crate) fn maintenance_status(test: &Test, plan: &str) -> String {
    let run = test.run_with(&["maintenance", "status", plan]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    run.stdout.trim().to_owned()
}
