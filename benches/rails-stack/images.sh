#!/bin/sh
# Builds the lab's base images from Debian's packages only (no registry):
# rt-lab-debian:bookworm (debootstrap) and rt-lab-IMAGE:latest for each IMAGE
# given (of images/: rails-base, postgres, redis, nginx), unless they exist.
# Needs root, Docker and Debian's mirror.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if ! docker image inspect rt-lab-debian:bookworm >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  echo "debootstrap bookworm (a few minutes)"
  debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
  tar -C "$rootfs" -c . | docker import - rt-lab-debian:bookworm >/dev/null
fi
for image in "$@"; do
  if ! docker image inspect "rt-lab-$image:latest" >/dev/null 2>&1; then
    echo "building rt-lab-$image"
    docker build -q -t "rt-lab-$image:latest" "$here/images/$image" >/dev/null 2>&1
  fi
done
