//! Trust on every host (issue 17), tried as an attacker and as an operator of
//! several hosts would, on the test hosts over real ssh: templates render in
//! every field, the host lock trusts no host user and is a lease, ssh never
//! lowers its guard, runner's sockets stay private, local engines are locked
//! per engine, and a script too deep to check is a finding.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::docker::Users;
use crate::common::hosts::{Hosts, flock_holder, flocked, socket_folders};
use crate::common::process::exit_within;
use crate::common::rollout::Rollout;
use crate::common::{Run, Test};

/// The plan's name in the rolling template: its host lock is `runner-rolling.lock`.
const PLAN: &str = "rolling";

fn has(text: &str, want: &str) {
    assert!(text.contains(want), "{want:?} is not in:\n{text}");
}

/// Edits the test's plan.
fn edit(rollout: &Rollout, from: &str, to: &str) {
    let path = rollout.test.path_of("plan.toml");
    let plan = std::fs::read_to_string(&path).expect("plan");
    assert!(plan.contains(from), "{from:?} is not in the plan");
    std::fs::write(&path, plan.replace(from, to)).expect("plan");
}

/// Every host leaves the pool, and its drain waits `seconds`: a run that
/// holds its locks a while.
fn slow_drain(rollout: &Rollout, seconds: u32) {
    edit(rollout, "leave_pool = \"no\"", "leave_pool = \"yes\"");
    edit(
        rollout,
        "&& sleep 0.3\"\nrollback",
        &format!("&& sleep {seconds}\"\nrollback"),
    );
}

/// Starts `apply` in the background, its output in files of the test.
fn background(test: &Test, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    let mut command = test.command();
    command.args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    command
        .stdout(std::fs::File::create(test.path_of("bg.out")).expect("out"))
        .stderr(std::fs::File::create(test.path_of("bg.err")).expect("err"))
        .spawn()
        .expect("runner")
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn output_of(test: &Test) -> String {
    std::fs::read_to_string(test.path_of("bg.out")).unwrap_or_default()
        + &std::fs::read_to_string(test.path_of("bg.err")).unwrap_or_default()
}

#[test]
fn templates_render_in_the_checks_of_every_host() {
    let rollout = Rollout::new(2, "root", "0");
    // Each host must serve the version being deployed: the probe's body and a
    // docker-exec's output, both from the version variable.
    edit(
        &rollout,
        "url = \"http://127.0.0.1:8080/\"",
        "url = \"http://127.0.0.1:8080/\"\nexpect_body = \"{{ version }}\"",
    );
    edit(
        &rollout,
        "[steps.smoke]",
        "[steps.served]\nkind = \"docker-exec\"\non = \"web\"\nneeds = [\"check\"]\ncontainer = \"app\"\ncommand = [\"wget\", \"-q\", \"-O-\", \"http://127.0.0.1:8080/\"]\nexpect_output = \"^{{ version }}$\"\n\n[steps.smoke]",
    );
    let run = rollout.apply(&[]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let run = rollout.apply(&["version=v2"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(rollout.versions(), ["v2", "v2"]);
    // A version the release does not serve fails the check on the first host,
    // and the deploy rolls back.
    let plan = std::fs::read_to_string(rollout.test.path_of("plan.toml")).expect("plan");
    std::fs::write(
        rollout.test.path_of("plan.toml"),
        plan.replace(
            "expect_body = \"{{ version }}\"",
            "expect_body = \"{{ version }}-x\"",
        ),
    )
    .expect("plan");
    let run = rollout.apply(&["version=v1"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    has(&run.stdout, "v1-x");
    assert_eq!(rollout.versions(), ["v2", "v2"]);
}

/// Things a host user (not root, not in docker's group) can plant where the
/// lock goes, in a world-writable /run/lock.
enum Plant {
    Link,
    HardLink,
    Fifo,
    File,
    Folder,
    OpenFolder,
}

#[test]
fn no_host_user_can_redirect_spoof_or_use_the_host_lock() {
    use std::os::unix::fs::PermissionsExt as _;
    let users = Users::create();
    let rollout = Rollout::new(1, "root", "0");
    let (uid, gid) = Users::ids(&users.nobody);
    let lock = rollout.hosts.lock_of(1, PLAN);
    // What a planted link points at: it must never be made or changed.
    let victims = rollout.test.path_of("victims");
    std::fs::create_dir_all(&victims).expect("victims");
    let made = victims.join("made-by-runner");
    let kept = victims.join("kept");
    std::fs::write(&kept, "untouched").expect("victim");
    std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    for plant in [
        Plant::Link,
        Plant::HardLink,
        Plant::Fifo,
        Plant::File,
        Plant::Folder,
        Plant::OpenFolder,
    ] {
        let what = match plant {
            Plant::Link => {
                std::os::unix::fs::symlink(&made, &lock).expect("symlink");
                "a link to a file that does not exist"
            }
            Plant::HardLink => {
                let own = rollout.hosts.run_dir(1).join("lock/mine");
                std::fs::write(&own, "x").expect("file");
                std::os::unix::fs::chown(&own, Some(uid), Some(gid)).expect("chown");
                std::fs::hard_link(&own, &lock).expect("hard link");
                "a hard link"
            }
            Plant::Fifo => {
                nix::unistd::mkfifo(&lock, nix::sys::stat::Mode::from_bits_truncate(0o666))
                    .expect("mkfifo");
                "a FIFO"
            }
            Plant::File => {
                std::fs::write(&lock, "").expect("file");
                "a file"
            }
            Plant::Folder => {
                std::fs::create_dir(&lock).expect("folder");
                "a folder of another user"
            }
            Plant::OpenFolder => {
                std::fs::create_dir(&lock).expect("folder");
                std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o777))
                    .expect("chmod");
                "a folder anyone may write"
            }
        };
        if !matches!(plant, Plant::OpenFolder) {
            std::os::unix::fs::lchown(&lock, Some(uid), Some(gid)).expect("chown");
        }
        let start = Instant::now();
        let run = rollout.apply(&[]);
        assert_eq!(run.status, 4, "{what}: {}{}", run.stdout, run.stderr);
        has(&run.stderr, "the host's lock cannot be trusted");
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what}: too slow"
        );
        assert!(!made.exists(), "{what}: runner made a file through it");
        assert_eq!(std::fs::read_to_string(&kept).expect("victim"), "untouched");
        assert_eq!(rollout.in_pool(), [false], "{what}: a step ran");
        // Removed (as root would), the next run takes the host.
        if lock.is_dir() && !lock.is_symlink() {
            std::fs::remove_dir(&lock).expect("remove");
        } else {
            std::fs::remove_file(&lock).expect("remove");
        }
        let _ = std::fs::remove_file(rollout.hosts.run_dir(1).join("lock/mine"));
    }
    let run = rollout.apply(&[]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    // Runner's own lock: a folder nobody else may write, nothing inside.
    let meta = std::fs::symlink_metadata(&lock).expect("the lock");
    assert!(meta.is_dir());
    assert_eq!(meta.permissions().mode() & 0o022, 0);
    // Nor open: a host user who may not deploy cannot hold it to block one.
    assert_eq!(
        meta.permissions().mode() & 0o007,
        0,
        "{:o}",
        meta.permissions().mode()
    );
    let held = std::process::Command::new("runuser")
        .args(["-u", &users.nobody, "--", "flock", "-n"])
        .arg(&lock)
        .arg("true")
        .output()
        .expect("runuser");
    assert!(
        !held.status.success(),
        "another user took the lock: {}",
        String::from_utf8_lossy(&held.stderr)
    );
}

#[test]
fn one_lock_per_host_and_plan_for_every_deploy_user_whatever_run_lock_is() {
    use std::os::unix::fs::PermissionsExt as _;
    let users = Users::create();
    users.allow_ssh_login();
    users.join_deploy_group();
    for mode in [0o1777, 0o755] {
        let rollout = Rollout::new(1, "root", "0");
        let run_lock = rollout.hosts.run_dir(1).join("lock");
        std::fs::set_permissions(&run_lock, std::fs::Permissions::from_mode(mode))
            .expect("chmod /run/lock");
        // With /run/lock closed to users (Fedora, RHEL, Arch), every user's
        // lock is in the host's /tmp (this machine's, for the test hosts).
        let shared = Path::new("/tmp").join(format!("runner-{PLAN}.lock"));
        let _ = std::fs::remove_dir(&shared);
        slow_drain(&rollout, 60);
        // The same plan as another deploy user of the host, who reaches
        // docker through sudo.
        let plan = std::fs::read_to_string(rollout.test.path_of("plan.toml")).expect("plan");
        std::fs::write(
            rollout.test.path_of("other.toml"),
            plan.replace("ssh://root@", &format!("ssh://{}@", users.sudoer)),
        )
        .expect("plan");
        let mut first = background(&rollout.test, &["apply", "plan.toml"], &[]);
        let lock = if mode == 0o1777 {
            rollout.hosts.lock_of(1, PLAN)
        } else {
            shared.clone()
        };
        wait_until(
            "the first run holds the host",
            Duration::from_secs(60),
            || flocked(&lock),
        );
        let second = rollout.test.run_with(&["apply", "other.toml"]);
        assert_eq!(
            second.status, 4,
            "mode {mode:o}: {}{}",
            second.stdout, second.stderr
        );
        has(
            &second.stderr,
            "another run holds this host's lock for plan `rolling`",
        );
        has(&second.stderr, "of user root on the host");
        // The holder is named: runner's own holder text, whatever the length
        // of the lock's command line.
        has(&second.stderr, "lock for plan `rolling`: run ");
        assert!(!second.stderr.contains("not runner's"), "{}", second.stderr);
        let _ = first.kill();
        let _ = first.wait();
        let _ = std::fs::remove_dir(&shared);
    }
}

#[test]
fn the_holder_is_shown_with_its_control_characters_escaped() {
    let rollout = Rollout::new(1, "root", "0");
    let lock = rollout.hosts.lock_of(1, PLAN);
    std::fs::create_dir(&lock).expect("the lock");
    // A holder whose words would drive the operator's terminal.
    let mut holder = std::process::Command::new("flock")
        .arg(&lock)
        .args([
            "sh",
            "-c",
            "sleep 60",
            "runner-lock",
            "x\u{1b}]0;pwned\u{7}\u{1b}[2J",
        ])
        .spawn()
        .expect("flock");
    wait_until(
        "the planted holder holds it",
        Duration::from_secs(10),
        || flocked(&lock),
    );
    let run = rollout.apply(&[]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(run.status, 4, "{}{}", run.stdout, run.stderr);
    has(&run.stderr, "x\\u{1b}]0;pwned\\u{7}\\u{1b}[2J");
    assert!(!run.stderr.contains('\u{1b}'), "{}", run.stderr);
}

#[test]
fn a_run_that_loses_its_lock_session_stops_as_on_an_interrupt() {
    let rollout = Rollout::new(1, "root", "0");
    assert_eq!(rollout.apply(&[]).status, 0);
    slow_drain(&rollout, 60);
    let mut run = background(
        &rollout.test,
        &["apply", "plan.toml", "--var", "version=v2"],
        &[],
    );
    let lock = rollout.hosts.lock_of(1, PLAN);
    wait_until("the drain runs", Duration::from_secs(60), || {
        !rollout.pool.join("rth1").exists()
    });
    // The session that holds the lock on the host dies (the OOM killer, an
    // admin): the lock is free for another run, so this one must stop.
    let pid = flock_holder(&lock).expect("the lock's holder");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    let killed = Instant::now();
    let code = exit_within(&mut run, Duration::from_secs(60));
    let out = output_of(&rollout.test);
    assert_eq!(code, 130, "{out}");
    assert!(
        killed.elapsed() < Duration::from_secs(20),
        "{:?}",
        killed.elapsed()
    );
    has(&out, "interrupted by the loss of host rth1's lock");
    // Its rollback put the host back in the pool, on v1.
    assert_eq!(rollout.in_pool(), [true], "{out}");
    assert_eq!(rollout.versions(), ["v1"]);
    let record = crate::common::docker::record(&rollout.test);
    assert_eq!(record["status"], "interrupted");
}

#[test]
fn a_host_cut_off_gives_its_lock_up_within_the_lease_and_says_whose_it_was() {
    let rollout = Rollout::new(1, "root", "0");
    assert_eq!(rollout.apply(&[]).status, 0);
    slow_drain(&rollout, 120);
    let mut run = background(&rollout.test, &["apply", "plan.toml"], &[]);
    let lock = rollout.hosts.lock_of(1, PLAN);
    wait_until("the drain runs", Duration::from_secs(60), || {
        !rollout.pool.join("rth1").exists()
    });
    // The host drops everything for a while: sshd keeps the session, and
    // nothing but the lease frees the lock.
    let cut = Instant::now();
    iptables(1, "-A");
    let code = exit_within(&mut run, Duration::from_secs(90));
    let noticed = cut.elapsed();
    let out = output_of(&rollout.test);
    assert!(
        noticed < Duration::from_secs(40),
        "noticed after {noticed:?}: {out}"
    );
    assert!(matches!(code, 3 | 130), "{code}: {out}");
    has(&out, "the loss of host rth1's lock");
    // The lease runs out on the host (30 s after it last heard from runner).
    wait_until(
        "the host gives the lock up",
        Duration::from_secs(45),
        || !flocked(&lock),
    );
    assert!(cut.elapsed() < Duration::from_secs(60));
    iptables(1, "-D");
    slow_drain_back(&rollout);
    let again = rollout.apply(&[]);
    assert_eq!(again.status, 0, "{}{}", again.stdout, again.stderr);
    has(&again.stdout, "its lease on the host ran out at");
    has(&again.stdout, "this run took the host");
}

fn slow_drain_back(rollout: &Rollout) {
    let path = rollout.test.path_of("plan.toml");
    let plan = std::fs::read_to_string(&path).expect("plan");
    std::fs::write(&path, plan.replace("&& sleep 120\"", "&& sleep 0.3\"")).expect("plan");
}

/// Drops (`-A`) or lets through again (`-D`) everything host `i` receives.
fn iptables(i: usize, op: &str) {
    let status = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("rth{i}"),
            "iptables",
            op,
            "INPUT",
            "-j",
            "DROP",
        ])
        .status()
        .expect("iptables");
    assert!(status.success());
}

/// An ssh configuration that would let anything through, and known hosts
/// that hold a key of `host` that is not its own.
fn lax_ssh(hosts: &Hosts, test: &Test, changed: bool) -> String {
    let known = test.path_of("lax_known_hosts");
    if changed {
        let other = test.path_of("other_key");
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&other)
            .status()
            .expect("ssh-keygen");
        assert!(status.success());
        let public = std::fs::read_to_string(other.with_extension("pub")).expect("key");
        let key: Vec<&str> = public.split_whitespace().take(2).collect();
        std::fs::write(&known, format!("{} {}\n", Hosts::address(1), key.join(" ")))
            .expect("known");
    } else {
        std::fs::write(&known, "").expect("known");
    }
    let config = test.path_of("lax_config");
    std::fs::write(
        &config,
        format!(
            "Host 10.77.0.*\n  User root\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  StrictHostKeyChecking no\n",
            hosts.dir.join("id").display(),
            known.display()
        ),
    )
    .expect("config");
    format!("ssh -F {}", config.display())
}

#[test]
fn ssh_refuses_unknown_and_changed_keys_whatever_its_config_says() {
    let rollout = Rollout::new(1, "root", "0");
    for (changed, want) in [(true, "has CHANGED"), (false, "is unknown here")] {
        let lax = lax_ssh(&rollout.hosts, &rollout.test, changed);
        for ssh in [lax.clone(), format!("{lax} -o StrictHostKeyChecking=no")] {
            let run = output_with(&rollout, &ssh);
            assert_eq!(run.status, 4, "{ssh}: {}{}", run.stdout, run.stderr);
            has(&run.stderr, want);
            assert_eq!(rollout.in_pool(), [false], "a step ran");
        }
    }
    // A command that does not parse is named, never replaced by plain ssh.
    let run = output_with(&rollout, "ssh -F 'unclosed");
    assert_eq!(run.status, 4, "{}{}", run.stdout, run.stderr);
    has(
        &run.stderr,
        "RUNNER_SSH_COMMAND `ssh -F 'unclosed` does not read as a command line",
    );
    assert!(!run.stderr.contains("host key"), "{}", run.stderr);
}

fn output_with(rollout: &Rollout, ssh: &str) -> Run {
    let mut command = rollout.test.command();
    command
        .args(["apply", "plan.toml"])
        .env("RUNNER_SSH_COMMAND", ssh);
    crate::common::output(command)
}

#[test]
fn runner_s_sockets_never_go_into_a_folder_others_can_write() {
    use std::os::unix::fs::PermissionsExt as _;
    let users = Users::create();
    let (uid, gid) = Users::ids(&users.nobody);
    let rollout = Rollout::new(1, "root", "0");
    let victim = rollout.test.path_of("victim");
    let ssh = rollout.test.path_of(".runner/ssh");
    let runtime = rollout.test.path_of("runtime");
    // `.runner/ssh` open to all, then another user's, with links planted where
    // sockets would go; a runtime folder (`$XDG_RUNTIME_DIR`) open to all too.
    for theirs in [false, true] {
        for dir in [&ssh, &runtime] {
            let _ = std::fs::remove_dir_all(dir);
            std::fs::create_dir_all(dir).expect("folder");
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
            for name in ["0.ctl", "0.sock", "0.log"] {
                std::os::unix::fs::symlink(&victim, dir.join(name)).expect("link");
            }
        }
        if theirs {
            std::os::unix::fs::chown(&ssh, Some(uid), Some(gid)).expect("chown");
            std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        }
        let mut command = rollout.test.command();
        command
            .args(["apply", "plan.toml"])
            .env("XDG_RUNTIME_DIR", &runtime);
        let run = crate::common::output(command);
        assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
        assert!(
            !victim.exists(),
            "a socket or log went through a planted link"
        );
        for dir in [&ssh, &runtime] {
            let names: Vec<String> = std::fs::read_dir(dir)
                .expect("folder")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(names.len(), 3, "runner used {}: {names:?}", dir.display());
        }
    }
}

#[test]
fn a_local_engine_is_locked_per_engine_whatever_folder_the_plan_is_in() {
    let plan = "[plan]\nname = \"local engine\"\n\n[hosts.here]\ndocker = \"unix:///run/docker.sock\"\nroles = [\"web\"]\n\n[steps.hold]\nkind = \"shell\"\non = \"web\"\nrun = \"touch started && sleep 30\"\n";
    let one = Test::new().plan(plan);
    let two = Test::new().plan(plan);
    let mut first = background(&one, &["apply", "plan.toml"], &[]);
    wait_until(
        "the first run holds the engine",
        Duration::from_secs(30),
        || one.path_of("started").exists(),
    );
    let second = two.run_with(&["apply", "plan.toml"]);
    // The engine's lock is closed to other users: none can hold it to block
    // a deploy (one an earlier runner left open is closed).
    let locks: Vec<_> = std::fs::read_dir("/run/lock")
        .expect("/run/lock")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("runner-engine-unix____run_docker.sock")
        })
        .collect();
    let _ = first.kill();
    let _ = first.wait();
    assert_eq!(second.status, 4, "{}{}", second.stdout, second.stderr);
    has(
        &second.stderr,
        "another run holds this machine's lock for the engine unix:///run/docker.sock",
    );
    assert!(!two.path_of("started").exists());
    assert_eq!(locks.len(), 1);
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = locks[0].metadata().expect("the lock").permissions().mode();
        assert_eq!(mode & 0o007, 0, "{mode:o}");
    }
}

#[test]
fn a_host_script_too_deep_to_check_is_a_finding_and_leaves_nothing_behind() {
    let rollout = Rollout::new(1, "root", "0");
    let deep = format!("{}true{}", "{ ".repeat(1500), " ; }".repeat(1500));
    edit(
        &rollout,
        "[steps.smoke]",
        &format!(
            "[steps.deep]\nkind = \"shell\"\non = \"web\"\nneeds = [\"check\"]\nrun = \"{deep}\"\n\n[steps.smoke]"
        ),
    );
    let before = socket_folders();
    let run = rollout.apply(&[]);
    assert_eq!(run.status, 4, "{}{}", run.stdout, run.stderr);
    has(
        &run.stderr,
        "step `deep@rth1` (on the host): its script nests blocks about 1500 deep",
    );
    assert_eq!(socket_folders(), before, "a socket folder was left behind");
    assert_eq!(rollout.in_pool(), [false]);
}

/// No record, no deploy, on hosts too: a runs folder runner cannot write stops
/// the run before it reaches any host, and leaves no host locked.
#[test]
fn a_deploy_to_hosts_that_cannot_write_its_record_changes_nothing() {
    let rollout = Rollout::new(1, "root", "0");
    // As root no mode keeps runner out: a file where the folder goes does.
    std::fs::create_dir_all(rollout.test.path_of(".runner")).expect("state");
    std::fs::write(rollout.test.path_of(".runner/runs"), "").expect("a file");
    let run = rollout.apply(&[]);
    assert_eq!(run.status, 4, "{}{}", run.stdout, run.stderr);
    has(&run.stderr, "cannot write the run's record to");
    has(&run.stderr, "nothing was run");
    assert_eq!(rollout.in_pool(), [false], "a step ran");
    assert!(
        !flocked(&rollout.hosts.lock_of(1, PLAN)),
        "a host stayed locked"
    );
}

#[test]
fn lock_wait_waits_for_the_run_that_holds_a_host_and_says_whose() {
    let rollout = Rollout::new(1, "root", "0");
    slow_drain(&rollout, 5);
    // The same plan in another file: only the host's lock is shared.
    let plan = std::fs::read_to_string(rollout.test.path_of("plan.toml")).expect("plan");
    std::fs::write(rollout.test.path_of("other.toml"), plan).expect("plan");
    let mut first = background(&rollout.test, &["apply", "plan.toml"], &[]);
    let lock = rollout.hosts.lock_of(1, PLAN);
    wait_until(
        "the first run holds the host",
        Duration::from_secs(60),
        || flocked(&lock),
    );
    let second = rollout
        .test
        .run_with(&["apply", "other.toml", "--lock-wait", "90s"]);
    let first_code = exit_within(&mut first, Duration::from_secs(60));
    assert_eq!(first_code, 0, "{}", output_of(&rollout.test));
    assert_eq!(second.status, 0, "{}{}", second.stdout, second.stderr);
    has(
        &second.stderr,
        "host rth1: waiting up to 1m 30s for its lock for plan `rolling`, held by run ",
    );
    has(&second.stderr, "host rth1: took its lock after");
}
