#!/bin/sh
# plans/production.toml, unedited (its [vars] given with --var), on a real
# stack: Rails 6.1 (Debian's ruby-rails, puma, whenever, cron), PostgreSQL 15,
# Redis 7 and nginx, under this host's compose (`docker compose` or
# docker-compose 1.29), with a client GETting the proxy every 20 ms throughout.
#
#   cargo build --release && sudo sh benches/rails-stack/run.sh
#
# Four releases of v2 over v1 (web's command changes to bin/web, which v1's
# image does not have; service `legacy` is dropped and `worker` added; the
# crontab changes), as benches/docker.py releases the demo:
#   1. code only (no migration): exit 0, every answer 200, no window;
#   2. bin/web not executable (the new web never serves): exit 1, every
#      answer 200 (from v1 throughout), everything v1 again;
#   3. with a migration (a column added): exit 0, the maintenance page only
#      around it: the window the client saw against 1.3 x the migration's time
#      plus two `docker exec` round trips;
#   4. with a second migration that fails: exit 1, everything v1 again (code,
#      compose file, image, services, schema, crontab), no error answered.
# Needs root, Docker, and Debian's mirror (debootstrap builds the base image:
# no registry). Uses the containers shop-* and srv*web*, and the port LAB_PORT
# (18380); removes what it made at the end (KEEP_IMAGES=1 keeps the base
# images for the next run).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
runner=$repo/target/release/runner
[ -x "$runner" ] || { echo "build first: cargo build --release" >&2; exit 1; }
export LAB_PORT="${LAB_PORT:-18380}"
lab=$(mktemp -d)
failed=0

stack_down() {
  if [ -d "$lab/srv" ]; then (cd "$lab/srv" && $compose down -v --remove-orphans >/dev/null 2>&1 || true); fi
  docker rm -f shop-web shop-web-next shop-web-previous shop-legacy shop-worker shop-db shop-redis \
    shop-proxy >/dev/null 2>&1 || true
  # Every build of the app: the tags, and the builds a rollback left untagged.
  ids=$(docker images -q --filter label=runner-lab=shop | sort -u)
  # shellcheck disable=SC2086
  [ -z "$ids" ] || docker rmi -f $ids >/dev/null 2>&1 || true
}
cleanup() {
  stack_down
  if [ "${KEEP_IMAGES:-}" != 1 ]; then
    docker rmi rt-lab-nginx:latest rt-lab-redis:latest rt-lab-postgres:latest \
      rt-lab-rails-base:latest rt-lab-debian:bookworm >/dev/null 2>&1 || true
  fi
  rm -rf "$lab"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if docker compose version >/dev/null 2>&1; then compose="docker compose"; else compose=docker-compose; fi

# Base images, from Debian's packages only.
sh "$here/images.sh" rails-base postgres redis nginx

git_() { git -C "$lab/dev" -c user.name=lab -c user.email=lab@localhost "$@"; }

# The stack at v1 (migrated, crontab installed); origin holds v2: without its
# migration if $1 is "code-only", with a second one that fails if "fails", with
# a web that cannot start if "no-start".
reset() {
  stack_down
  rm -rf "$lab/origin.git" "$lab/dev" "$lab/srv" "$lab/backups"
  git init -q --bare "$lab/origin.git"
  git -C "$lab/origin.git" symbolic-ref HEAD refs/heads/main
  git clone -q "$lab/origin.git" "$lab/dev" 2>/dev/null
  cp -R "$here/app/." "$lab/dev/"
  git_ add -A && git_ commit -qm v1 && git_ push -q origin HEAD:main
  git clone -q "$lab/origin.git" "$lab/srv"
  (cd "$lab/srv" && $compose build web >/dev/null 2>&1 && $compose up -d >/dev/null 2>&1)
  for _ in $(seq 60); do
    (cd "$lab/srv" && $compose exec -T web bin/rails db:migrate >/dev/null 2>&1) && break
    sleep 1
  done
  (cd "$lab/srv" && $compose exec -T web bundle exec whenever --update-crontab --set environment=production >/dev/null)
  cp -R "$here/release-v2/." "$lab/dev/"
  case "$1" in
    code-only) rm "$lab/dev/db/migrate/20240201000001_add_email_to_members.rb" ;;
    fails) cp "$here/failing/"*.rb "$lab/dev/db/migrate/" ;;
    no-start) chmod -x "$lab/dev/bin/web" ;;
  esac
  git_ add -A && git_ commit -qm "v2 ($1)" && git_ push -q origin HEAD:main
}

deploy() {
  rm -f "$lab/stop"
  python3 "$here/poll.py" "$LAB_PORT" "$lab/stop" > "$lab/poll-$1.json" &
  poller=$!
  set +e
  "$runner" apply "$repo/plans/production.toml" --report "$lab/$1.json" \
    --var app=shop-web --var db=shop-db --var redis=shop-redis --var service=web \
    --var image=shop --var app_dir="$lab/srv" --var backup_dir="$lab/backups" \
    --var db_user=shop --var db_name=shop_production > "$lab/$1.log" 2>&1
  code=$?
  set -e
  touch "$lab/stop"
  wait "$poller"
  echo "$code"
}

# The stack as users and operators see it, one fact a line.
state() {
  echo "http: $(curl -s "http://127.0.0.1:$LAB_PORT/up")"
  echo "code: $(git -C "$lab/srv" log -1 --format=%s)"
  echo "web runs: $(docker inspect --format '{{json .Config.Cmd}}' shop-web)"
  echo "services: $(docker ps --format '{{.Names}}' --filter name=shop- | sort | tr '\n' ' ')"
  echo "web containers: $(docker ps -a --format '{{.Names}}' --filter label=com.docker.compose.project=srv --filter label=com.docker.compose.service=web | tr '\n' ' ')"
  echo "schema: $(docker exec shop-web bin/rails db:version 2>/dev/null | sed -n 's/^Current version: //p')"
  echo "columns: $(docker exec shop-db psql -U shop shop_production -Atc \
    "select string_agg(column_name, ',' order by column_name) from information_schema.columns where table_name = 'members'")"
  echo "crontab: $(docker exec shop-web crontab -l | grep -v '^#' | grep . | cut -d' ' -f1-5)"
}

check() {
  if grep -qxF "$1" "$lab/state"; then echo "  ok    $1"; else echo "  WRONG $1"; failed=1; fi
}

# What the client saw, and the window against its budget: 1.3 x the migrate
# step's time plus two `docker exec` round trips (measured before the deploy).
figures() {
  python3 - "$lab/$1.json" "$lab/poll-$1.json" "$exec_ms" "$2" <<'PY'
import json, sys
record = json.load(open(sys.argv[1]))
poll = json.load(open(sys.argv[2]))
exec_ms, expect = float(sys.argv[3]), sys.argv[4]
steps = {s["id"]: s for s in record["steps"]}
m = steps.get("migrate", {})
need = (m["ended_ms"] - m["started_ms"]) if m.get("status") in ("succeeded", "failed") else 0
answers = poll["answers"]
others = sum(n for k, n in answers.items() if k not in ("200", "503 maintenance page"))
pages = answers.get("503 maintenance page", 0)
print(f"  proxy answers: {answers}; slowest {poll['slowest_ms']} ms, p99 {poll['p99_ms']} ms")
print(f"  maintenance window seen {poll['window_ms']} ms; migrate {need} ms; "
      f"budget 1.3 x {need} + 2 x {exec_ms:.0f} = {1.3 * need + 2 * exec_ms:.0f} ms")
# A request slower than a second during a release is a failed promise.
ok = others == 0 and poll["slowest_ms"] < 1000
if expect == "no-page":
    ok = ok and pages == 0
elif expect == "window":
    ok = ok and poll["window_ms"] <= 1.3 * need + 2 * exec_ms
if poll["odd"] or poll["slow"] or expect == "window":
    # The steps on the client's clock, to tell what an odd answer met.
    from datetime import datetime
    # started_ms count from the engine's start (after the docker probe and
    # the preflight), which ended duration_ms before finished_at.
    ended = datetime.fromisoformat(record["finished_at"].replace("Z", "+00:00")).timestamp()
    began = ended - record["duration_ms"] / 1000
    shift = (began - poll["began"]) * 1000
    for s in record["steps"]:
        if s.get("started_ms") is not None and s.get("ended_ms") is not None:
            print(f"    {s['started_ms'] + shift:8.0f} – {s['ended_ms'] + shift:8.0f} ms  {s['id']}")
    for line in poll["odd"]:
        print(f"    odd: {line}")
    for line in poll["slow"]:
        print(f"    slow: {line}")
print("  ok    answers" if ok else "  WRONG answers")
sys.exit(0 if ok else 1)
PY
}

# One `docker exec` round trip, the median of five.
exec_round_trip() {
  python3 - <<'PY'
import subprocess, time
t = []
for _ in range(5):
    a = time.monotonic(); subprocess.run(["docker", "exec", "shop-db", "true"], check=True); t.append(time.monotonic() - a)
print(round(sorted(t)[2] * 1000))
PY
}

rolled_back() {
  state > "$lab/state"; sed 's/^/  /' "$lab/state"
  [ "$code" = 1 ] && echo "  ok    exit 1" || { echo "  WRONG exit $code"; failed=1; }
  check "http: up v1 schema=20240101000001"
  check "code: v1"
  check 'web runs: ["bundle","exec","puma","-b","tcp://0.0.0.0:3000","config.ru"]'
  check "services: shop-db shop-legacy shop-proxy shop-redis shop-web "
  check "web containers: shop-web "
  check "schema: 20240101000001"
  check "columns: created_at,id,name,updated_at"
  check "crontab: 30 4 * * *"
}

released() {
  state > "$lab/state"; sed 's/^/  /' "$lab/state"
  [ "$code" = 0 ] && echo "  ok    exit 0" || { echo "  WRONG exit $code"; failed=1; }
  check "http: up v2 schema=$1"
  check "code: v2 ($2)"
  check 'web runs: ["bin/web"]'
  check "services: shop-db shop-proxy shop-redis shop-web shop-worker "
  check "web containers: shop-web "
  check "schema: $1"
  check "columns: $3"
  check "crontab: 0 * * * *"
}

echo "1. v2, code only"
reset code-only
exec_ms=$(exec_round_trip)
code=$(deploy code-only)
released 20240101000001 code-only "created_at,id,name,updated_at"
figures code-only no-page || failed=1

echo "2. v2 whose web cannot start"
reset no-start
code=$(deploy no-start)
rolled_back
figures no-start no-page || failed=1

echo "3. v2 with a migration"
reset ok
exec_ms=$(exec_round_trip)
code=$(deploy ok)
released 20240201000001 ok "created_at,email,id,name,updated_at"
figures ok window || failed=1

echo "4. v2 with a failing second migration"
reset fails
code=$(deploy fail)
rolled_back
figures fail errors || failed=1

if [ "$failed" != 0 ]; then
  echo "a check failed; the runs' output:" >&2
  cat "$lab/code-only.log" "$lab/no-start.log" "$lab/ok.log" "$lab/fail.log" >&2
  exit 1
fi
