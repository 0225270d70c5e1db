#!/bin/sh
# Runs the app from IMAGE_TAG, keeping its data volume. The container it
# replaces is kept, stopped, as APP-previous: `restore.sh` brings it back as it
# was (image, command, environment), whatever the new release changed.
# The proxy answers the maintenance page while the app restarts.
# usage: switch.sh APP IMAGE_TAG [COMMAND]   (no COMMAND: the image's own)
: "${DOCKER_CMD:=docker}"  # runner sets it; `docker` when run by hand
set -eu
app=$1 tag=$2 command=${3:-}
d() {
  # shellcheck disable=SC2086
  $DOCKER_CMD "$@"
}
if [ -n "${DEMO_FAIL:-}" ]; then
  echo "cannot switch $app to $tag (demo: DEMO_FAIL is set)" >&2
  exit 1
fi
if d container inspect "$app" >/dev/null 2>&1; then
  d rm -f "$app-previous" >/dev/null 2>&1 || true
  d rename "$app" "$app-previous"
  # Killed, not stopped: busybox httpd runs as PID 1, which ignores SIGTERM,
  # so `docker stop` would always wait out its timeout, users on maintenance.
  d kill "$app-previous" >/dev/null
fi
if [ -n "$command" ]; then
  d run -d --name "$app" --network "$app-net" -v "$app-data:/data" "$tag" sh -c "$command" >/dev/null
else
  d run -d --name "$app" --network "$app-net" -v "$app-data:/data" "$tag" >/dev/null
fi
echo "$app now runs $tag${command:+ ($command)}; maintenance: $(d exec "$app" /app/bin/maintenance status)"
