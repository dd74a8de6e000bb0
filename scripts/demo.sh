#!/usr/bin/env bash
# The main job: start hulld on a temporary root, create a namespace, import a
# busybox image built here from Debian's static busybox, run a container from
# it (hullctl run --rm), run one in the background and look at it (containers
# and tasks ls, exec, ps), stop it, remove the image, and stop hulld cleanly.
# Run through `make demo` (which builds first; hulld finds the shim
# containerd-shim-hull-v2 next to itself in bin/).
set -euo pipefail
cd "$(dirname "$0")/.."

tmp=$(mktemp -d /tmp/hull-demo.XXXXXX)
sock="$tmp/state/hull.sock"
hulld_pid=
cleanup() {
	mountpoint -q "$tmp/rootfs" 2>/dev/null && umount "$tmp/rootfs"
	# A failed run may leave the background container: kill it, its shim
	# goes with its last task.
	if [ -S "$sock" ]; then
		bin/hullctl --address "$sock" -n demo tasks kill -s SIGKILL web >/dev/null 2>&1 || true
		sleep 0.5
		bin/hullctl --address "$sock" -n demo tasks rm web >/dev/null 2>&1 || true
		bin/hullctl --address "$sock" -n demo containers rm web >/dev/null 2>&1 || true
	fi
	if [ -n "$hulld_pid" ] && kill -0 "$hulld_pid" 2>/dev/null; then
		kill -TERM "$hulld_pid"; wait "$hulld_pid" || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
hullctl() { echo "\$ hullctl $*" >&2; bin/hullctl --address "$sock" "$@"; }

step "start hulld on $tmp"
printf "version = 3\n" >"$tmp/config.toml"
bin/hulld --root "$tmp/root" --state "$tmp/state" --address "$sock" --config "$tmp/config.toml" 2>"$tmp/hulld.log" &
hulld_pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { cat "$tmp/hulld.log"; exit 1; }
hullctl version

step "create a namespace"
hullctl namespaces create demo owner=demo
hullctl namespaces ls

step "build a busybox image locally and import it"
go run ./internal/testimage/mkimage -o "$tmp/busybox.tar" -ref docker.io/library/busybox:demo
hullctl -n demo images import "$tmp/busybox.tar"
hullctl -n demo images ls

step "walk its content: the manifest, its config and its layer"
hullctl -n demo content ls
manifest=$(bin/hullctl --address "$sock" -n demo images ls --format json | grep -o '"digest": *"sha256:[0-9a-f]*"' | head -1 | grep -o 'sha256:[0-9a-f]*')
echo "\$ hullctl -n demo content get $manifest"
bin/hullctl --address "$sock" -n demo content get "$manifest"; echo

step "the API is containerd's: Debian's ctr reads the same store"
if command -v ctr >/dev/null; then
	echo "\$ ctr -n demo images ls"
	ctr --address "$sock" -n demo images ls
fi

step "run a container from it: hullctl run --rm (hulld starts hull's shim, the shim runs runc)"
hullctl -n demo run --rm --fifo-dir "$tmp/fifo" --name hello docker.io/library/busybox:demo \
	sh -c 'echo "hello from a hull container: $(hostname), pid $$, user $(id -u)"'

step "the exit code of hullctl run is the container's"
set +e
hullctl -n demo run --rm --fifo-dir "$tmp/fifo" --name exits docker.io/library/busybox:demo sh -c 'exit 7'
code=$?
set -e
echo "exit code: $code"
[ "$code" = 7 ]

step "run one in the background, then look at it"
hullctl -n demo run -d --name web docker.io/library/busybox:demo sleep 600
hullctl -n demo containers ls
hullctl -n demo tasks ls
hullctl -n demo tasks exec --fifo-dir "$tmp/fifo" --exec-id look web sh -c 'echo "inside: $(cat /proc/1/cmdline | tr "\0" " ")"; cat /proc/net/dev | tail -n +3 | cut -d: -f1'
hullctl -n demo tasks ps web

step "stop it and remove it"
hullctl -n demo tasks kill -s SIGKILL web
for _ in $(seq 50); do bin/hullctl --address "$sock" -n demo tasks ls | grep -q "web.*STOPPED" && break; sleep 0.1; done
hullctl -n demo tasks rm web
hullctl -n demo containers rm web
hullctl -n demo containers ls

step "remove the image: garbage collection frees its content and snapshots"
hullctl -n demo images rm --sync docker.io/library/busybox:demo
hullctl -n demo content ls
hullctl -n demo snapshots ls

step "stop hulld"
kill -TERM "$hulld_pid"; wait "$hulld_pid"; hulld_pid=
tail -3 "$tmp/hulld.log"
echo "demo done"
