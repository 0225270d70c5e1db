#!/usr/bin/env python3
"""Executor benchmarks: runner beside make and a plain sh loop, in one run.

    cargo build --release && python3 benches/exec.py [--runs N]

1. 200 no-op steps (`true;` through `sh -c`), as a chain with one job and all
   independent with 8 jobs: runner, make -j1 / -j8 (the `;` makes make go
   through sh, like runner), and a plain `for` loop of `sh -c :`. Beside the
   chain, the floor (benches/spawn_floor.rs): the same 200 commands started one
   after the other with the guarantees of a step (own process group, stdout and
   stderr through pipes) and nothing else, with tokio::process and with
   blocking std::process. And just (`cargo install just`), when it is on PATH:
   a Rust task runner that runs each line through `sh -cu`, synchronously, with
   its output straight to the terminal and no process group.
   Then 2,000 independent no-op steps with 16 jobs: runner and make -j16.
2. 4 independent chains of 5 `sleep 0.2` steps with 4 jobs: wall time divided by
   the critical path (1.0 s), for runner, make -j4, and make -j4 through sh
   (`sleep 0.2;`): make runs a simple command without a shell, runner always
   uses `sh -c`, so the make-through-sh row is the floor for runner's figure.
3. Peak memory (maximum RSS, GNU time) of runner on the 200-step chain.
4. Output in bounded memory: peak RSS of runner while one step prints 1,000,000
   lines, and while it prints one 200 MB line without a newline; stdout to
   /dev/null, to a pipe read by `cat`, and as JSON events.

Each figure is the median of --runs runs (default 15), the commands of a table
taking turns run after run so that the machine's drift is shared. Nothing here is
a test: the figures go to the README.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, "target", "release", "runner")
STEPS = 200
# The wide DAG: this many independent steps at 16 jobs.
WIDE = 2000
# A no-op that make cannot skip or exec directly: it goes through sh, as in runner.
NOOP = "true;"


def plan(name, steps):
    """steps: [(id, command, needs)]"""
    out = [f'[plan]\nname = "{name}"\n']
    for sid, command, needs in steps:
        needs_toml = ", ".join(f'"{n}"' for n in needs)
        out.append(
            f'[steps.{sid}]\nkind = "shell"\nrun = "{command}"\nneeds = [{needs_toml}]\n'
        )
    return "\n".join(out)


def justfile(steps):
    return "\n".join(f"{sid}: {' '.join(needs)}\n    @{command}\n"
                     for sid, command, needs in steps)


def makefile(steps):
    names = " ".join(sid for sid, _, _ in steps)
    out = [f".PHONY: all {names}\nall: {names}\n"]
    for sid, command, needs in steps:
        out.append(f"{sid}: {' '.join(needs)}\n\t@{command}\n")
    return "\n".join(out)


def chain(n, command, prefix="s"):
    return [(f"{prefix}{i}", command, [f"{prefix}{i - 1}"] if i else []) for i in range(n)]


def floor_binary():
    """Builds benches/spawn_floor.rs with the release settings; returns its path."""
    result = subprocess.run(
        ["cargo", "bench", "--bench", "spawn_floor", "--no-run", "--message-format=json"],
        cwd=ROOT, check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in result.stdout.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message.get("executable") \
                and message["target"]["name"] == "spawn_floor":
            return message["executable"]
    sys.exit("cargo did not report the spawn_floor executable")


def timed(argv, cwd):
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def interleaved(commands, cwd, runs):
    """Median wall time of each command, the commands taking turns run after run,
    so that the machine's drift during the benchmark is shared by all of them."""
    times = {name: [] for name, _ in commands}
    for round_ in range(runs + 1):
        for name, argv in commands:
            secs = timed(argv, cwd)
            if round_:  # the first round warms caches
                times[name].append(secs)
    return [(name, statistics.median(times[name])) for name, _ in commands]


def max_rss_kib(argv, cwd):
    """Maximum RSS of one run of argv, as GNU time reports it."""
    result = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], cwd=cwd, check=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return int(result.stderr.strip().splitlines()[-1])


def rss_and_time(argv, cwd, pipe):
    """Wall time and maximum RSS (KiB) of one run; stdout to /dev/null, or to a
    pipe that `cat` reads."""
    timed_argv = ["/usr/bin/time", "-f", "%M", *argv]
    start = time.perf_counter()
    if pipe:
        reader = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        result = subprocess.run(timed_argv, cwd=cwd, check=True, stdout=reader.stdin,
                                stderr=subprocess.PIPE, text=True)
        reader.stdin.close()
        reader.wait()
    else:
        result = subprocess.run(timed_argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
    return time.perf_counter() - start, int(result.stderr.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    if not os.access(RUNNER, os.X_OK):
        sys.exit(f"{RUNNER} is missing: run `cargo build --release` first")
    runs = args.runs
    floor = floor_binary()
    with tempfile.TemporaryDirectory() as work:
        # Each run writes its record where runner puts it by default: a new file
        # under .runner/runs/ (replacing one --report file every run would add
        # ext4's flush-on-replace, a millisecond or two, to every figure).
        runner = lambda name, *extra: [RUNNER, "apply", name, *extra]

        noop_chain = chain(STEPS, NOOP)
        noop_flat = [(f"s{i}", NOOP, []) for i in range(STEPS)]
        with open(os.path.join(work, "chain.toml"), "w") as f:
            f.write(plan("chain", noop_chain))
        with open(os.path.join(work, "flat.toml"), "w") as f:
            f.write(plan("flat", noop_flat))
        with open(os.path.join(work, "chain.mk"), "w") as f:
            f.write(makefile(noop_chain))
        with open(os.path.join(work, "flat.mk"), "w") as f:
            f.write(makefile(noop_flat))
        with open(os.path.join(work, "chain.just"), "w") as f:
            f.write(justfile(noop_chain))

        print(f"200 no-op steps, median of {runs} runs")
        loop = ["sh", "-c", f"for i in $(seq {STEPS}); do sh -c '{NOOP}'; done"]
        commands = [
            ("sh -c loop", loop),
            ("make -j1 (chain)", ["make", "-s", "-j1", "-f", "chain.mk"]),
            ("runner --jobs 1 (chain)", runner("chain.toml", "--jobs", "1")),
            ("floor, tokio::process (chain)", [floor, "tokio", str(STEPS)]),
            ("floor, std::process (chain)", [floor, "std", str(STEPS)]),
            ("make -j8 (independent)", ["make", "-s", "-j8", "-f", "flat.mk"]),
            ("runner --jobs 8 (independent)", runner("flat.toml", "--jobs", "8")),
        ]
        just = shutil.which("just")
        if just:
            last = noop_chain[-1][0]
            commands.append(("just (chain)", [just, "-f", "chain.just", last]))
        else:
            print("  (just is not on PATH: `cargo install just` adds its row)")
        rows = interleaved(commands, work, runs)
        for name, secs in rows:
            print(f"  {name:<32} {secs * 1000:8.1f} ms  {secs * 1000 / STEPS:5.2f} ms/step")
        figures = dict(rows)
        print(f"  ratio runner/make, chain:        "
              f"{figures['runner --jobs 1 (chain)'] / figures['make -j1 (chain)']:.3f}")
        for name in ("floor, tokio::process (chain)", "floor, std::process (chain)",
                     "just (chain)"):
            if name in figures:
                print(f"  ratio {name.split(' (')[0]}/make: "
                      f"{figures[name] / figures['make -j1 (chain)']:.3f}")
        print(f"  ratio runner/floor (tokio::process), chain: "
              f"{figures['runner --jobs 1 (chain)'] / figures['floor, tokio::process (chain)']:.3f}")
        print(f"  ratio runner/make, independent:  "
              f"{figures['runner --jobs 8 (independent)'] / figures['make -j8 (independent)']:.3f}")

        wide = [(f"w{i}", NOOP, []) for i in range(WIDE)]
        with open(os.path.join(work, "wide.toml"), "w") as f:
            f.write(plan("wide", wide))
        with open(os.path.join(work, "wide.mk"), "w") as f:
            f.write(makefile(wide))
        wide_runs = max(3, runs // 3)
        print(f"\n{WIDE} independent no-op steps, 16 jobs, median of {wide_runs} runs")
        rows = interleaved([
            ("make -j16", ["make", "-s", "-j16", "-f", "wide.mk"]),
            ("runner --jobs 16", runner("wide.toml", "--jobs", "16")),
        ], work, wide_runs)
        for name, secs in rows:
            print(f"  {name:<32} {secs * 1000:8.1f} ms  {secs * 1000 / WIDE:5.2f} ms/step")
        figures = dict(rows)
        print(f"  ratio runner/make, {WIDE} independent: "
              f"{figures['runner --jobs 16'] / figures['make -j16']:.3f}")

        chains = [s for c in range(4) for s in chain(5, "sleep 0.2", prefix=f"c{c}s")]
        with open(os.path.join(work, "sleep.toml"), "w") as f:
            f.write(plan("sleep", chains))
        with open(os.path.join(work, "sleep.mk"), "w") as f:
            f.write(makefile(chains))
        sleep_runs = max(3, runs // 3)
        print(f"\n4 chains x 5 steps of sleep 0.2, 4 jobs, median of {sleep_runs} runs "
              "(critical path 1.0 s)")
        through_sh = [s for c in range(4) for s in chain(5, "sleep 0.2;", prefix=f"c{c}s")]
        with open(os.path.join(work, "sleep-sh.mk"), "w") as f:
            f.write(makefile(through_sh))
        for name, secs in interleaved([
            ("make -j4", ["make", "-s", "-j4", "-f", "sleep.mk"]),
            ("make -j4 through sh", ["make", "-s", "-j4", "-f", "sleep-sh.mk"]),
            ("runner --jobs 4", runner("sleep.toml", "--jobs", "4")),
        ], work, sleep_runs):
            print(f"  {name:<32} {secs:6.3f} s   wall / critical path {secs / 1.0:.3f}")

        rss = max_rss_kib(runner("chain.toml", "--jobs", "1"), work)
        print(f"\npeak memory of runner on the 200-step chain: {rss / 1024:.1f} MiB "
              f"({rss * 1024 / 1e6:.1f} MB) maximum RSS")

        print("\npeak memory while a step prints (maximum RSS, target < 30 MB)")
        outputs = [
            ("1,000,000 lines", "seq 1 1000000"),
            ("one 200 MB line", "head -c 200000000 /dev/zero | tr '\\\\0' x"),
        ]
        for name, command in outputs:
            with open(os.path.join(work, "loud.toml"), "w") as f:
                f.write(plan("loud", [("loud", command, [])]))
            for how, extra, pipe in [("stdout /dev/null", [], False),
                                     ("stdout to cat", [], True),
                                     ("--output json", ["--output", "json"], False)]:
                secs, kib = rss_and_time(runner("loud.toml", *extra), work, pipe)
                print(f"  {name:<16} {how:<17} {kib / 1024:6.1f} MiB ({kib * 1024 / 1e6:5.1f} MB)"
                      f"  {secs:5.2f} s")


if __name__ == "__main__":
    main()
