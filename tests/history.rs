//! `runner runs` and `runner show` (issue 12): past runs from their records.

use crate::common::{Test, svg_texts};

const PLAN: &str = r#"
[plan]
name = "history"

[vars]
fail = ""

[steps.first]
kind = "shell"
run = "echo one"
rollback = { kind = "shell", run = "echo undo first" }

[steps.second]
kind = "shell"
needs = ["first"]
run = "test -z {{ fail }}"

[steps.third]
kind = "shell"
needs = ["second"]
run = "echo three"
"#;

const OTHER: &str = r#"
[plan]
name = "another plan in the same folder"

[steps.only]
kind = "shell"
run = "true"
"#;

#[test]
fn runs_lists_the_plans_own_runs_and_show_prints_one_with_its_timeline() {
    let test = Test::new().plan(PLAN).file("other.toml", OTHER);
    assert_eq!(test.run_with(&["apply", "plan.toml"]).status, 0);
    let failed = test.run_with(&["apply", "plan.toml", "--var", "fail=yes"]);
    assert_eq!(failed.status, 1, "{}", failed.stdout);
    assert_eq!(test.run_with(&["apply", "other.toml"]).status, 0);

    let runs = test.run_with(&["runs", "plan.toml"]);
    assert_eq!(runs.status, 0, "{}", runs.stderr);
    let lines: Vec<&str> = runs.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        3,
        "a header and the plan's two runs only:\n{}",
        runs.stdout
    );
    assert!(lines[0].starts_with("run "), "{}", runs.stdout);
    let user = crate::common::user();
    assert!(
        lines[1].contains("succeeded") && lines[1].contains(&user),
        "{}",
        runs.stdout
    );
    assert!(
        lines[2].contains("failed") && lines[2].contains(" 1 "),
        "{}",
        runs.stdout
    );

    let json = test.run_with(&["runs", "plan.toml", "--output", "json"]);
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    let ids: Vec<&str> = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["run_id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(rows[1]["status"], "failed");
    assert_eq!(rows[1]["exit_code"], 1);

    // `last` is the failed run: its summary, then its timeline.
    let show = test.run_with(&["show", "plan.toml"]);
    assert_eq!(show.status, 0, "{}", show.stderr);
    let out = &show.stdout;
    assert!(
        out.contains(&format!("run {} of \"history\"", ids[1])),
        "{out}"
    );
    assert!(
        out.contains("FAILED: step `second` failed; every rollback hook succeeded (exit 1)"),
        "{out}"
    );
    assert!(out.contains("\nTimeline ("), "{out}");
    for row in ["first ", "second ", "third ", "rollback of first "] {
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with(row) && l.contains('|')),
            "no timeline row for {row}: {out}"
        );
    }
    // A run by the start of its id.
    let first = test.run_with(&["show", "plan.toml", &ids[0][..ids[0].len() - 2]]);
    assert_eq!(first.status, 0, "{}", first.stderr);
    assert!(
        first.stdout.contains("succeeded (exit 0)"),
        "{}",
        first.stdout
    );
    // An id that is not there.
    let missing = test.run_with(&["show", "plan.toml", "19990101T000000Z"]);
    assert_eq!(missing.status, 2);
    assert!(
        missing.stderr.contains("no run `19990101T000000Z`"),
        "{}",
        missing.stderr
    );
    assert!(
        missing.stderr.contains(ids[1]),
        "it names the last run: {}",
        missing.stderr
    );

    // The timeline as a picture: valid SVG naming every step and hook.
    let svg = test.run_with(&["show", "plan.toml", "last", "--format", "svg"]);
    assert_eq!(svg.status, 0, "{}", svg.stderr);
    let texts = svg_texts(&svg.stdout);
    for name in ["first", "second", "third", "rollback of first"] {
        assert!(texts.iter().any(|t| t == name), "{name} not in {texts:?}");
    }
}

#[test]
fn a_plan_without_runs_says_where_they_would_be() {
    let test = Test::new().plan(PLAN);
    let runs = test.run_with(&["runs", "plan.toml"]);
    assert_eq!(runs.status, 0);
    assert!(
        runs.stdout.starts_with("no runs of plan.toml yet"),
        "{}",
        runs.stdout
    );
    let show = test.run_with(&["show", "plan.toml"]);
    assert_eq!(show.status, 2);
    assert!(
        show.stderr.contains("no runs of plan.toml yet"),
        "{}",
        show.stderr
    );
}

/// A failed step whose own hook undid it (`also_if_failed`), a step rolled
/// back, a skipped one, and an after-phase step.
const UNDONE: &str = r#"
[plan]
name = "undone"

[steps.switch]
kind = "shell"
run = "echo switched"
rollback = { kind = "shell", run = "echo switched back" }

[steps.migrate]
kind = "shell"
needs = ["switch"]
run = "echo applied 1; exit 3"
rollback = { kind = "shell", run = "echo down", also_if_failed = true }

[steps.probe]
kind = "shell"
needs = ["migrate"]
run = "true"

[steps.report]
kind = "shell"
when = "failure"
run = "echo reported"
"#;

/// The summary (printed by apply and by `runner show`) says that a failed
/// step's hook undid it, and names the hooks in the order they ran; the SVG
/// colours each bar by its final status, lists only the colours it uses, and
/// puts the after-phase after the plan and its rollback.
#[test]
fn the_summary_and_the_picture_tell_what_the_rollback_undid() {
    let test = Test::new().plan(UNDONE);
    let run = test.run_with(&["apply", "plan.toml"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    let show = test.run_with(&["show", "plan.toml"]);
    assert_eq!(show.status, 0, "{}", show.stderr);
    for out in [&run.stdout, &show.stdout] {
        let row = |id: &str| {
            out.lines()
                .find(|l| l.starts_with(&format!("{id} ")) && !l.contains('|'))
                .unwrap_or_else(|| panic!("no summary row for {id}:\n{out}"))
                .to_owned()
        };
        assert!(row("migrate").contains("failed, undone"), "{out}");
        assert!(row("switch").contains("rolled back"), "{out}");
        assert!(row("probe").contains("skipped"), "{out}");
        assert!(row("report").contains("succeeded"), "{out}");
        let hooks = out
            .split("rollback, in the order the hooks ran:\n")
            .nth(1)
            .unwrap_or_else(|| panic!("no hooks in the summary:\n{out}"));
        let hooks: Vec<&str> = hooks.lines().take(2).collect();
        assert!(
            hooks[0]
                .starts_with("  1. rollback of migrate: undid `migrate`, which had failed partway"),
            "{out}"
        );
        assert!(
            hooks[1].starts_with("  2. rollback of switch: undid `switch`"),
            "{out}"
        );
    }

    let svg = test.run_with(&["show", "plan.toml", "last", "--format", "svg"]);
    assert_eq!(svg.status, 0, "{}", svg.stderr);
    let doc = roxmltree::Document::parse(&svg.stdout).expect("SVG is XML");
    // Each bar is a group: its label, then its rectangle.
    let bars: Vec<(String, String)> = doc
        .descendants()
        .filter(|n| n.has_tag_name("g"))
        .filter_map(|g| {
            let label = g
                .children()
                .find(|c| c.has_tag_name("text"))?
                .text()?
                .trim();
            let rect = g.children().find(|c| c.has_tag_name("rect"))?;
            Some((label.to_owned(), rect.attribute("class")?.to_owned()))
        })
        .collect();
    let class = |label: &str| {
        bars.iter().find(|(l, _)| l == label).map_or_else(
            || panic!("no bar for {label}: {bars:?}"),
            |(_, c)| c.as_str(),
        )
    };
    assert_eq!(class("switch"), "rolled-back");
    assert_eq!(class("migrate"), "failed-undone");
    assert_eq!(class("report"), "succeeded");
    assert_eq!(class("rollback of migrate"), "hook");
    assert!(
        !bars.iter().any(|(l, _)| l == "probe"),
        "a skipped step has no bar"
    );
    // Reading order: the plan, its rollback, then the after-phase.
    let order: Vec<&str> = bars.iter().map(|(l, _)| l.as_str()).collect();
    let at = |l: &str| order.iter().position(|o| *o == l).expect("bar");
    assert!(at("migrate") < at("rollback of migrate"), "{order:?}");
    assert!(at("rollback of switch") < at("report"), "{order:?}");
    // The legend: the colours this run used, no other.
    let texts = crate::common::svg_texts(&svg.stdout);
    for used in [
        "succeeded, then rolled back",
        "failed, undone by its hook",
        "rollback hook",
    ] {
        assert!(texts.iter().any(|t| t == used), "{used}: {texts:?}");
    }
    for unused in [
        "failed",
        "its rollback failed",
        "rollback hook failed",
        "maintenance page",
    ] {
        assert!(!texts.iter().any(|t| t == unused), "{unused}: {texts:?}");
    }
    let style = doc
        .descendants()
        .find(|n| n.has_tag_name("style"))
        .and_then(|n| n.text())
        .unwrap_or_default();
    assert!(!style.contains(".rollback-failed"), "{style}");
}

/// A record as runner wrote it, to be bent by the tests below.
fn one_record(test: &Test) -> (std::path::PathBuf, serde_json::Value) {
    let run = test.run_with(&["apply", "plan.toml", "--var", "fail=yes"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    let runs = test.path_of(".runner/runs");
    let path = std::fs::read_dir(&runs)
        .expect("runs")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a record");
    let record =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("record")).expect("JSON");
    (path, record)
}

/// Runs runner, killed if it takes more than 20 s (it must never hang).
fn bounded(test: &Test, args: &[&str]) -> crate::common::Run {
    let mut child = test
        .command()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runner");
    crate::common::process::exit_within(&mut child, std::time::Duration::from_secs(20));
    let out = child.wait_with_output().expect("output");
    crate::common::Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// What is not a regular file in the runs folder (a FIFO named like a
/// record) is skipped and named, never waited on; a record whose durations
/// are near 2^64 is drawn, not looped over.
#[test]
fn runs_and_show_skip_what_is_not_a_record_and_never_hang_or_overflow() {
    let test = Test::new().plan(PLAN);
    let (path, mut record) = one_record(&test);
    let fifo = test.path_of(".runner/runs/a-fifo.json");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
    let runs = bounded(&test, &["runs", "plan.toml"]);
    assert_eq!(runs.status, 0, "{}", runs.stderr);
    assert!(
        runs.stdout
            .contains("a-fifo.json: unreadable record: not a regular file, skipped"),
        "{}",
        runs.stdout
    );
    let near = u64::MAX - 1;
    record["duration_ms"] = near.into();
    record["steps"][0]["started_ms"] = (near / 2).into();
    record["steps"][0]["ended_ms"] = near.into();
    std::fs::write(&path, record.to_string()).expect("record");
    for format in ["svg", "text", "json"] {
        let show = bounded(&test, &["show", "plan.toml", "last", "--format", format]);
        assert_eq!(show.status, 0, "{format}: {}", show.stderr);
        if format == "svg" {
            crate::common::svg_texts(&show.stdout);
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]

    /// Whatever text a record holds (a plan name with U+FFFF, control
    /// characters, markup), `show --format svg` is well-formed XML.
    #[test]
    fn the_svg_is_well_formed_for_any_text(
        texts in proptest::collection::vec(proptest::prelude::any::<String>(), 6),
    ) {
        let test = Test::new().plan(PLAN);
        let (path, mut record) = one_record(&test);
        record["plan"] = texts[0].clone().into();
        record["user"] = texts[1].clone().into();
        record["host"] = texts[2].clone().into();
        record["steps"][0]["id"] = texts[3].clone().into();
        record["steps"][1]["id"] = format!("{}\u{ffff}<&>\"", texts[4]).into();
        record["run_id"] = texts[5].clone().into();
        std::fs::write(&path, record.to_string()).expect("record");
        let show = bounded(&test, &["show", "plan.toml", "last", "--format", "svg"]);
        proptest::prop_assert_eq!(show.status, 0, "{}", show.stderr);
        let parsed = roxmltree::Document::parse(&show.stdout);
        proptest::prop_assert!(parsed.is_ok(), "{:?}\n{}", parsed.err(), show.stdout);
    }
}
