//! The real Docker engine in tests: unique names, images built FROM scratch with
//! the host's static busybox, and a guard that removes what a test made.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use super::{Run, Test, output, repo};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name no other test (or test run) uses.
pub(crate) fn unique(tag: &str) -> String {
    format!(
        "rt{}-{tag}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

pub(crate) fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker must be installed: these tests need a Docker engine")
}

/// Runs docker and returns its stdout; panics with its stderr on failure.
pub(crate) fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes what a test made, even when it panics.
#[derive(Default)]
pub(crate) struct Cleanup {
    pub containers: Vec<String>,
    pub images: Vec<String>,
    /// A demo app: `teardown.sh APP IMAGE`.
    pub demo: Option<(std::path::PathBuf, String)>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some((dir, name)) = &self.demo {
            let _ = Command::new(dir.join("demo/teardown.sh"))
                .args([name, name])
                .env("DOCKER_CMD", "docker")
                .output();
        }
        for c in &self.containers {
            let _ = docker(&["rm", "-f", c]);
        }
        for i in &self.images {
            let _ = docker(&["rmi", "-f", i]);
        }
    }
}

/// Builds `tag` FROM scratch with the host's static busybox, plus `extra`
/// Dockerfile lines and `files` (path in the context, content).
///
/// Without the build cache, and without a `RUN` of its own: an image shares no
/// layer with another test's, whose `rmi` could then remove it mid-build or
/// leave it behind.
pub(crate) fn busybox_image(tag: &str, extra: &str, files: &[(&str, &[u8])]) {
    super::machine::ready();
    let ctx = tempfile::tempdir().expect("context");
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static must be installed (apt-get install busybox-static)");
    let bin = ctx.path().join("rootfs/bin");
    std::fs::create_dir_all(&bin).expect("rootfs");
    std::fs::copy(busybox, bin.join("busybox")).expect("copy busybox");
    let list = Command::new(busybox)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("applet link");
        }
    }
    for (path, content) in files {
        let path = ctx.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("folders");
        std::fs::write(&path, content).expect("file");
        // Executables among them (curl) must stay executable.
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(&path, mode).expect("chmod");
    }
    let dockerfile = format!("FROM scratch\nCOPY rootfs/ /\n{extra}\n");
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).expect("Dockerfile");
    docker_ok(&[
        "build",
        "-q",
        "--no-cache",
        "-t",
        tag,
        ctx.path().to_str().expect("utf-8"),
    ]);
}

/// A port on 127.0.0.1 that nothing listens on right now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// GET from the host: the status and body, or why there was none.
pub(crate) fn get(url: &str) -> Result<(u16, String), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Ok((status, body))
}

pub(crate) fn start(cleanup: &mut Cleanup, image: &str, publish: Option<u16>) -> String {
    let name = unique("c");
    let mut args = vec!["run", "-d", "--name", &name];
    let port;
    if let Some(p) = publish {
        port = format!("127.0.0.1:{p}:3000");
        args.extend(["-p", &port]);
    }
    args.push(image);
    docker_ok(&args);
    cleanup.containers.push(name.clone());
    name
}

/// A running container of busybox that sleeps, and its image, both removed by
/// `cleanup`; returns the container's name.
pub(crate) fn sleeper(cleanup: &mut Cleanup, tag: &str) -> String {
    let image = unique(tag) + ":t";
    busybox_image(&image, "CMD [\"sleep\", \"3600\"]", &[]);
    cleanup.images.push(image.clone());
    start(cleanup, &image, None)
}

/// Two users made for one test and removed after it: one without docker access
/// but allowed `sudo -n docker`, one with neither.
pub(crate) struct Users {
    pub(crate) sudoer: String,
    pub(crate) nobody: String,
    sudoers_file: std::path::PathBuf,
}

impl Users {
    pub(crate) fn create() -> Self {
        super::machine::ready();
        // Unique among the tests running at once in this process, too.
        let id = format!(
            "{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let users = Self {
            sudoer: format!("rt-sudo-{id}"),
            nobody: format!("rt-none-{id}"),
            sudoers_file: format!("/etc/sudoers.d/runner-test-{id}").into(),
        };
        for user in [&users.sudoer, &users.nobody] {
            let out = Command::new("useradd")
                .args(["--no-create-home", "--shell", "/bin/sh", user])
                .output()
                .expect("useradd (the tests run as root)");
            assert!(
                out.status.success(),
                "useradd {user}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let docker_path = which::which("docker").expect("docker on PATH");
        std::fs::write(
            &users.sudoers_file,
            format!(
                "{} ALL=(root) NOPASSWD: {}\n",
                users.sudoer,
                docker_path.display()
            ),
        )
        .expect("write the sudoers rule");
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o440);
        std::fs::set_permissions(&users.sudoers_file, mode).expect("chmod sudoers");
        users
    }

    /// Lets the sudoer log in over ssh with a key (a new account is locked).
    pub(crate) fn allow_ssh_login(&self) {
        let out = Command::new("usermod")
            .args(["-p", "*", &self.sudoer])
            .output()
            .expect("usermod");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Puts the sudoer in the hosts' deploy group (`runner`, made when this
    /// machine has none; the test hosts share its users), which may take
    /// runner's lock on a host besides root.
    pub(crate) fn join_deploy_group(&self) {
        // Other tests change the users' files at once: each tries again a moment.
        let retried = |program: &str, args: &[&str]| {
            let mut last = String::new();
            for _ in 0..50 {
                let out = Command::new(program).args(args).output().expect(program);
                if out.status.success() {
                    return;
                }
                last = String::from_utf8_lossy(&out.stderr).into_owned();
                std::thread::sleep(Duration::from_millis(100));
            }
            panic!("{program} {args:?}: {last}");
        };
        retried("groupadd", &["-f", "runner"]);
        retried("usermod", &["-aG", "runner", &self.sudoer]);
    }

    /// Lets sudo keep the docker variables for the sudoer, as the help says.
    pub(crate) fn keep_docker_env(&self) {
        let rule = std::fs::read_to_string(&self.sudoers_file).expect("read the sudoers rule");
        let keep = format!(
            "Defaults:{} env_keep += \"DOCKER_HOST DOCKER_CONTEXT DOCKER_CONFIG\"\n",
            self.sudoer
        );
        std::fs::write(&self.sudoers_file, keep + &rule).expect("write the sudoers rule");
    }

    pub(crate) fn ids(user: &str) -> (u32, u32) {
        let id = |flag: &str| {
            let out = Command::new("id").args([flag, user]).output().expect("id");
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("numeric id")
        };
        (id("-u"), id("-g"))
    }
}

impl Drop for Users {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.sudoers_file);
        for user in [&self.sudoer, &self.nobody] {
            // userdel refuses a user who still runs something (a `sudo docker`
            // whose runner was killed): end it first, and try again a moment.
            for _ in 0..20 {
                let _ = Command::new("pkill").args(["-KILL", "-U", user]).output();
                let out = Command::new("userdel").arg(user).output();
                if out.is_ok_and(|o| o.status.success()) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Runs runner as `user` (its own groups only) in the test's folder, given to
/// that user.
pub(crate) fn run_as(test: &Test, user: &str, env: &[(&str, &str)]) -> Run {
    output(command_as(test, user, env))
}

/// The runner command as `user`, ready to run or spawn.
pub(crate) fn command_as(test: &Test, user: &str, env: &[(&str, &str)]) -> Command {
    let (uid, gid) = Users::ids(user);
    let chown = Command::new("chown")
        .args([
            "-R",
            &format!("{uid}:{gid}"),
            test.dir.path().to_str().expect("utf-8"),
        ])
        .status()
        .expect("chown");
    assert!(chown.success());
    let runner = test.command();
    let mut command = Command::new("setpriv");
    command
        .args([
            format!("--reuid={uid}"),
            format!("--regid={gid}"),
            "--clear-groups".into(),
            "--".into(),
        ])
        .arg(runner.get_program())
        .args(runner.get_args())
        .current_dir(test.dir.path())
        .env_remove("DOCKER_CMD")
        .env("HOME", test.dir.path())
        .env("PATH", "/usr/local/bin:/usr/bin:/bin");
    for (k, v) in runner.get_envs() {
        if let Some(v) = v {
            command.env(k, v);
        }
    }
    for (k, v) in env {
        command.env(k, v);
    }
    command
}

pub(crate) fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("folder");
    for entry in std::fs::read_dir(from).expect("read folder") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// The newest record of the test's runs.
pub(crate) fn record(test: &Test) -> Value {
    crate::common::records(test).pop().expect("a record")
}

/// The demo plan and its scripts in a test folder, with names of its own.
pub(crate) struct Demo {
    // Dropped first: the teardown script lives in the test's folder.
    _cleanup: Cleanup,
    pub(crate) test: Test,
    pub(crate) name: String,
    pub(crate) port: u16,
}

impl Demo {
    pub(crate) fn new(tag: &str) -> Self {
        let name = unique(tag);
        let port = free_port();
        let test = Test::new()
            .env("DEMO_APP", &name)
            .env("DEMO_IMAGE", &name)
            .env("DEMO_PORT", &port.to_string());
        std::fs::copy(repo().join("plans/demo.toml"), test.path_of("demo.toml")).expect("plan");
        copy_tree(&repo().join("plans/demo"), &test.path_of("demo"));
        let mut cleanup = Cleanup::default();
        cleanup.demo = Some((test.dir.path().to_owned(), name.clone()));
        Self {
            test,
            name,
            port,
            _cleanup: cleanup,
        }
    }

    pub(crate) fn apply(&self, args: &[&str]) -> Run {
        let mut all = vec!["apply", "demo.toml"];
        all.extend(args);
        self.test.run_with(&all)
    }

    pub(crate) fn up(&self) -> Result<(u16, String), String> {
        get(&format!("http://127.0.0.1:{}/cgi-bin/up", self.port))
    }

    pub(crate) fn maintenance_status(&self) -> String {
        super::maintenance_status(&self.test, "demo.toml")
    }
}

pub(crate) const MAINTENANCE_PAGE: &str = "We'll be right back";

/// A client that GETs the demo's proxy every 20 ms (at most 3,000 times)
/// until it is finished: every answer, in order.
pub(crate) struct Poller {
    stop: Arc<AtomicBool>,
    /// Answers (or failures) so far.
    asked: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<Vec<Result<(u16, String), String>>>,
}

impl Poller {
    pub(crate) fn start(port: u16) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let asked = Arc::new(AtomicUsize::new(0));
        let url = format!("http://127.0.0.1:{port}/cgi-bin/up");
        let thread = {
            let stop = Arc::clone(&stop);
            let asked = Arc::clone(&asked);
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                for _ in 0..3000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    seen.push(get(&url).map(|(s, body)| (s, body.trim().to_owned())));
                    asked.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                }
                seen
            })
        };
        Self {
            stop,
            asked,
            thread,
        }
    }

    /// Every answer; ten more after the run, so its end is seen too.
    pub(crate) fn finish(self) -> Vec<Result<(u16, String), String>> {
        let until = self.asked.load(Ordering::SeqCst) + 10;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.asked.load(Ordering::SeqCst) < until && !self.thread.is_finished() {
            assert!(
                std::time::Instant::now() < deadline,
                "the poller stopped asking"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("poller")
    }
}

/// The answers that were not a 200.
pub(crate) fn not_ok(
    seen: &[Result<(u16, String), String>],
) -> Vec<&Result<(u16, String), String>> {
    seen.iter().filter(|a| !matches!(a, Ok((200, _)))).collect()
}
