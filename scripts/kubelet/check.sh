#!/usr/bin/env bash
# check.sh WORKDIR [stop]
#
# Runs a real kubelet (v1.37.2, standalone, static pods, cgroupfs,
# failCgroupV1: false) against the CRI runtime that
# `scripts/hull-cri.sh start WORKDIR` runs, inside that runtime's network,
# IPC and UTS namespaces, and checks what docs/kubernetes.md promises a node:
# an exec readiness probe passes; two containers share an emptyDir; a pod
# reaches another pod's IP over the bridge; crictl exec works; a container
# killed with SIGKILL is restarted; crictl logs, the kubelet's /containerLogs
# and the CRI-format files under podLogsDir hold the output; /stats/summary
# lists the containers; pods whose manifests go are stopped within seconds
# and removed by the kubelet's GC; the runtime's config does not set
# restrict_oom_score_adj. Prints one PASS/FAIL line per check and exits
# non-zero if any failed. Not part of make test: building the kubelet takes
# minutes.
#
# It stops what it starts: the kubelet by its PID, the pods of namespace
# hull-check, the kubelet's cgroup tree, the bind mount the kubelet makes of
# its root directory, KUBELET_DIR. The runtime is left running.
#
# Environment:
#   KUBELET        the kubelet binary (default $KUBELET_BUILD/kubelet, built
#                  there when missing: a throwaway module requiring
#                  k8s.io/kubernetes v1.37.2, every staging module replaced
#                  by its v0.37.2)
#   KUBELET_BUILD  that module's directory (${TMPDIR:-/tmp}/kubelet-build)
#   CRICTL         crictl (default: on PATH, else the critest kit's bin/crictl)
#   CRI_SOCKET     the runtime's CRI socket (WORKDIR/hulld.sock)
#   CRI_NSDIR      the runtime's namespace files net, ipc, uts (WORKDIR/ns)
#   RUNTIME_CONFIG the runtime's config file (WORKDIR/config.toml)
#   KUBELET_DIR    the kubelet's root, manifests and pod logs
#                  (WORKDIR/kubelet-check); removed at the end
#   KEEP=1         leave the kubelet and its pods running (for poking);
#                  `check.sh WORKDIR stop` stops and removes them later
#
# The same checks run against Debian's containerd 1.6 started by
# ../shared/critest/containerd16.sh:
#   CRI_SOCKET=$W/containerd.sock CRI_NSDIR=$W/ns check.sh $W
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
W=${1:-}
[[ -n $W ]] || { sed -n '2,40p' "$0"; exit 2; }
W=$(cd "$W" && pwd)

KUBERNETES_VERSION=v1.37.2
KUBELET_BUILD=${KUBELET_BUILD:-${TMPDIR:-/tmp}/kubelet-build}
KUBELET=${KUBELET:-$KUBELET_BUILD/kubelet}
SOCK=${CRI_SOCKET:-$W/hulld.sock}
NSDIR=${CRI_NSDIR:-$W/ns}
RUNTIME_CONFIG=${RUNTIME_CONFIG:-$W/config.toml}
KDIR=${KUBELET_DIR:-$W/kubelet-check}
NODE=hull-node
PODNS=hull-check
# A cgroup root of this run's own: a kubelet removes the pod cgroups under
# its root that it does not know, so two kubelets must never share one.
CGROOT=hull-kubelet-$(echo -n "$KDIR" | md5sum | cut -c1-8)
KPID=$KDIR/kubelet.pid

if [[ -z ${CRICTL:-} ]]; then
  if command -v crictl >/dev/null; then CRICTL=$(command -v crictl); else CRICTL=$REPO/../shared/critest/bin/crictl; fi
fi

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
pid_alive() { [[ -n $1 && -d /proc/$1 ]] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

innet() { nsenter "--net=$NSDIR/net" -- "$@"; }
# crictl, its stderr dropped (it warns of a missing /etc/crictl.yaml).
crictl() { crictl_stderr "$@" 2>/dev/null; }
crictl_stderr() { timeout 60 nsenter "--net=$NSDIR/net" -- "$CRICTL" --runtime-endpoint "unix://$SOCK" --image-endpoint "unix://$SOCK" --timeout 30s "$@"; }
kget() { innet curl -sS --max-time 10 "http://127.0.0.1:10255$1"; }
# The kubelet's authenticated port: anonymous and AlwaysAllow here, its
# certificate self-signed.
kget_secure() { innet curl -sSk --max-time 10 "https://127.0.0.1:10250$1"; }

PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); printf 'PASS  %s\n' "$*"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL  %s\n' "$*"; }

# poll SECONDS COMMAND...: run COMMAND every half second until it succeeds
# or SECONDS pass.
poll() {
  local until=$((SECONDS + $1)); shift
  while ((SECONDS < until)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  "$@" >/dev/null 2>&1
}

build_kubelet() {
  local d=$KUBELET_BUILD staging m gomod
  command -v go >/dev/null || die "no kubelet at $KUBELET and no go to build one"
  log "building kubelet $KUBERNETES_VERSION in $d (several minutes)"
  mkdir -p "$d"
  (
    cd "$d"
    [[ -f go.mod ]] || go mod init kubeletbuild
    cat >main.go <<'EOF'
package main

import (
	"context"
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	os.Exit(cli.Run(app.NewKubeletCommand(context.Background())))
}
EOF
    gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | jq -r .GoMod)
    # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces
    # them by directories of its own tree; outside it they are the
    # published v0.x of the same release.
    staging=$(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/.*#\1#p' "$gomod")
    [[ -n $staging ]] || die "no staging modules in $gomod"
    for m in $staging; do go mod edit -replace "$m=$m@v0${KUBERNETES_VERSION#v1}"; done
    go get "k8s.io/kubernetes@$KUBERNETES_VERSION"
    go mod tidy
    nice go build -o kubelet .
  )
  KUBELET=$d/kubelet
}

# The mount points of the cgroup hierarchies: each v1 controller's and the
# unified one on a hybrid host, /sys/fs/cgroup alone on a v2 host.
cgroup_hierarchies() { findmnt -rn -t cgroup,cgroup2 -o TARGET; }

start_kubelet() {
  mkdir -p "$KDIR/manifests" "$KDIR/pod-logs" "$KDIR/root"
  sed -e "s#@DIR@#$KDIR#g" -e "s#@SOCKET@#$SOCK#g" -e "s#@CGROUP_ROOT@#$CGROOT#g" \
    "$HERE/kubelet.yaml.in" >"$KDIR/kubelet.yaml"
  # The kubelet wants its cgroup root to exist in every hierarchy.
  local h
  for h in $(cgroup_hierarchies); do mkdir -p "$h/$CGROOT"; done
  setsid nsenter "--net=$NSDIR/net" "--ipc=$NSDIR/ipc" "--uts=$NSDIR/uts" -- \
    "$KUBELET" --config="$KDIR/kubelet.yaml" --root-dir="$KDIR/root" \
    --cert-dir="$KDIR/root/pki" --hostname-override=$NODE \
    >"$KDIR/kubelet.log" 2>&1 </dev/null &
  echo $! >"$KPID"
  log "kubelet pid $(cat "$KPID"), log $KDIR/kubelet.log, cgroup root /$CGROOT"
}

our_pods() { crictl pods --namespace "$PODNS" -q; }

cleanup() {
  local rc=$? pid i p m h
  if [[ ${KEEP:-0} == 1 ]]; then
    log "KEEP=1: kubelet (pid $(cat "$KPID" 2>/dev/null)) and pods left running"
    return $rc
  fi
  rm -f "$KDIR"/manifests/*.yaml
  if [[ -f $KPID ]]; then
    pid=$(cat "$KPID")
    if pid_alive "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      for ((i = 0; i < 100; i++)); do pid_alive "$pid" || break; sleep 0.1; done
      pid_alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$KPID"
  fi
  if [[ -S $SOCK ]]; then
    for p in $(our_pods); do crictl rmp -f "$p" >/dev/null || log "could not remove pod $p"; done
  fi
  while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
  done < <(awk -v k="$KDIR" '$5 == k || index($5, k "/") == 1 {print $5}' /proc/self/mountinfo | sort -r)
  rm -rf "$KDIR"
  for h in $(cgroup_hierarchies); do
    [[ -d $h/$CGROOT ]] || continue
    find "$h/$CGROOT" -depth -type d -exec rmdir {} + 2>/dev/null || log "cgroup $h/$CGROOT not removed"
  done
  return $rc
}

# --- helpers over the kubelet's and the runtime's view ----------------------

pod_json() { kget /pods | jq -e --arg n "$1-$NODE" --arg ns "$PODNS" '.items[] | select(.metadata.name == $n and .metadata.namespace == $ns)'; }
pod_ready() { pod_json "$1" | jq -e '[.status.conditions[]? | select(.type == "Ready" and .status == "True")] | length == 1'; }
restart_count() { pod_json "$1" | jq -r --arg c "$2" '.status.containerStatuses[]? | select(.name == $c) | .restartCount'; }
pod_ip() { pod_json "$1" | jq -r '.status.podIP // empty'; }
sandbox_id() { crictl pods --namespace "$PODNS" --name "^$1-$NODE\$" --state ready -q | head -n1; }
container_id() { crictl ps --pod "$1" --name "^$2\$" --state running -q | head -n1; }
restarted() { [[ $(restart_count "$1" "$2") -ge 1 ]] && [[ -n $(container_id "$(sandbox_id "$1")" "$2") ]]; }
# Both fail when crictl does: an unreachable runtime lists nothing.
pods_not_ready() { local out; out=$(crictl pods --namespace "$PODNS" --state ready -q) && [[ -z $out ]]; }
pods_gone() { local out; out=$(our_pods) && [[ -z $out ]]; }
pod_cgroups() { local h; for h in $(cgroup_hierarchies); do find "$h/$CGROOT" -type d -name 'pod*' 2>/dev/null; done; }
no_pod_cgroups() { [[ -z $(pod_cgroups) ]]; }

main() {
  if [[ ${1:-} == stop ]]; then
    KEEP=0
    cleanup
    log "stopped"
    exit 0
  fi
  [[ -S $SOCK ]] || die "no runtime socket at $SOCK: scripts/hull-cri.sh start $W first"
  [[ -e $NSDIR/net ]] || die "no namespaces under $NSDIR"
  [[ -x $CRICTL ]] || die "crictl not found (CRICTL=$CRICTL): ../shared/critest/build.sh builds one"
  [[ -x $KUBELET ]] || build_kubelet
  if [[ -f $KPID ]] && pid_alive "$(cat "$KPID")"; then die "a kubelet already runs for $KDIR (pid $(cat "$KPID"))"; fi
  trap cleanup EXIT
  rm -rf "$KDIR"
  start_kubelet

  if poll 60 kget /healthz; then pass "kubelet healthy"; else fail "kubelet healthy (log $KDIR/kubelet.log)"; return; fi

  if [[ -f $RUNTIME_CONFIG ]] && grep -Eq '^[[:space:]]*restrict_oom_score_adj[[:space:]]*=[[:space:]]*true' "$RUNTIME_CONFIG"; then
    fail "runtime config sets restrict_oom_score_adj = true"
  else
    pass "no restrict_oom_score_adj in the runtime's config"
  fi

  cp "$HERE/web.yaml" "$HERE/client.yaml" "$KDIR/manifests/"
  if poll 120 pod_ready web; then
    pass "web pod Ready: exec readiness probe passes"
  else
    fail "web pod Ready: $(pod_json web | jq -c '.status.containerStatuses' 2>&1)"
  fi
  poll 60 pod_ready client || true
  local web client writer server webip out
  local cli rc
  web=$(sandbox_id web) || true
  client=$(sandbox_id client) || true
  writer=$(container_id "$web" writer) || true
  server=$(container_id "$web" server) || true
  cli=$(container_id "$client" client) || true
  webip=$(pod_ip web) || true
  log "web pod $web ($webip): writer $writer, server $server; client pod $client: $cli"

  out=$(crictl exec "$cli" echo exec-ok) || true
  if [[ $out == exec-ok ]]; then pass "crictl exec"; else fail "crictl exec: got '$out'"; fi
  # crictl itself exits 1 and names the command's exit code.
  out=$(crictl_stderr exec "$cli" sh -c 'exit 3' 2>&1) && rc=0 || rc=$?
  if [[ $rc != 0 && $out == *"exit code 3"* ]]; then pass "crictl exec exit code"; else fail "crictl exec exit code: crictl said '$out'"; fi

  out=$(crictl exec "$server" cat /shared/www/index.html) || true
  if [[ $out == hello* ]]; then pass "emptyDir shared: server reads the writer's page ('$out')"; else fail "emptyDir shared: server read '$out'"; fi

  out=$(crictl exec "$cli" wget -q -O - "http://$webip:8080/index.html") || true
  if [[ $out == hello* ]]; then pass "pod to pod over the bridge: client got '$out' from $webip"; else fail "pod to pod: client got '$out' from '$webip'"; fi

  local logpath
  logpath=$(crictl inspect -o json "$writer" | jq -r '.status.logPath // empty') || true
  if [[ $logpath == "$KDIR/pod-logs/"* ]] && head -n1 "$logpath" | grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9:]+) stdout F wrote 0$'; then
    pass "CRI-format log file under podLogsDir ($logpath)"
  else
    fail "CRI-format log file: path '$logpath', first line '$(head -n1 "$logpath" 2>&1)'"
  fi
  if crictl logs "$writer" | grep -qx 'wrote 0'; then pass "crictl logs"; else fail "crictl logs: no 'wrote 0'"; fi
  if kget_secure "/containerLogs/$PODNS/web-$NODE/writer" | grep -qx 'wrote 0'; then
    pass "kubelet /containerLogs"
  else
    fail "kubelet /containerLogs: $(kget_secure "/containerLogs/$PODNS/web-$NODE/writer" 2>&1 | head -n3)"
  fi

  local q='[.pods[] | select(.podRef.namespace == $ns) | .podRef.name as $p | .containers[] | select(.cpu.usageCoreNanoSeconds > 0 and .memory.workingSetBytes > 0) | "\($p)/\(.name)"] | sort | join(" ")'
  summary_lists() { [[ $(kget /stats/summary | jq -r --arg ns "$PODNS" "$q") == "client-$NODE/client web-$NODE/server web-$NODE/writer" ]]; }
  if poll 60 summary_lists; then
    pass "/stats/summary lists the containers with CPU and memory"
  else
    fail "/stats/summary: $(kget /stats/summary 2>&1 | head -c 300)"
  fi
  if kget /stats/summary | jq -e '.node.runtime.imageFs.capacityBytes > 0 and .node.runtime.imageFs.usedBytes > 0' >/dev/null 2>&1; then
    pass "/stats/summary reports the image filesystem"
  else
    fail "/stats/summary image filesystem: $(kget /stats/summary 2>&1 | jq -c .node.runtime 2>&1 | head -c 300)"
  fi

  local pid
  pid=$(crictl inspect -o json "$writer" | jq -r '.info.pid // empty') || true
  if [[ -n $pid ]] && kill -KILL "$pid"; then
    if poll 60 restarted web writer; then
      pass "writer killed with SIGKILL (pid $pid) is restarted by the kubelet"
    else
      fail "writer not restarted: restartCount $(restart_count web writer)"
    fi
    out=$(crictl inspect -o json "$writer" | jq -r '.status.exitCode') || true
    if [[ $out == 137 ]]; then pass "killed writer exited 137"; else fail "killed writer exit code $out, want 137"; fi
  else
    fail "no pid for writer $writer in crictl inspect"
  fi

  local t0=$SECONDS
  rm -f "$KDIR/manifests/web.yaml" "$KDIR/manifests/client.yaml"
  if poll 30 pods_not_ready; then
    pass "removed manifests: pods stopped in $((SECONDS - t0))s"
  else
    fail "removed manifests: pods still ready after 30s"
  fi
  if poll 180 pods_gone; then
    pass "kubelet GC removed the pods $((SECONDS - t0))s after their manifests went"
  else
    fail "pods not removed 180s after their manifests went: $(our_pods | tr '\n' ' ')"
  fi
  if poll 60 no_pod_cgroups; then
    pass "pod cgroups removed"
  else
    fail "pod cgroups left: $(pod_cgroups | head -n3 | tr '\n' ' ')"
  fi
}

main "${2:-}"
log "$PASSED passed, $FAILED failed"
((FAILED == 0))
