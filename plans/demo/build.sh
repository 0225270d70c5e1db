#!/bin/sh
# Builds the demo image IMAGE:VERSION from busybox-static, with no registry.
# usage: build.sh IMAGE VERSION
: "${DOCKER_CMD:=docker}"  # runner sets it; `docker` when run by hand
set -eu
image=$1 version=$2
here=$(cd "$(dirname "$0")" && pwd)
# A static busybox: the image has no libc (Debian: apt-get install busybox-static).
busybox=$(command -v busybox || echo /bin/busybox)
if [ ! -x "$busybox" ]; then
  echo "busybox not found: install it with: apt-get install busybox-static" >&2
  exit 1
fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp -R "$here/app" "$here/proxy" "$here/Dockerfile" "$ctx/"
cp "$busybox" "$ctx/busybox"
# shellcheck disable=SC2086  # DOCKER_CMD is a command line, e.g. `sudo -n docker`
$DOCKER_CMD build -q --build-arg VERSION="$version" -t "$image:$version" "$ctx" >/dev/null
echo "built $image:$version"
