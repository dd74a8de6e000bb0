#!/usr/bin/env bash
# The main job: start hulld on a temporary root, create a namespace, import a
# busybox image built here from Debian's static busybox, list it, look at its
# content, unpack and mount its root filesystem, remove it, and stop hulld
# cleanly. Run through `make demo` (which builds first).
set -euo pipefail
cd "$(dirname "$0")/.."

tmp=$(mktemp -d /tmp/hull-demo.XXXXXX)
sock="$tmp/state/hull.sock"
hulld_pid=
cleanup() {
	mountpoint -q "$tmp/rootfs" 2>/dev/null && umount "$tmp/rootfs"
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

step "unpack it into the overlayfs snapshotter and mount its root filesystem"
hullctl -n demo images unpack docker.io/library/busybox:demo
hullctl -n demo snapshots tree
mkdir -p "$tmp/rootfs"
hullctl -n demo images mount docker.io/library/busybox:demo "$tmp/rootfs"
echo "\$ ls $tmp/rootfs/bin | head"; ls "$tmp/rootfs/bin" | head -5
echo "\$ $tmp/rootfs/bin/busybox echo ..."; "$tmp/rootfs/bin/busybox" echo "hello from the image's own busybox"
hullctl -n demo images unmount "$tmp/rootfs"

step "remove the image: garbage collection frees its content and snapshots"
hullctl -n demo images rm --sync docker.io/library/busybox:demo
hullctl -n demo content ls
hullctl -n demo snapshots ls

step "stop hulld"
kill -TERM "$hulld_pid"; wait "$hulld_pid"; hulld_pid=
tail -3 "$tmp/hulld.log"
echo "demo done"
