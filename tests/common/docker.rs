//! The real Docker engine in tests: unique names, images built FROM scratch with
//! the host's static busybox, and a guard that removes what a test made.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

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
pub(crate) fn busybox_image(tag: &str, extra: &str, files: &[(&str, &[u8])]) {
    let ctx = tempfile::tempdir().expect("context");
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static must be installed (apt-get install busybox-static)");
    std::fs::copy(busybox, ctx.path().join("busybox")).expect("copy busybox");
    for (path, content) in files {
        let path = ctx.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("folders");
        std::fs::write(&path, content).expect("file");
        // Executables among them (curl) must stay executable.
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(&path, mode).expect("chmod");
    }
    let dockerfile = format!(
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n{extra}\n"
    );
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).expect("Dockerfile");
    docker_ok(&[
        "build",
        "-q",
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
