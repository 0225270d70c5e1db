//! The rolling deploy of `benches/hosts/rolling.template.toml` on test hosts:
//! two releases of an app that says its version, and the plan that rolls them
//! out, for the several-hosts tests.

use std::path::PathBuf;

use super::docker::{Cleanup, busybox_image, unique};
use super::hosts::Hosts;
use super::{Run, Test};

/// Two releases of an app that says its version (and carries each host's
/// front), and the plan that rolls it out: each host gets the image, starts
/// the release beside the running one, switches without a gap (the old
/// container kept to roll back to), and is checked; it leaves the proxy's
/// pool only with `leave_pool=yes`.
pub(crate) struct Rollout {
    pub(crate) hosts: Hosts,
    pub(crate) test: Test,
    pub(crate) image: String,
    pub(crate) pool: PathBuf,
    _cleanup: Cleanup,
}

/// The plan, shared with benches/hosts/bench.py.
pub(crate) fn template() -> String {
    std::fs::read_to_string(crate::common::repo().join("benches/hosts/rolling.template.toml"))
        .expect("benches/hosts/rolling.template.toml")
}

impl Rollout {
    pub(crate) fn new(count: usize, user: &str, max_fail: &str) -> Self {
        Self::with_serial(count, user, max_fail, 1)
    }

    pub(crate) fn with_serial(count: usize, user: &str, max_fail: &str, serial: usize) -> Self {
        let hosts = Hosts::up(count);
        let image = unique("roll");
        let mut cleanup = Cleanup::default();
        let front = std::fs::read(crate::common::repo().join("benches/hosts/front.cgi"))
            .expect("benches/hosts/front.cgi");
        for version in ["v1", "v2"] {
            let tag = format!("{image}:{version}");
            busybox_image(
                &tag,
                r#"CMD ["httpd", "-f", "-p", "8080", "-h", "/srv"]"#,
                &[
                    ("rootfs/srv/index.html", version.as_bytes()),
                    ("rootfs/front/cgi-bin/index.cgi", &front),
                ],
            );
            cleanup.images.push(tag);
        }
        let test = Test::new();
        let pool = test.path_of("pool");
        std::fs::create_dir_all(&pool).expect("pool");
        let plan = template()
            .replace("IMAGE", &image)
            .replace("POOL", &pool.display().to_string())
            .replace("HOSTS", &hosts.section(user))
            .replace("MAX_FAIL", max_fail)
            .replace("SERIAL", &serial.to_string());
        let test = test
            .plan(&plan)
            .env("RUNNER_SSH_COMMAND", &hosts.ssh_command());
        Self {
            hosts,
            test,
            image,
            pool,
            _cleanup: cleanup,
        }
    }

    pub(crate) fn apply(&self, vars: &[&str]) -> Run {
        let mut args = vec!["apply", "plan.toml"];
        for var in vars {
            args.extend(["--var", var]);
        }
        self.test.run_with(&args)
    }

    /// What each host's `app` container serves, read on the host itself.
    pub(crate) fn versions(&self) -> Vec<String> {
        (1..=self.hosts.count)
            .map(|i| {
                let out = self.hosts.docker(
                    i,
                    &["exec", "app", "wget", "-q", "-O-", "http://127.0.0.1:8080/"],
                );
                String::from_utf8_lossy(&out.stdout).trim().to_owned()
            })
            .collect()
    }

    pub(crate) fn in_pool(&self) -> Vec<bool> {
        (1..=self.hosts.count)
            .map(|i| self.pool.join(format!("rth{i}")).exists())
            .collect()
    }
}
