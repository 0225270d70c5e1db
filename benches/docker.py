#!/usr/bin/env python3
"""Docker benchmarks against this machine's engine, in one run.

    cargo build --release && python3 benches/docker.py [--runs N]

1. Gapless releases: the demo app (plans/demo.toml) is provisioned and
   released at v2, then released four ways while a client on loopback GETs the
   proxy every 20 ms, each answer counted (200, the 503 maintenance page,
   anything else, connection errors) and the times of the maintenance pages
   kept (the window the client saw), and each request timed: per release the
   slowest and the 99th percentile, and each request slower than 250 ms against
   the steps running when it was sent:
   - v2 -> v3 -> v2 -> v3, three releases with no migration to run: 0
     answers but 200;
   - v4 whose container never serves (DEMO_COMMAND="exit 3"): exit 1, the
     old release serves throughout;
   - v5 whose second migration fails (DEMO_FAIL_MIGRATION=4): exit 1, back
     on v3 and its schema;
   - v3 -> v5, two migrations: the window, beside the migration's own time
     and two `docker exec` round trips (the budget: 1.3 x the migration +
     two round trips).
   The client is bounded (at most 3,000 requests per release).
2. docker-exec overhead: a plan of 20 `docker-exec` steps (`true` in a running
   container) in a chain with --jobs 1, beside a shell loop of the same 20 bare
   `docker exec` commands. The ratio is runner's time over the loop's, whole
   runs (runner's start-up and docker probe included), median of --runs.

Everything made here (containers, network, volume, images) has a name of its own
and is removed at the end. Nothing here is a test: the figures go to the README.
"""

import argparse
import glob
import json
from datetime import datetime
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from poller import Client, figures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, "target", "release", "runner")
EXEC_STEPS = 20


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True, **kw)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def release(work, env, port, args, label, plan="demo.toml"):
    """Runs `runner apply PLAN ARGS` while the client polls: what it saw. A
    release is judged by its slowest request, not only by status codes."""
    with Client(port, "/cgi-bin/up") as seen:
        start = time.perf_counter()
        code = subprocess.run([RUNNER, "apply", plan, *args], cwd=work, env=env,
                              stdout=subprocess.DEVNULL).returncode
        took = time.perf_counter() - start
    measured = figures(seen)
    counts = measured["counts"]
    pages = [at for at, what, _, _ in seen if what == "503 maintenance page"]
    window_ms = (pages[-1] - pages[0]) * 1000 + 20 if pages else 0
    bodies = sorted({body for _, what, body, _ in seen if what == "200"})
    record = last_record(work)
    began = steps_clock(record)
    steps = {s["id"]: s for s in record["steps"]}
    migrate = steps.get("migrate", {})
    migrate_ms = (migrate.get("ended_ms", 0) or 0) - (migrate.get("started_ms", 0) or 0)
    slowest, p99, not_200 = measured["slowest"], measured["p99"], measured["not_200"]
    print(f"{label}: exit {code}, {took:.1f} s, {len(seen)} answers: "
          + ", ".join(f"{k} {v}" for k, v in counts.items())
          + f"; slowest {slowest:.0f} ms, p99 {p99:.0f} ms")
    print(f"  served: {' | '.join(bodies)}")
    runs = []
    for _, what, body, _ in seen:
        key = body if what == "200" else what
        if runs and runs[-1][0] == key:
            runs[-1][1] += 1
        else:
            runs.append([key, 1])
    print("  in order: " + ", then ".join(f"{n} x {k}" for k, n in runs))
    # Each slow request against the steps running when it was sent.
    for at, what, body, t in seen:
        if t > 0.25:
            ms = (at - began) * 1000
            during = [i for i, s in steps.items() if s.get("started_ms") is not None
                      and s["started_ms"] <= ms <= (s.get("ended_ms") or 1e12)]
            print(f"  slow: {t * 1000:.0f} ms, sent {ms:.0f} ms into the run "
                  f"(during {', '.join(during) or 'no step'}): {what} {body}")
    if pages:
        first = (pages[0] - began) * 1000
        last = (pages[-1] - began) * 1000 + 20
        print(f"  maintenance pages seen for {window_ms:.0f} ms; migrate took {migrate_ms} ms")
        if migrate.get("started_ms") is not None:
            print(f"  pages from {migrate['started_ms'] - first:.0f} ms before migrate starts "
                  f"to {last - migrate['ended_ms']:.0f} ms after it ends")
    back = steps.get("switch", {}).get("rollback")
    if back:
        # The reverse switch: from its start (the record's clock) to the
        # first answer of the old release after the last of the new one.
        hook_at = began + back["started_ms"] / 1000
        new = [at for at, what, body, _ in seen if what == "200" and " v6 " in f" {body} "]
        old = [at for at, what, body, _ in seen if what == "200" and at > max(new, default=0)
               and " v6 " not in f" {body} "]
        if old:
            print(f"  reverse switch: the old release answers {(old[0] - hook_at) * 1000:.0f} ms "
                  f"after it began (the whole hook took {back['ended_ms'] - back['started_ms']} ms)")
    return {"code": code, "counts": counts, "window_ms": window_ms, "migrate_ms": migrate_ms,
            "slowest": slowest, "p99": p99, "not_200": not_200}


def steps_clock(record):
    """The wall time the record's `started_ms` count from: the engine's start,
    after runner's docker probe and preflight (`started_at` is runner's own)."""
    finished = datetime.fromisoformat(record["finished_at"].replace("Z", "+00:00")).timestamp()
    return finished - record["duration_ms"] / 1000


def last_record(work):
    last = sorted(glob.glob(os.path.join(work, ".runner", "runs", "*.json")),
                  key=os.path.getmtime)[-1]
    with open(last) as f:
        return json.load(f)


def exec_round_trip(name, env):
    """The median time of a bare `docker exec NAME true`, in ms."""
    times = []
    for _ in range(9):
        start = time.perf_counter()
        subprocess.run(["docker", "exec", name, "true"], env=env, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def gapless(work):
    name = f"bench-{os.getpid()}"
    port = free_port()
    shutil.copy(os.path.join(ROOT, "plans", "demo.toml"), work)
    shutil.copytree(os.path.join(ROOT, "plans", "demo"), os.path.join(work, "demo"))
    env = dict(os.environ, DEMO_APP=name, DEMO_IMAGE=name, DEMO_PORT=str(port))
    env.pop("DOCKER_CMD", None)
    try:
        subprocess.run([RUNNER, "apply", "demo.toml"], cwd=work, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        rt = exec_round_trip(name, env)
        print(f"a bare `docker exec {name} true`: {rt:.0f} ms (median of 9)")
        # Three code-only releases in a row (v2 and v3 bring the same schema).
        for before, after in [("v2", "v3"), ("v3", "v2"), ("v2", "v3")]:
            release(work, env, port, ["--var", f"version={after}"],
                    f"{before} -> {after}, no migration")
        release(work, env, port, ["--var", "version=v4", "--var", "command=exit 3"],
                "v3 -> v4 that never serves")
        release(work, env, port, ["--var", "version=v5", "--var", "fail_migration=4"],
                "v3 -> v5, its second migration fails")
        r = release(work, env, port, ["--var", "version=v5"], "v3 -> v5, two migrations")
        budget = 1.3 * r["migrate_ms"] + 2 * rt
        print(f"  window {r['window_ms']:.0f} ms; budget 1.3 x {r['migrate_ms']} + 2 x {rt:.0f} = "
              f"{budget:.0f} ms: {'met' if r['window_ms'] <= budget else 'NOT met'}")
        # A check after the switch fails: the reverse switch, v6 back to v5.
        with open(os.path.join(work, "demo.toml")) as f:
            smoke = f.read() + ('\n[steps.smoke]\nkind = "shell"\nneeds = ["switch"]\n'
                                'run = "sleep 1 && exit 1"\n')
        with open(os.path.join(work, "demo-smoke.toml"), "w") as f:
            f.write(smoke)
        release(work, env, port, ["--var", "version=v6"],
                "v5 -> v6, a check after the switch fails", plan="demo-smoke.toml")
    finally:
        subprocess.run([os.path.join(work, "demo", "teardown.sh"), name, name],
                       env=dict(env, DOCKER_CMD="docker"), stdout=subprocess.DEVNULL)


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
    parser.add_argument("--only", choices=["gapless", "exec"])
    args = parser.parse_args()
    if not os.path.exists(RUNNER):
        sys.exit("build first: cargo build --release")
    if args.only != "exec":
        with tempfile.TemporaryDirectory() as work:
            gapless(work)
    if args.only == "gapless":
        return
    with tempfile.TemporaryDirectory() as work:
        runner_t, bare_t = exec_overhead(work, args.runs)
        print(f"docker-exec, {EXEC_STEPS} steps in a chain (median of {args.runs}):")
        print(f"  runner {runner_t * 1000:.0f} ms, bare docker exec loop {bare_t * 1000:.0f} ms, "
              f"ratio {runner_t / bare_t:.3f} (target <= 1.1)")


if __name__ == "__main__":
    main()
