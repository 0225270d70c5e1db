#!/bin/sh
# `docker exec true` on a remote engine, four ways, in one run (root; needs
# Debian's openssh-server, installed here if missing):
#   1. the host's engine on its own socket (the floor: no ssh at all);
#   2. docker's ssh transport (DOCKER_HOST=ssh://…), no connection reuse;
#   3. docker's ssh transport over an OpenSSH ControlMaster;
#   4. the host's docker socket forwarded over that ControlMaster
#      (`ssh -O forward -L local.sock:/run/docker.sock`), DOCKER_HOST=unix://.
# Docker's own transport cannot take ssh options: a wrapper first on PATH gives
# ssh its config, as runner will have to.
#
#   sh benches/hosts/exec-over-ssh.sh [RUNS]     (default 20 execs each)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
runs=${1:-20}
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || \
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null
dir=$(mktemp -d)
cleanup() {
  ssh -F "$dir/ssh_config" -O exit 10.77.0.11 >/dev/null 2>&1 || true
  docker rmi rt-hostbench:t >/dev/null 2>&1 || true
  sh "$here/hosts.sh" down "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
sh "$here/hosts.sh" up 1 "$dir"

mkdir -p "$dir/bin" "$dir/ctx/rootfs/bin"
printf '#!/bin/sh\nexec /usr/bin/ssh -F %s/ssh_config "$@"\n' "$dir" > "$dir/bin/ssh"
chmod +x "$dir/bin/ssh"
busybox=$(command -v busybox || echo /bin/busybox)
cp "$busybox" "$dir/ctx/rootfs/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$dir/ctx/rootfs/bin/$applet"
done
printf 'FROM scratch\nCOPY rootfs/ /\nCMD ["sleep", "3600"]\n' > "$dir/ctx/Dockerfile"
docker build -q --no-cache -t rt-hostbench:t "$dir/ctx" >/dev/null 2>&1
local_sock="unix://$dir/rth1/run/docker.sock"
docker save rt-hostbench:t | DOCKER_HOST=$local_sock docker load >/dev/null
DOCKER_HOST=$local_sock docker run -d --name c1 rt-hostbench:t >/dev/null

per_exec() {
  start=$(date +%s%N)
  for _ in $(seq "$runs"); do
    docker exec c1 true
  done
  end=$(date +%s%N)
  echo $(( (end - start) / runs / 1000000 ))
}
export PATH="$dir/bin:$PATH"
floor=$(DOCKER_HOST=$local_sock per_exec)
plain=$(DOCKER_HOST=ssh://root@10.77.0.11 per_exec)
cat >> "$dir/ssh_config" <<CONF
  ControlMaster auto
  ControlPath $dir/cm-%C
  ControlPersist 120
CONF
ssh -F "$dir/ssh_config" -fN 10.77.0.11
master=$(DOCKER_HOST=ssh://root@10.77.0.11 per_exec)
ssh -F "$dir/ssh_config" -O forward -L "$dir/rth1.sock:/run/docker.sock" 10.77.0.11
forwarded=$(DOCKER_HOST="unix://$dir/rth1.sock" per_exec)
ratio() { awk -v a="$1" -v b="$floor" 'BEGIN { printf "%.2f", a / b }'; }
echo "docker exec true on a host in a network namespace, $runs execs each, ms per exec:"
echo "  the host's own socket (floor)            $floor"
echo "  docker's ssh transport, no reuse          $plain  ($(ratio "$plain") x floor)"
echo "  docker's ssh transport, ControlMaster     $master  ($(ratio "$master") x floor)"
echo "  socket forwarded over the ControlMaster   $forwarded  ($(ratio "$forwarded") x floor)"
