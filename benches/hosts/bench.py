#!/usr/bin/env python3
"""Several hosts, measured in one run on test hosts of this machine.

    cargo build --release && python3 benches/hosts/bench.py [--runs N]

Needs root, Docker, OpenSSH's server and client, iproute2 (as the tests do).
Three test hosts come up (benches/hosts/hosts.sh: network namespaces, each with
its own dockerd and sshd) and everything goes at the end.

1. A `docker-exec` step running `true`, as runner steps: 20 in a chain with
   --jobs 1, the median step duration from the records, over --runs runs of:
   - local:     the container on this machine's engine;
   - reuse:     on a host through `[hosts]` (runner's own ssh connection, the
                host's socket forwarded over it);
   - relay:     the same host reached as a user with only `sudo -n docker`
                (each docker connection a session on runner's connection);
   - no reuse:  `DOCKER_HOST=ssh://…`, docker's own ssh transport: two new
                ssh connections per `docker exec`.
   Target: reuse <= 1.3 x local.
2. Wall time of a rolling deploy (ship the image, start the release beside
   the running one, switch without a gap, probe it) to one host, then to
   three hosts with serial = 1 and with serial = 3; each deploy alternates
   between two releases the hosts already have (the image is not sent again),
   median of --runs. Target: serial = 3 <= 1.2 x one host. Beside it, the
   floor: the same docker commands by hand on each host's own socket, one
   host, then three at once.
"""

import argparse
import json
import os
import glob
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RUNNER = os.path.join(ROOT, "target", "release", "runner")
STEPS = 20
SUDOER = "rtbench"


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True, **kw)


def image(tag, cmd, files):
    """A FROM scratch image of the host's static busybox."""
    ctx = tempfile.mkdtemp()
    try:
        os.makedirs(f"{ctx}/rootfs/bin")
        shutil.copy("/bin/busybox", f"{ctx}/rootfs/bin/busybox")
        for applet in sh("/bin/busybox --list").stdout.split():
            if applet != "busybox":
                os.symlink("busybox", f"{ctx}/rootfs/bin/{applet}")
        for path, text in files.items():
            os.makedirs(os.path.dirname(f"{ctx}/rootfs{path}"), exist_ok=True)
            with open(f"{ctx}/rootfs{path}", "w") as f:
                f.write(text)
            os.chmod(f"{ctx}/rootfs{path}", 0o755)
        with open(f"{ctx}/Dockerfile", "w") as f:
            f.write(f"FROM scratch\nCOPY rootfs/ /\nCMD {json.dumps(cmd)}\n")
        sh(f"docker build -q -t {tag} {ctx}")
    finally:
        shutil.rmtree(ctx)


def host_docker(hosts, i, args):
    env = dict(os.environ, DOCKER_HOST=f"unix://{hosts}/rth{i}/run/docker.sock")
    return subprocess.run(f"docker {args}", shell=True, check=True, capture_output=True,
                          text=True, env=env)


def apply(plan, env, args=()):
    out = subprocess.run([RUNNER, "apply", plan, "--jobs", "1", *args], capture_output=True,
                         text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"runner failed on {plan}:\n{out.stdout}{out.stderr}")
    runs = sorted(glob.glob(os.path.join(os.path.dirname(plan), ".runner", "runs", "*.json")),
                  key=os.path.getmtime)
    with open(runs[-1]) as f:
        return json.load(f)


def exec_plan(path, hosts_section, container):
    on = 'on = "web"\n' if hosts_section else ""
    steps = []
    for i in range(STEPS):
        needs = f'needs = ["e{i - 1:02}"]\n' if i else ""
        steps.append(f'[steps.e{i:02}]\nkind = "docker-exec"\n{on}{needs}'
                     f'container = "{container}"\ncommand = ["true"]\n')
    with open(path, "w") as f:
        f.write(f'[plan]\nname = "exec"\n\n{hosts_section}\n' + "\n".join(steps))


def exec_bench(work, hosts, runs, base_env, bench_image):
    local = f"rtbench-exec-{os.getpid()}"
    sh(f"docker run -d --name {local} {bench_image} sleep 3600")
    try:
        host_docker(hosts, 1, f"run -d --name bench {bench_image} sleep 3600")
        cases = {}
        os.makedirs(f"{work}/local", exist_ok=True)
        exec_plan(f"{work}/local/plan.toml", "", local)
        cases["local"] = (f"{work}/local/plan.toml", base_env)
        os.makedirs(f"{work}/reuse", exist_ok=True)
        exec_plan(f"{work}/reuse/plan.toml",
                  '[hosts.rth1]\ndocker = "ssh://root@10.77.0.11"\nroles = ["web"]\n', "bench")
        cases["reuse"] = (f"{work}/reuse/plan.toml", base_env)
        os.makedirs(f"{work}/relay", exist_ok=True)
        exec_plan(f"{work}/relay/plan.toml",
                  f'[hosts.rth1]\ndocker = "ssh://{SUDOER}@10.77.0.11"\nroles = ["web"]\n', "bench")
        cases["relay"] = (f"{work}/relay/plan.toml", base_env)
        # docker's own transport runs `ssh` from PATH: a wrapper gives it the
        # test hosts' config (OpenSSH reads ~/.ssh/config from the passwd home).
        os.makedirs(f"{work}/bin", exist_ok=True)
        with open(f"{work}/bin/ssh", "w") as f:
            f.write(f'#!/bin/sh\nexec /usr/bin/ssh -F {hosts}/ssh_config "$@"\n')
        os.chmod(f"{work}/bin/ssh", 0o755)
        os.makedirs(f"{work}/noreuse", exist_ok=True)
        exec_plan(f"{work}/noreuse/plan.toml", "", "bench")
        cases["no reuse"] = (f"{work}/noreuse/plan.toml",
                             dict(base_env, DOCKER_HOST="ssh://root@10.77.0.11",
                                  PATH=f"{work}/bin:" + base_env["PATH"]))
        results = {}
        for name, (plan, env) in cases.items():
            per_step = []
            for _ in range(runs):
                record = apply(plan, env)
                per_step += [s["duration_ms"] for s in record["steps"]]
            results[name] = statistics.median(per_step)
        return results
    finally:
        subprocess.run(f"docker rm -f {local}", shell=True, capture_output=True)


# The tests' rolling deploy (benches/hosts/rolling.template.toml).
with open(os.path.join(HERE, "rolling.template.toml")) as f:
    ROLL = f.read()
with open(os.path.join(HERE, "front.cgi")) as f:
    FRONT = f.read()


def roll_bench(work, runs, env, app):
    def plan(name, count, serial):
        os.makedirs(f"{work}/{name}/pool", exist_ok=True)
        hosts = "".join(f'[hosts.rth{i}]\ndocker = "ssh://root@10.77.0.1{i}"\nroles = ["web"]\n'
                        for i in range(1, count + 1))
        text = (ROLL.replace("IMAGE", app).replace("POOL", f"{work}/{name}/pool")
                .replace("HOSTS", hosts).replace("SERIAL", str(serial))
                .replace("MAX_FAIL", "0"))
        path = f"{work}/{name}/plan.toml"
        with open(path, "w") as f:
            f.write(text)
        return path

    cases = {"1 host": plan("one", 1, 1), "3 hosts, serial = 1": plan("serial1", 3, 1),
             "3 hosts, serial = 3": plan("serial3", 3, 3)}
    results = {}
    for name, path in cases.items():
        # Both releases on every host first: the measured deploys send no image.
        for version in ("v1", "v2"):
            subprocess.run([RUNNER, "apply", path, "--var", f"version={version}"],
                           capture_output=True, env=env, check=True)
        times, busy = [], []
        for r in range(runs):
            version = "v1" if r % 2 == 0 else "v2"
            start, cpu = time.monotonic(), cpu_busy()
            out = subprocess.run([RUNNER, "apply", path, "--var", f"version={version}"],
                                 capture_output=True, text=True, env=env)
            times.append(time.monotonic() - start)
            busy.append(busy_share(cpu, cpu_busy()))
            if out.returncode != 0:
                sys.exit(f"deploy failed:\n{out.stdout}{out.stderr}")
        results[name] = (statistics.median(times), statistics.median(busy))
    return results


FLOOR = """
export DOCKER_HOST=unix://HOSTS/rthN/run/docker.sock
i=IMAGE:VERSION
docker image inspect --format '{{.Id}}' -- $i >/dev/null
DOCKER_HOST= docker image inspect --format '{{.Id}}' -- $i >/dev/null
docker network inspect app-net >/dev/null 2>&1 || docker network create app-net >/dev/null
docker container inspect app-front >/dev/null 2>&1 ||
  docker run -d --name app-front --network app-net -p 8080:8080 $i httpd -f -p 8080 -h /front >/dev/null
docker rm -f app-next app-previous >/dev/null 2>&1 || true
docker run -d --init --name app-next --network app-net $i >/dev/null
until docker exec app-next wget -q -O /dev/null http://127.0.0.1:8080/; do sleep 0.25; done
docker network disconnect app-net app-next
docker network connect --alias app app-net app-next
sleep 0.3
if docker container inspect app >/dev/null 2>&1; then docker rename app app-previous; fi
docker rename app-next app
docker stop --time=2 app-previous >/dev/null 2>&1 || true
docker exec app wget -q -O /dev/null http://127.0.0.1:8080/
touch POOL/rthN
"""


def cpu_busy():
    """The machine's busy and total CPU time so far (jiffies, all cores)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def busy_share(before, after):
    return (after[0] - before[0]) / max(1, after[1] - before[1])


def floor_bench(work, hosts, runs, app):
    """The same deploy by hand: the same docker commands on each host's own
    socket (no ssh, no runner), one host, then three at once."""
    os.makedirs(f"{work}/floor", exist_ok=True)

    def deploy(count, version):
        procs = [subprocess.Popen(["sh", "-c", FLOOR.replace("HOSTS", hosts)
                                   .replace("rthN", f"rth{i}").replace("IMAGE", app)
                                   .replace("VERSION", version).replace("POOL", f"{work}/floor")])
                 for i in range(1, count + 1)]
        for p in procs:
            if p.wait() != 0:
                sys.exit("the deploy by hand failed")

    results = {}
    for count in (1, 3):
        times, busy = [], []
        for r in range(runs):
            start, cpu = time.monotonic(), cpu_busy()
            deploy(count, "v1" if r % 2 == 0 else "v2")
            times.append(time.monotonic() - start)
            busy.append(busy_share(cpu, cpu_busy()))
        results[count] = (statistics.median(times), statistics.median(busy))
    return results


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    if os.geteuid() != 0:
        sys.exit("run as root: the test hosts are network namespaces")
    if not os.access(RUNNER, os.X_OK):
        sys.exit("build runner first: cargo build --release")
    work = tempfile.mkdtemp(prefix="rtb-")
    os.chmod(work, 0o755)
    hosts = f"{work}/h"
    tag = f"rtbench-{os.getpid()}"
    made_user = False
    try:
        # Whatever an interrupted run left (the hosts have fixed names).
        subprocess.run(f"sh {HERE}/hosts.sh down {hosts}", shell=True, capture_output=True)
        sh(f"sh {HERE}/hosts.sh up 3 {hosts}")
        if subprocess.run(["id", SUDOER], capture_output=True).returncode != 0:
            sh(f"useradd --no-create-home --shell /bin/sh {SUDOER}")
            made_user = True
        # A new account is locked; sshd then refuses its key.
        sh(f"usermod -p '*' {SUDOER}")
        with open(f"/etc/sudoers.d/{SUDOER}", "w") as f:
            f.write(f"{SUDOER} ALL=(root) NOPASSWD: {shutil.which('docker')}\n")
        os.chmod(f"/etc/sudoers.d/{SUDOER}", 0o440)
        env = dict(os.environ, RUNNER_SSH_COMMAND=f"ssh -F {hosts}/ssh_config", NO_COLOR="1")
        image(f"{tag}-exec", ["sleep", "3600"], {})
        for version in ("v1", "v2"):
            image(f"{tag}-app:{version}", ["httpd", "-f", "-p", "8080", "-h", "/srv"],
                  {"/srv/index.html": version, "/front/cgi-bin/index.cgi": FRONT})
        sh(f"docker save {tag}-exec | DOCKER_HOST=unix://{hosts}/rth1/run/docker.sock docker load")
        ex = exec_bench(work, hosts, runs, env, f"{tag}-exec")
        roll = roll_bench(work, runs, env, f"{tag}-app")
        floor = floor_bench(work, hosts, runs, f"{tag}-app")
        print(f"docker-exec `true` as a runner step, median of {STEPS} x {runs}:")
        for name, ms in ex.items():
            print(f"  {name:<9} {ms:6.0f} ms  ({ms / ex['local']:.2f} x local)")
        print(f"rolling deploy, wall time, median of {runs}:")
        one = roll["1 host"][0]
        for name, (secs, busy) in roll.items():
            print(f"  {name:<20} {secs:5.2f} s  ({secs / one:.2f} x one host)"
                  f"  CPUs busy {busy:.0%}")
        print(f"the same deploy by hand (docker on each host's own socket), median of {runs}:")
        print(f"  1 host               {floor[1][0]:5.2f} s                    CPUs busy {floor[1][1]:.0%}")
        print(f"  3 hosts at once      {floor[3][0]:5.2f} s  ({floor[3][0] / floor[1][0]:.2f} x one host)"
              f"  CPUs busy {floor[3][1]:.0%}")
    finally:
        if os.environ.get("KEEP"): time.sleep(60)
        subprocess.run(f"sh {HERE}/hosts.sh down {hosts}", shell=True, capture_output=True)
        subprocess.run(f"docker rmi -f {tag}-exec {tag}-app:v1 {tag}-app:v2", shell=True,
                       capture_output=True)
        if os.path.exists(f"/etc/sudoers.d/{SUDOER}"):
            os.remove(f"/etc/sudoers.d/{SUDOER}")
        if made_user:
            subprocess.run(["userdel", SUDOER], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
