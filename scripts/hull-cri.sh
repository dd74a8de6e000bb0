#!/usr/bin/env bash
# hull-cri.sh start|stop|status WORKDIR
#
# Starts hulld with its CRI service in private network, IPC and UTS
# namespaces, everything (root, state, socket, CNI state, logs) under
# WORKDIR, configured the way ../shared/critest/containerd16.sh configures
# containerd 1.6 for critest: registry mirrors for registry.k8s.io, gcr.io,
# docker.io and the others pointing at the kit's registry (a read-only
# replica inside the namespace), a CNI bridge with portmap, and the kit's
# pause image. It prints SOCKET=, NSDIR=, PID= lines.
#
# stop removes every pod and stops exactly what start started: hulld by its
# recorded PID, the shims and containers whose command line carries this
# WORKDIR's socket, the registry replica; it unmounts what is left under
# WORKDIR and removes the namespaces.
#
# Environment: HULLD (default: hulld on PATH, else bin/hulld of this
# repository), CRITEST_KIT (default ../shared/critest from the repository),
# CNI_BIN_DIR (/usr/lib/cni), CNI_SUBNET (10.89.0.0/16), STREAM_PORT (15011),
# SANDBOX_IMAGE (registry.k8s.io/pause:3.6), HULL_LOG_LEVEL (info),
# RUNTIME_TYPE (io.containerd.hull.v2), HULL_DEBUG_SOCKET (none: a unix
# socket serving Go's pprof endpoints, for profiling hulld under a load).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CMD=${1:-}
W=${2:-}
[[ -n $CMD && -n $W ]] || { sed -n '2,25p' "$0"; exit 2; }
mkdir -p "$W"
W=$(cd "$W" && pwd)

KIT=${CRITEST_KIT:-$REPO/../shared/critest}
if [[ -f $KIT/lib.sh ]]; then
  # shellcheck source=/dev/null
  source "$KIT/lib.sh"
else
  log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
  die() { log "ERROR: $*"; exit 1; }
  pid_alive() { [[ -n $1 && -d /proc/$1 ]] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
  stop_pid() {
    local pidfile=$1 timeout=${2:-20} pid i
    [[ -f $pidfile ]] || return 0
    pid=$(cat "$pidfile")
    if pid_alive "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      for ((i = 0; i < timeout * 10; i++)); do pid_alive "$pid" || break; sleep 0.1; done
      pid_alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  }
fi

if [[ -z ${HULLD:-} ]]; then
  if command -v hulld >/dev/null; then HULLD=$(command -v hulld); else HULLD=$REPO/bin/hulld; fi
fi
BIN_DIR=$(dirname "$HULLD")
CRICTL=${CRICTL:-${CRITEST_BIN:-$KIT/bin}/crictl}
CNI_BIN_DIR=${CNI_BIN_DIR:-/usr/lib/cni}
CNI_SUBNET=${CNI_SUBNET:-10.89.0.0/16}
CNI_BRIDGE=${CNI_BRIDGE:-hullcri0}
STREAM_PORT=${STREAM_PORT:-15011}
SANDBOX_IMAGE=${SANDBOX_IMAGE:-registry.k8s.io/pause:3.6}
HULL_LOG_LEVEL=${HULL_LOG_LEVEL:-info}
HULL_DEBUG_SOCKET=${HULL_DEBUG_SOCKET:-}
RUNTIME_TYPE=${RUNTIME_TYPE:-io.containerd.hull.v2}
REGISTRY_ADDR=${REGISTRY_ADDR:-127.0.0.1:5001}
SOCK=$W/hulld.sock
PIDFILE=$W/hulld.pid
NSDIR=$W/ns
GEN=$W/gen
MIRRORED_REGISTRIES=(registry.k8s.io k8s.gcr.io gcr.io docker.io registry-1.docker.io quay.io public.ecr.aws)

ns_prefix() { printf '%s\n' nsenter "--net=$NSDIR/net" "--ipc=$NSDIR/ipc" "--uts=$NSDIR/uts" --; }

write_configs() {
  mkdir -p "$GEN/cni/net.d" "$GEN/certs.d" "$W"/{root,state,cni-ipam}
  rm -f "$GEN"/cni/net.d/*
  cat >"$GEN/cni/net.d/10-hull-cri-bridge.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "hull-cri",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$CNI_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$CNI_SUBNET" }]],
        "routes": [{ "dst": "0.0.0.0/0" }],
        "dataDir": "$W/cni-ipam"
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
  local r
  for r in "${MIRRORED_REGISTRIES[@]}"; do
    mkdir -p "$GEN/certs.d/$r"
    cat >"$GEN/certs.d/$r/hosts.toml" <<EOF
server = "http://$REGISTRY_ADDR"

[host."http://$REGISTRY_ADDR"]
  capabilities = ["pull", "resolve"]
EOF
  done
  cat >"$W/config.toml" <<EOF
version = 3
root = "$W/root"
state = "$W/state"

[grpc]
  address = "$SOCK"

[debug]
  level = "$HULL_LOG_LEVEL"
  address = "$HULL_DEBUG_SOCKET"

[plugins.'io.containerd.runtime.v2.task'.runtimes.'io.containerd.hull.v2']
  binary = "$BIN_DIR/containerd-shim-hull-v2"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$SANDBOX_IMAGE"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "$GEN/certs.d"

[plugins.'io.containerd.cri.v1.runtime']
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "$RUNTIME_TYPE"
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["$CNI_BIN_DIR"]
    conf_dir = "$GEN/cni/net.d"
    max_conf_num = 1

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "$STREAM_PORT"
EOF
}

make_namespaces() {
  mkdir -p "$NSDIR"
  local n
  for n in net ipc uts; do
    if mountpoint -q "$NSDIR/$n" 2>/dev/null; then continue; fi
    : >"$NSDIR/$n"
    unshare "--$n=$NSDIR/$n" true
  done
  nsenter "--net=$NSDIR/net" ip link set lo up
  nsenter "--uts=$NSDIR/uts" hostname hull-cri
}

drop_namespaces() {
  local n
  for n in net ipc uts; do
    if mountpoint -q "$NSDIR/$n" 2>/dev/null; then umount "$NSDIR/$n" 2>/dev/null || umount -l "$NSDIR/$n" || true; fi
    rm -f "$NSDIR/$n"
  done
  rmdir "$NSDIR" 2>/dev/null || true
}

running() { [[ -f $PIDFILE ]] && pid_alive "$(cat "$PIDFILE")"; }

registry_name() { echo "hull-cri-$(echo -n "$W" | md5sum | cut -c1-8)"; }

print_env() {
  echo "SOCKET=$SOCK"
  echo "NSDIR=$NSDIR"
  echo "PID=$(cat "$PIDFILE" 2>/dev/null || true)"
}

start() {
  if running; then print_env; return 0; fi
  [[ -x $HULLD ]] || die "hulld not found (HULLD=$HULLD): run make build"
  rm -rf "$W/root" "$W/state" "$W/cni-ipam" "$W/hulld.log"
  write_configs
  make_namespaces
  mapfile -t NS < <(ns_prefix)
  if declare -F registry_start >/dev/null && [[ -d ${REGISTRY_DIR:-/nonexistent}/storage/docker ]]; then
    registry_start "$(registry_name)" "$REGISTRY_ADDR" true "${NS[@]}"
  else
    log "no kit registry storage: pulls go to $REGISTRY_ADDR inside the namespace, which nothing serves"
  fi
  PATH=$BIN_DIR:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    setsid "${NS[@]}" "$HULLD" --config "$W/config.toml" >>"$W/hulld.log" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  local i
  for ((i = 0; i < 150; i++)); do
    [[ -S $SOCK ]] && break
    pid_alive "$(cat "$PIDFILE")" || { tail -n 30 "$W/hulld.log" >&2; die "hulld exited (log: $W/hulld.log)"; }
    sleep 0.1
  done
  [[ -S $SOCK ]] || die "hulld socket $SOCK did not appear (log: $W/hulld.log)"
  log "hulld ready: socket $SOCK, pid $(cat "$PIDFILE"), log $W/hulld.log"
  print_env
}

# PIDs of shims started for this daemon: their command line carries our socket.
our_shims() {
  local p cmd
  for p in /proc/[0-9]*; do
    cmd=$( { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
    [[ $cmd == *containerd-shim*"-address $SOCK "* ]] && echo "${p#/proc/}"
  done
  return 0
}

stop() {
  local p
  if running; then
    if [[ -x $CRICTL ]]; then
      "$CRICTL" --runtime-endpoint "unix://$SOCK" --image-endpoint "unix://$SOCK" --timeout 60s rmp -fa >/dev/null 2>&1 || true
    fi
    stop_pid "$PIDFILE" 30
  fi
  rm -f "$PIDFILE"
  for p in $(our_shims); do
    # A shim's containers live in cgroups of their own: kill them through
    # the shim's children before the shim.
    pkill -KILL -P "$p" 2>/dev/null || true
    kill -KILL "$p" 2>/dev/null || true
  done
  if declare -F registry_stop >/dev/null; then registry_stop "$(registry_name)"; fi
  local m
  while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done < <(awk -v w="$W/" 'index($5, w) == 1 && $5 !~ /\/ns\/(net|ipc|uts)$/ {print $5}' /proc/self/mountinfo | sort -r)
  drop_namespaces
  log "stopped"
}

case $CMD in
  start) start ;;
  stop) stop ;;
  status) if running; then echo "running"; print_env; else echo "not running"; fi ;;
  *) sed -n '2,25p' "$0"; exit 2 ;;
esac
