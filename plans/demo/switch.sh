#!/bin/sh
# Replaces the app container with one from IMAGE_TAG, keeping its data volume.
# The proxy answers the maintenance page while the app restarts.
# usage: switch.sh APP IMAGE_TAG
: "${DOCKER_CMD:=docker}"  # runner sets it; `docker` when run by hand
set -eu
app=$1 tag=$2
d() {
  # shellcheck disable=SC2086
  $DOCKER_CMD "$@"
}
if [ -n "${DEMO_FAIL:-}" ]; then
  echo "cannot switch $app to $tag (demo: DEMO_FAIL is set)" >&2
  exit 1
fi
d rm -f "$app" >/dev/null
d run -d --name "$app" --network "$app-net" -v "$app-data:/data" "$tag" >/dev/null
echo "$app now runs $tag; maintenance: $(d exec "$app" /app/bin/maintenance status)"
