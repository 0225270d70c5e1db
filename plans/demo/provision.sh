#!/bin/sh
# Makes sure the demo app runs: network, data volume, app v1 (port 3000 not
# published) and the reverse proxy published on 127.0.0.1:PORT. Idempotent: what
# already runs is left alone.
# usage: provision.sh APP IMAGE PORT
: "${DOCKER_CMD:=docker}"  # runner sets it; `docker` when run by hand
set -eu
app=$1 image=$2 port=$3
here=$(cd "$(dirname "$0")" && pwd)
d() {
  # shellcheck disable=SC2086
  $DOCKER_CMD "$@"
}
d network inspect "$app-net" >/dev/null 2>&1 || d network create "$app-net" >/dev/null
d volume inspect "$app-data" >/dev/null 2>&1 || d volume create "$app-data" >/dev/null
d image inspect "$image:v1" >/dev/null 2>&1 || "$here/build.sh" "$image" v1
if [ -z "$(d ps -q --filter "name=^$app\$")" ]; then
  d rm -f "$app" >/dev/null 2>&1 || true
  # --init: the app stops on SIGTERM (busybox httpd as PID 1 would ignore it),
  # so draining a release takes as long as its requests in flight.
  d run -d --init --name "$app" --network "$app-net" -v "$app-data:/data" "$image:v1" >/dev/null
  d exec "$app" /app/bin/migrate up >/dev/null
  echo "started $app from $image:v1"
fi
if [ -z "$(d ps -q --filter "name=^$app-proxy\$")" ]; then
  d rm -f "$app-proxy" >/dev/null 2>&1 || true
  d run -d --init --name "$app-proxy" --network "$app-net" -e "UPSTREAM=$app:3000" \
    -p "127.0.0.1:$port:8080" "$image:v1" httpd -f -p 8080 -h /proxy >/dev/null
  echo "started $app-proxy on 127.0.0.1:$port"
fi
echo "app and proxy are running"
