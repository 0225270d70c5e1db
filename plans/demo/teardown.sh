#!/bin/sh
# Removes everything the demo created: containers, network, volume, images.
# usage: teardown.sh APP IMAGE
: "${DOCKER_CMD:=docker}"  # runner sets it; `docker` when run by hand
app=$1 image=$2
# shellcheck disable=SC2086
$DOCKER_CMD rm -f "$app" "$app-next" "$app-previous" "$app-failed" "$app-proxy" >/dev/null 2>&1
# shellcheck disable=SC2086
$DOCKER_CMD network rm "$app-net" >/dev/null 2>&1
# shellcheck disable=SC2086
$DOCKER_CMD volume rm "$app-data" >/dev/null 2>&1
# shellcheck disable=SC2086
# every tag: v1, v2 and any version deployed with --var version=…
# shellcheck disable=SC2046
$DOCKER_CMD rmi $($DOCKER_CMD images --format '{{.Repository}}:{{.Tag}}' "$image") >/dev/null 2>&1
echo "removed $app (and its -next, -previous, -failed), $app-proxy, $app-net, $app-data and the $image images"
