#!/usr/bin/env python3
"""runner's compose release beside docker-rollout's, on the same app.

    cargo build --release
    python3 benches/rollout/bench.py --docker-rollout PATH [--rounds 3]

PATH is docker-rollout's script (https://github.com/wowu/docker-rollout, the
`docker-rollout` file; it is not part of this project). As root, with Docker,
Compose, and Debian's mirror the first time (nginx comes from Debian's
packages: benches/rails-stack/images.sh builds rt-lab-nginx).

The app: a compose project with a service `web` (busybox httpd FROM scratch,
saying its version, with a compose healthcheck, which docker-rollout waits
for) behind real nginx configured as the README's compose conventions say
(benches/rollout/nginx.conf: resolver valid=1s, proxy_next_upstream error
timeout, proxy_connect_timeout 200ms). A client GETs nginx every 20 ms
throughout each release. Rounds alternate which tool goes first; each
release brings the next version (code only). Then each tool releases a
version whose container never becomes healthy (it answers 404).

Per release: the tool's exit code and wall time, the answers, those other
than 200, the slowest request and the 99th percentile, and what the app
serves after. Everything made here has a name of its own (rb<pid>) and is
removed at the end. Nothing here is a test: the figures go to the README.
"""

import argparse
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RUNNER = os.path.join(ROOT, "target", "release", "runner")
sys.path.insert(0, os.path.dirname(HERE))
from poller import Client, figures  # noqa: E402

COMPOSE_FILE = """\
services:
  web:
    image: {image}:${{WEB_TAG}}
    # An init as PID 1 passes SIGTERM on: a drain ends when httpd does.
    init: true
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
      interval: 1s
      timeout: 1s
      retries: 3
  proxy:
    image: rt-lab-nginx:latest
    container_name: {project}-proxy
    ports: ["127.0.0.1:{port}:80"]
    volumes: ["./nginx.conf:/etc/nginx/conf.d/shop.conf:ro"]
    depends_on: [web]
"""

PLAN = """\
[plan]
name = "compose release (bench)"

[vars]
app = {{ env = "RB_APP" }}

[steps.start]
kind = "release"
stage = "start"
service = "web"
dir = "{dir}"
container = "{{{{ app }}}}"
health = "http://localhost:8080/"
health_timeout = "10s"

[steps.switch]
kind = "release"
stage = "switch"
needs = ["start"]
service = "web"
dir = "{dir}"
container = "{{{{ app }}}}"
health = "http://localhost:8080/"
settle = "2500ms"
drain = "10s"

[steps.finish]
kind = "release"
stage = "finish"
needs = ["switch"]
container = "{{{{ app }}}}"
"""


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def compose_words():
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True)
    return ["docker", "compose"] if plugin.returncode == 0 else ["docker-compose"]


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    def __init__(self, rollout, work):
        self.rollout = rollout
        self.work = work
        self.project = f"rb{os.getpid()}"
        self.image = f"{self.project}-web"
        self.port = free_port()
        self.dir = os.path.join(work, "app")
        self.env = dict(os.environ, COMPOSE_PROJECT_NAME=self.project,
                        RB_APP=f"{self.project}-web")
        self.env.pop("DOCKER_CMD", None)
        self.compose = compose_words()
        self.tags = []

    def build(self, tag, serves):
        """An image of `web` whose httpd serves SERVES (its version, or an
        empty folder: 404)."""
        ctx = tempfile.mkdtemp(dir=self.work)
        os.makedirs(os.path.join(ctx, "srv"))
        if serves:
            with open(os.path.join(ctx, "srv", "index.html"), "w") as f:
                f.write(serves)
        shutil.copy(shutil.which("busybox") or "/bin/busybox", os.path.join(ctx, "busybox"))
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write('FROM scratch\nCOPY busybox /bin/busybox\n'
                    'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
                    'COPY srv/ /srv/\nCMD ["httpd", "-f", "-p", "8080", "-h", "/srv"]\n')
        run(["docker", "build", "-q", "-t", f"{self.image}:{tag}", ctx])
        self.tags.append(tag)

    def up(self):
        os.makedirs(self.dir)
        shutil.copy(os.path.join(HERE, "nginx.conf"), os.path.join(self.dir, "nginx.conf"))
        with open(os.path.join(self.dir, "docker-compose.yml"), "w") as f:
            f.write(COMPOSE_FILE.format(image=self.image, project=self.project, port=self.port))
        with open(os.path.join(self.work, "release.toml"), "w") as f:
            f.write(PLAN.format(dir=self.dir))
        self.set_tag("v1")
        run(self.compose + ["up", "-d"], cwd=self.dir, env=self.env)
        for _ in range(100):
            if self.serves() == "v1":
                return
            time.sleep(0.1)
        sys.exit(f"the app never answered v1 through nginx (port {self.port})")

    def set_tag(self, tag):
        with open(os.path.join(self.dir, ".env"), "w") as f:
            f.write(f"WEB_TAG={tag}\n")

    def serves(self):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            conn.request("GET", "/")
            resp = conn.getresponse()
            body = resp.read().decode(errors="replace").strip()
            return body if resp.status == 200 else f"{resp.status}"
        except OSError as e:
            return f"no answer ({e})"

    def web_containers(self):
        out = run(["docker", "ps", "-a", "-q", "--filter",
                   f"label=com.docker.compose.project={self.project}",
                   "--filter", "label=com.docker.compose.service=web"])
        return len(out.stdout.split())

    def release(self, tool, tag):
        """Releases TAG with TOOL while the client polls: the figures."""
        self.set_tag(tag)
        if tool == "runner":
            cmd = [RUNNER, "apply", os.path.join(self.work, "release.toml")]
        else:
            cmd = ["bash", self.rollout, "rollout", "-t", "10", "web"]
        with Client(self.port, "/") as seen:
            start = time.perf_counter()
            done = subprocess.run(cmd, cwd=self.dir, env=self.env, capture_output=True,
                                  text=True)
            wall = time.perf_counter() - start
        result = figures(seen)
        result.update(tool=tool, tag=tag, code=done.returncode, wall=wall,
                      answers=len(seen), after=self.serves(), containers=self.web_containers())
        if done.returncode not in (0, 1):
            print(done.stdout, done.stderr, file=sys.stderr)
        return result

    def down(self):
        if os.path.isdir(self.dir):
            subprocess.run(self.compose + ["down", "-v", "--remove-orphans"], cwd=self.dir,
                           env=self.env, capture_output=True)
        names = run(["docker", "ps", "-a", "-q", "--filter",
                     f"label=com.docker.compose.project={self.project}"]).stdout.split()
        if names:
            subprocess.run(["docker", "rm", "-f", *names], capture_output=True)
        for tag in self.tags:
            subprocess.run(["docker", "rmi", "-f", f"{self.image}:{tag}"], capture_output=True)


def row(r):
    others = ", ".join(f"{k} {v}" for k, v in r["counts"].items() if k != "200")
    return (f"| {r['tool']} | {r['tag']} | {r['code']} | {r['wall']:.1f} s | {r['answers']} "
            f"| {r['not_200']}{f' ({others})' if others else ''} | {r['slowest']:.0f} ms "
            f"| {r['p99']:.0f} ms | {r['after']}, {r['containers']} web |")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--docker-rollout", required=True,
                        help="docker-rollout's script (not part of this project)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not os.path.exists(RUNNER):
        sys.exit("build first: cargo build --release")
    if not os.path.isfile(args.docker_rollout):
        sys.exit(f"{args.docker_rollout}: no such file (docker-rollout's script)")
    subprocess.run(["sh", os.path.join(ROOT, "benches", "rails-stack", "images.sh"), "nginx"],
                   check=True)
    work = tempfile.mkdtemp(prefix="rollout-bench-")
    lab = Lab(os.path.abspath(args.docker_rollout), work)
    results = []
    try:
        versions = [f"v{n}" for n in range(1, 2 * args.rounds + 2)]
        for v in versions:
            lab.build(v, v)
        lab.build("bad", "")
        lab.up()
        tools = ["runner", "docker-rollout"]
        at = 1
        for i in range(args.rounds):
            for tool in tools if i % 2 == 0 else tools[::-1]:
                results.append(lab.release(tool, versions[at]))
                print(row(results[-1]), flush=True)
                at += 1
        good = versions[at - 1]
        for tool in tools:
            r = lab.release(tool, "bad")
            r["tag"] = "never healthy"
            results.append(r)
            print(row(r), flush=True)
            lab.set_tag(good)
    finally:
        lab.down()
        shutil.rmtree(work, ignore_errors=True)
    print("\n| tool | release | exit | wall | answers | not 200 | slowest | p99 | after |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(row(r))


if __name__ == "__main__":
    main()
