//! Day-two operations: `runner rollback` to a kept release.

use crate::common::docker::{Demo, Poller, docker, not_ok, record};

/// Deploys v2 then v3, rolls back (to v2, by default) while a client polls,
/// then asks for a run whose images are gone.
#[test]
fn rollback_goes_back_to_the_release_before_the_running_one_and_refuses_one_whose_images_are_gone()
{
    let demo = Demo::new("rollback");
    // The newer release's image is this test's alone (the demo's builds of
    // one version are the same image in every test).
    let newer = format!("v3-{}", demo.name);
    for version in ["v2", newer.as_str()] {
        let run = demo.apply(&["--var", &format!("version={version}")]);
        assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    }
    let deployed: Vec<String> = crate::common::records(&demo.test)
        .iter()
        .map(|r| r["run_id"].as_str().expect("run id").to_owned())
        .collect();
    let runs = demo.test.run_with(&["runs", "demo.toml"]);
    let line = |id: &str| {
        runs.stdout
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        line(&deployed[0]).contains("can go back"),
        "{}",
        runs.stdout
    );
    assert!(
        line(&deployed[1]).contains("running now"),
        "{}",
        runs.stdout
    );
    let json = demo
        .test
        .run_with(&["runs", "demo.toml", "--output", "json"]);
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(rows[0]["can_go_back"], true, "{rows}");
    assert_eq!(rows[1]["running_now"], true, "{rows}");

    // The preview says where it goes, and changes nothing.
    let preview = demo
        .test
        .run_with(&["rollback", "demo.toml", "--plan-only"]);
    assert_eq!(preview.status, 0, "{}{}", preview.stdout, preview.stderr);
    assert!(
        preview
            .stderr
            .contains(&format!("rollback to run {}", deployed[0]))
            && preview.stderr.contains("version=v2"),
        "{}",
        preview.stderr
    );
    assert_eq!(
        demo.up().map(|(_, b)| b.trim().to_owned()),
        Ok(format!("up {newer} schema=4"))
    );

    let poller = Poller::start(demo.port);
    let rollback = demo.test.run_with(&["rollback", "demo.toml"]);
    let seen = poller.finish();
    assert_eq!(rollback.status, 0, "{}{}", rollback.stdout, rollback.stderr);
    assert!(not_ok(&seen).is_empty(), "{:?}", not_ok(&seen));
    // The database is left as it is: the plan has no step of its own that
    // steps the schema back.
    assert_eq!(
        demo.up().map(|(_, b)| b.trim().to_owned()),
        Ok("up v2 schema=4".to_owned())
    );
    // No build: the rollback deploys the image the run it goes back to built.
    assert!(
        rollback.stdout.contains("build skipped"),
        "{}",
        rollback.stdout
    );
    assert!(
        rollback
            .stdout
            .contains(&format!("went back to the release of run {}", deployed[0])),
        "{}",
        rollback.stdout
    );
    let last = record(&demo.test);
    assert_eq!(last["rollback_of"], deployed[0].as_str());
    assert_eq!(last["vars"]["version"], "v2");

    // The newer one is the release to go back to now; with its image gone, it is
    // refused before any change, naming what can be gone back to.
    // (The container the switch kept stopped holds it too.)
    let v3 = format!("{}:{newer}", demo.name);
    let _ = docker(&["rm", "-f", &format!("{}-previous", demo.name)]);
    let gone = docker(&["image", "rm", "-f", &v3]);
    assert!(
        gone.status.success(),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
    let id = last_id(&demo, &deployed[1]);
    assert!(
        !docker(&["image", "inspect", &id]).status.success(),
        "{id} is still here"
    );
    let refused = demo
        .test
        .run_with(&["rollback", "demo.toml", "--to", &deployed[1]]);
    assert_eq!(refused.status, 4, "{}{}", refused.stdout, refused.stderr);
    assert!(
        refused.stderr.contains("images are gone")
            && refused.stderr.contains(&v3)
            && refused
                .stderr
                .contains("no run of this plan can be gone back to"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        demo.up().map(|(_, b)| b.trim().to_owned()),
        Ok("up v2 schema=4".to_owned())
    );
    assert_eq!(crate::common::records(&demo.test).len(), 3, "nothing ran");
}

/// The id of the image a run recorded.
fn last_id(demo: &Demo, run: &str) -> String {
    let records = crate::common::records(&demo.test);
    let record = records
        .iter()
        .find(|r| r["run_id"] == run)
        .expect("the run's record");
    record["images"][0]["id"]
        .as_str()
        .expect("an image id")
        .to_owned()
}

/// With `keep = 1`, each successful run removes the images of older
/// releases, but never one a container uses.
#[test]
fn a_successful_run_prunes_the_images_of_releases_older_than_keep() {
    let demo = Demo::new("prune");
    let plan = std::fs::read_to_string(demo.test.path_of("demo.toml")).expect("plan");
    std::fs::write(
        demo.test.path_of("demo.toml"),
        plan.replacen("jobs = 4\n", "jobs = 4\nkeep = 1\n", 1),
    )
    .expect("plan");
    let versions = [
        "v2".to_owned(),
        format!("va-{}", demo.name),
        format!("vb-{}", demo.name),
    ];
    let mut runs = Vec::new();
    for version in &versions {
        let run = demo.apply(&["--var", &format!("version={version}")]);
        assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
        runs.push(run);
    }
    let image = |version: &str| format!("{}:{version}", demo.name);
    // The second run kept v2: the container its switch kept stopped uses it.
    assert!(
        runs[1].stderr.contains(&format!("kept {}", image("v2")))
            && runs[1].stderr.contains("-previous uses it"),
        "{}",
        runs[1].stderr
    );
    // The third removed it (no container uses it any more), and kept the one
    // the new kept container uses.
    assert!(
        runs[2].stderr.contains(&format!("removed {}", image("v2"))),
        "{}",
        runs[2].stderr
    );
    assert!(!docker(&["image", "inspect", &image("v2")]).status.success());
    assert!(
        docker(&["image", "inspect", &image(&versions[1])])
            .status
            .success()
    );
    assert!(
        docker(&["image", "inspect", &image(&versions[2])])
            .status
            .success()
    );
    let preview = demo.test.run_with(&["prune", "demo.toml", "--plan-only"]);
    assert_eq!(preview.status, 0, "{}{}", preview.stdout, preview.stderr);
    assert!(
        preview
            .stdout
            .contains(&format!("kept {}", image(&versions[1]))),
        "{}",
        preview.stdout
    );
}
