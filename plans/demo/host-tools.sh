#!/bin/sh
# The demo builds its images FROM scratch with this host's static busybox
# (Debian's busybox-static). If it is missing, this installs it when it can
# (as root, or through `sudo -n`), else stops at once with the command to run.
set -eu
for b in /bin/busybox /usr/bin/busybox; do
  if [ -x "$b" ]; then
    echo "busybox: $b"
    exit 0
  fi
done
if [ "$(id -u)" = 0 ]; then
  as=""
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  as="sudo -n"
else
  echo "the demo needs Debian's busybox-static; run: sudo apt-get install busybox-static" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "the demo needs a static busybox at /bin/busybox, and there is no apt-get to install it" >&2
  exit 1
fi
echo "installing busybox-static with apt-get"
$as env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 update -qq
$as env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 install -y -qq busybox-static >/dev/null
echo "busybox: $(command -v busybox)"
