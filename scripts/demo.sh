#!/usr/bin/env bash
# The main job: start hulld on a temporary root, create a namespace, import a
# busybox image built here from Debian's static busybox, list it, look at its
# content, and stop hulld cleanly. Run through `make demo` (which builds first).
set -euo pipefail
cd "$(dirname "$0")/.."

tmp=$(mktemp -d /tmp/hull-demo.XXXXXX)
sock="$tmp/state/hull.sock"
hulld_pid=
cleanup() {
	if [ -n "$hulld_pid" ] && kill -0 "$hulld_pid" 2>/dev/null; then
		kill -TERM "$hulld_pid"; wait "$hulld_pid" || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
hullctl() { echo "\$ hullctl $*" >&2; bin/hullctl --address "$sock" "$@"; }

step "start hulld on $tmp"
bin/hulld --root "$tmp/root" --state "$tmp/state" --address "$sock" --config "$tmp/none.toml" 2>"$tmp/hulld.log" &
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

step "walk its content"
hullctl -n demo content ls
manifest=$(bin/hullctl --address "$sock" -n demo images ls -q --format json | grep -o 'sha256:[0-9a-f]*' | head -1 || true)
hullctl -n demo plugins ls | head -5

step "stop hulld"
kill -TERM "$hulld_pid"; wait "$hulld_pid"; hulld_pid=
tail -3 "$tmp/hulld.log"
echo "demo done"
