#!/usr/bin/env python3
"""Reading a plan's history from its hosts, beside reading it here alone.

    cargo build --release && python3 benches/hosts/history.py [--runs N] [--deploys N]

Needs what the tests need (root, Docker, OpenSSH, iproute2). Two test hosts come
up (benches/hosts/hosts.sh), a plan with one step on each host runs --deploys
times (each run's record is kept here and on both hosts), then `runner runs` is
timed, interleaved, median of --runs:
  - hosts: the plan as it is, `runs` reads this machine's records and both
    hosts' (two ssh connections of its own, one read each);
  - here:  the same plan file with its `[hosts]` taken out, so that `runs` reads
    this machine's records alone (the same records: the plan file is the same).
Target (issue 29): hosts < 1.5 x here.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RUNNER = os.path.join(ROOT, "target", "release", "runner")

PLAN = """[plan]
name = "history bench"

{hosts}
[steps.touch]
kind = "shell"
on = "web"
run = "true"
"""

HOSTS = """[hosts.rth1]
docker = "ssh://root@10.77.0.11"
roles = ["web"]

[hosts.rth2]
docker = "ssh://root@10.77.0.12"
roles = ["web"]
"""


def timed(argv, cwd, env):
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--deploys", type=int, default=20)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="rth-")
    os.chmod(work, 0o755)
    hosts = f"{work}/h"
    try:
        subprocess.run(f"sh {HERE}/hosts.sh down {hosts}", shell=True, capture_output=True)
        subprocess.run(f"sh {HERE}/hosts.sh up 2 {hosts}", shell=True, check=True,
                       capture_output=True)
        env = dict(os.environ, RUNNER_SSH_COMMAND=f"ssh -F {hosts}/ssh_config", NO_COLOR="1")
        plan = os.path.join(work, "plan.toml")
        with open(plan, "w") as f:
            f.write(PLAN.format(hosts=HOSTS))
        for _ in range(args.deploys):
            subprocess.run([RUNNER, "apply", "plan.toml"], cwd=work, env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with_hosts, here = [], []
        for round_ in range(args.runs + 1):
            with open(plan, "w") as f:
                f.write(PLAN.format(hosts=HOSTS))
            a = timed([RUNNER, "runs", "plan.toml"], work, env)
            with open(plan, "w") as f:
                f.write(PLAN.format(hosts="").replace('on = "web"\n', ""))
            b = timed([RUNNER, "runs", "plan.toml"], work, env)
            if round_:
                with_hosts.append(a)
                here.append(b)
        a, b = statistics.median(with_hosts), statistics.median(here)
        print(f"runner runs, {args.deploys} runs in the history, median of {args.runs}:")
        print(f"  here alone        {b * 1000:6.1f} ms")
        print(f"  here and 2 hosts  {a * 1000:6.1f} ms  ({a / b:.2f} x here alone)")
    finally:
        subprocess.run(f"sh {HERE}/hosts.sh down {hosts}", shell=True, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
