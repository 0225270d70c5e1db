#!/bin/sh
# Test hosts on one machine, for several-host work: network namespaces on a
# bridge of their own (10.77.0.0/24, no default route, so traffic stays there),
# each with its own dockerd (own config, data, exec root, /run: /run/docker.sock
# inside is that host's, never the machine's) and its own sshd on 10.77.0.1N,
# reached as root with a key made here.
#
#   hosts.sh up N DIR     start rth1..rthN; DIR holds keys, configs and state
#                         (SSHD_EXTRA: lines added to each sshd_config)
#   hosts.sh down DIR     stop them and remove every trace (cgroups, links)
#
# DIR/ssh_config reaches them (`ssh -F DIR/ssh_config 10.77.0.11`); their keys
# are in DIR/known_hosts. Each host has its own /run (and /run/lock, 1777 as
# on Debian), but shares this machine's /tmp.
set -eu
bridge=rtbr0

up() {
  n=$1 dir=$2
  mkdir -p "$dir"
  # Remote users other than root read their authorized_keys from here.
  chmod 755 "$dir"
  [ -f "$dir/id" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/id"
  cat > "$dir/ssh_config" <<CONF
Host 10.77.0.*
  User root
  IdentityFile $dir/id
  IdentitiesOnly yes
  UserKnownHostsFile $dir/known_hosts
  StrictHostKeyChecking accept-new
  ConnectTimeout 5
CONF
  if ! ip link show "$bridge" >/dev/null 2>&1; then
    ip link add "$bridge" type bridge
    ip addr add 10.77.0.1/24 dev "$bridge"
    ip link set "$bridge" up
  fi
  for i in $(seq "$n"); do
    h=rth$i hd=$dir/rth$i
    mkdir -p "$hd/run" "$hd/ssh"
    ip netns add "$h"
    ip link add "$h-o" type veth peer name "$h-i"
    ip link set "$h-o" master "$bridge" up
    ip link set "$h-i" netns "$h"
    ip -n "$h" addr add "10.77.0.1$i/24" dev "$h-i"
    ip -n "$h" link set "$h-i" up
    ip -n "$h" link set lo up
    ssh-keygen -q -t ed25519 -N '' -f "$hd/ssh/host"
    cp "$dir/id.pub" "$hd/ssh/authorized_keys"
    cat > "$hd/ssh/sshd_config" <<CONF
ListenAddress 10.77.0.1$i
HostKey $hd/ssh/host
AuthorizedKeysFile $hd/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
UsePAM no
StrictModes no
PidFile $hd/sshd.pid
${SSHD_EXTRA:-}
CONF
    echo '{}' > "$hd/daemon.json"
    # Not `ip netns exec`: it remounts /sys and hides the cgroups from dockerd.
    nsenter --net="/run/netns/$h" unshare --mount --propagation slave --uts sh -c "
      mount --bind '$hd/run' /run && mkdir -p /run/sshd && mkdir -m 1777 -p /run/lock
      dockerd --config-file '$hd/daemon.json' --data-root '$hd/data' \
        --exec-root '$hd/exec' --pidfile '$hd/docker.pid' \
        --host unix:///run/docker.sock --storage-driver vfs --iptables=false \
        --bip 172.31.$i.1/24 --cgroup-parent rt-$h > '$hd/dockerd.log' 2>&1 &
      /usr/sbin/sshd -f '$hd/ssh/sshd_config' -E '$hd/sshd.log'
      wait
    " > /dev/null 2>&1 &
  done
  for i in $(seq "$n"); do
    ready=no
    for _ in $(seq 100); do
      if DOCKER_HOST="unix://$dir/rth$i/run/docker.sock" docker version >/dev/null 2>&1 \
        && keys=$(ssh-keyscan -T 1 "10.77.0.1$i" 2>/dev/null) && [ -n "$keys" ]; then
        # runner refuses a host whose key is not known, whatever ssh_config says.
        printf '%s\n' "$keys" >> "$dir/known_hosts"
        ready=yes
        break
      fi
      sleep 0.1
    done
    [ "$ready" = yes ] || { echo "host rth$i did not come up: see $dir/rth$i/*.log" >&2; exit 1; }
  done
}

down() {
  dir=$1
  hosts=$(ip netns list | awk '{print $1}' | grep '^rth' || true)
  # The engines and sshd live in each host's namespace; its containers have
  # namespaces of their own, but their processes are in the host's cgroup.
  procs() {
    ip netns pids "$1"
    cat /sys/fs/cgroup/pids/rt-"$1"/*/cgroup.procs /sys/fs/cgroup/rt-"$1"/*/cgroup.procs 2>/dev/null || true
  }
  for h in $hosts; do procs "$h" | xargs -r kill 2>/dev/null || true; done
  sleep 1
  for h in $hosts; do procs "$h" | xargs -r kill -9 2>/dev/null || true; done
  sleep 0.5
  for h in $hosts; do
    ip netns del "$h"
    for c in /sys/fs/cgroup/*/rt-"$h" /sys/fs/cgroup/rt-"$h"; do
      if [ -d "$c" ]; then find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
    done
  done
  ip link del "$bridge" 2>/dev/null || true
  # vfs layers of the hosts' engines; mounts of their containers went with them.
  [ -n "$dir" ] && rm -rf "$dir"
}

case "${1:-}" in
  up) up "$2" "$3" ;;
  down) down "$2" ;;
  *) echo "usage: hosts.sh up N DIR | hosts.sh down DIR" >&2; exit 2 ;;
esac
