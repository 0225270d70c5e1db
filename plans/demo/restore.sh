#!/bin/sh
# Undoes `switch.sh`, also when it failed partway: the container it kept as
# APP-previous becomes APP again, as it was. With no APP-previous, the switch
# never replaced APP: it is started if it stopped.
# usage: restore.sh APP
: "${DOCKER_CMD:=docker}"  # runner sets it; `docker` when run by hand
set -eu
app=$1
d() {
  # shellcheck disable=SC2086
  $DOCKER_CMD "$@"
}
if [ -n "${DEMO_FAIL:-}" ]; then
  echo "cannot restore $app (demo: DEMO_FAIL is set)" >&2
  exit 1
fi
if d container inspect "$app-previous" >/dev/null 2>&1; then
  d rm -f "$app" >/dev/null 2>&1 || true
  d rename "$app-previous" "$app"
fi
d start "$app" >/dev/null
echo "$app runs $(d inspect --format '{{.Config.Image}}' "$app") again; maintenance: $(d exec "$app" /app/bin/maintenance status)"
