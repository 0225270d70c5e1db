#!/usr/bin/env python3
"""Docker benchmarks against this machine's engine, in one run.

    cargo build --release && python3 benches/docker.py [--runs N]

1. Zero hard downtime: the demo app (plans/demo.toml) is provisioned and
   deployed once, then deployed again (to v3) while a client on loopback GETs the
   proxy every 20 ms. Every answer is counted: 200, the 503 maintenance page,
   anything else, connection errors. The client is bounded (at most 3,000
   requests) and stops when the deploy ends. From that deploy's record: the
   maintenance window, over the time of the steps that need it (switch and
   migrate), and what else ran inside it.
2. docker-exec overhead: a plan of 20 `docker-exec` steps (`true` in a running
   container) in a chain with --jobs 1, beside a shell loop of the same 20 bare
   `docker exec` commands. The ratio is runner's time over the loop's, whole
   runs (runner's start-up and docker probe included), median of --runs.

Everything made here (containers, network, volume, images) has a name of its own
and is removed at the end. Nothing here is a test: the figures go to the README.
"""

import argparse
import glob
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, "target", "release", "runner")
EXEC_STEPS = 20
# The demo's steps that need users kept out: the app is replaced, the schema changes.
NEED_WINDOW = ("switch", "migrate")


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True, **kw)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(port, stop, counts):
    for _ in range(3000):
        if stop.is_set():
            return
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/cgi-bin/up")
            resp = conn.getresponse()
            body = resp.read().decode(errors="replace")
            conn.close()
            if resp.status == 200:
                counts["200"] += 1
            elif resp.status == 503 and "right back" in body:
                counts["503 maintenance page"] += 1
            else:
                counts[f"other ({resp.status})"] = counts.get(f"other ({resp.status})", 0) + 1
        except OSError as e:
            counts["connection errors"] += 1
            counts.setdefault("errors seen", []).append(str(e))
        time.sleep(0.02)


def downtime(work):
    name = f"bench-{os.getpid()}"
    port = free_port()
    shutil.copy(os.path.join(ROOT, "plans", "demo.toml"), work)
    shutil.copytree(os.path.join(ROOT, "plans", "demo"), os.path.join(work, "demo"))
    env = dict(os.environ, DEMO_APP=name, DEMO_IMAGE=name, DEMO_PORT=str(port))
    env.pop("DOCKER_CMD", None)
    try:
        subprocess.run([RUNNER, "apply", "demo.toml"], cwd=work, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        counts = {"200": 0, "503 maintenance page": 0, "connection errors": 0}
        stop = threading.Event()
        client = threading.Thread(target=poll, args=(port, stop, counts))
        client.start()
        start = time.perf_counter()
        subprocess.run([RUNNER, "apply", "demo.toml", "--var", "version=v3"], cwd=work,
                       env=env, check=True, stdout=subprocess.DEVNULL)
        took = time.perf_counter() - start
        stop.set()
        client.join()
        return took, counts, window(work)
    finally:
        subprocess.run([os.path.join(work, "demo", "teardown.sh"), name, name],
                       env=dict(env, DOCKER_CMD="docker"), stdout=subprocess.DEVNULL)


def window(work):
    """The last run's maintenance window (ms), the time of the steps that need
    it, and every step (or hook) that ran inside it, from its record."""
    last = sorted(glob.glob(os.path.join(work, ".runner", "runs", "*.json")))[-1]
    with open(last) as f:
        record = json.load(f)
    (w,) = record["maintenance"]
    inside = []
    for step in record["steps"]:
        if step.get("started_ms") is None or step.get("ended_ms") is None:
            continue
        if step["started_ms"] >= w["from_ms"] and step["ended_ms"] <= w["to_ms"]:
            inside.append((step["id"], step["ended_ms"] - step["started_ms"]))
    needed = sum(ms for sid, ms in inside if sid in NEED_WINDOW)
    return w["to_ms"] - w["from_ms"], needed, inside


def exec_overhead(work, runs):
    name = f"bench-exec-{os.getpid()}"
    ctx = os.path.join(work, "ctx")
    os.makedirs(ctx)
    shutil.copy("/bin/busybox", ctx)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write('FROM scratch\nCOPY busybox /bin/busybox\n'
                'RUN ["/bin/busybox", "--install", "-s", "/bin"]\nCMD ["sleep", "3600"]\n')
    try:
        sh(f"docker build -q -t {name}:t {ctx}")
        sh(f"docker run -d --name {name} {name}:t")
        steps = []
        for i in range(EXEC_STEPS):
            needs = f'needs = ["e{i - 1}"]\n' if i else ""
            steps.append(f'[steps.e{i}]\nkind = "docker-exec"\ncontainer = "{name}"\n'
                         f'command = ["true"]\n{needs}')
        with open(os.path.join(work, "exec.toml"), "w") as f:
            f.write('[plan]\nname = "exec"\n\n' + "\n".join(steps))
        loop = f"for i in $(seq {EXEC_STEPS}); do docker exec {name} true; done"
        env = dict(os.environ)
        env.pop("DOCKER_CMD", None)
        runner_times, bare_times = [], []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run(["sh", "-c", loop], check=True, env=env)
            bare_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            subprocess.run([RUNNER, "apply", "exec.toml", "--jobs", "1"], cwd=work, env=env,
                           check=True, stdout=subprocess.DEVNULL)
            runner_times.append(time.perf_counter() - start)
        return statistics.median(runner_times), statistics.median(bare_times)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        subprocess.run(["docker", "rmi", f"{name}:t"], capture_output=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    if not os.path.exists(RUNNER):
        sys.exit("build first: cargo build --release")
    with tempfile.TemporaryDirectory() as work:
        took, counts, (window_ms, needed_ms, inside) = downtime(work)
        errors = counts.pop("errors seen", [])
        total = sum(counts.values())
        print(f"zero downtime: deploy to v3 took {took:.1f} s; {total} requests every 20 ms:")
        for k, v in counts.items():
            print(f"  {k:>22}: {v}")
        for e in errors[:5]:
            print(f"  error: {e}")
        print(f"maintenance window: {window_ms} ms; the steps that need it "
              f"({' + '.join(NEED_WINDOW)}) took {needed_ms} ms: "
              f"ratio {window_ms / max(needed_ms, 1):.2f}")
        toggles = sum(ms for sid, ms in inside if sid.startswith("maintenance-"))
        others = [(sid, ms) for sid, ms in inside
                  if sid not in NEED_WINDOW and not sid.startswith("maintenance-")]
        print(f"  = toggles (on, off) {toggles} ms + needed {needed_ms} ms + "
              f"{window_ms - toggles - needed_ms} ms between steps")
        print("  also inside, in parallel: "
              + (", ".join(f"{sid} {ms} ms" for sid, ms in others) or "nothing"))
    with tempfile.TemporaryDirectory() as work:
        runner_t, bare_t = exec_overhead(work, args.runs)
        print(f"docker-exec, {EXEC_STEPS} steps in a chain (median of {args.runs}):")
        print(f"  runner {runner_t * 1000:.0f} ms, bare docker exec loop {bare_t * 1000:.0f} ms, "
              f"ratio {runner_t / bare_t:.3f} (target <= 1.1)")


if __name__ == "__main__":
    main()
