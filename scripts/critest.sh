#!/usr/bin/env bash
# critest.sh [MIN_PASSED]: runs critest (cri-tools v1.37, the offline kit in
# ../shared/critest) against hulld's CRI, started by scripts/hull-cri.sh in
# private namespaces, and ends with critest's summary line. It fails when
# critest passes fewer than MIN_PASSED specs (default: every spec this host
# allows hull to pass, see docs/kubernetes.md) or when any spec fails but
# the one no runtime can pass offline (the digest-pinned image).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KIT=${CRITEST_KIT:-$REPO/../shared/critest}
MIN=${1:-${CRITEST_MIN_PASSED:-0}}
[[ -x $KIT/run.sh ]] || { echo "critest: no kit at $KIT" >&2; exit 1; }
# shellcheck source=/dev/null
source "$KIT/lib.sh"
W=$(mktemp -d "${TMPDIR:-/tmp}/hull-critest.XXXXXX")
# Traversable, as /run and /var/lib are: the root of a pod's user
# namespace reaches its root filesystem through here.
chmod 0711 "$W"
cleanup() {
  "$REPO/scripts/hull-cri.sh" stop "$W" >/dev/null 2>&1 || true
  "$KIT/images.sh" stop >/dev/null 2>&1 || true
  [[ -n ${KEEP_WORK:-} ]] || rm -rf "$W"
}
trap cleanup EXIT
"$KIT/build.sh" >/dev/null
"$KIT/images.sh" >/dev/null
HULLD=${HULLD:-$REPO/bin/hulld} "$REPO/scripts/hull-cri.sh" start "$W" >/dev/null
set +e
"$KIT/run.sh" --nsdir "$W/ns" --label hull "$W/hulld.sock" ${CRITEST_ARGS:-} | tee "$W/run.out" | tail -n 1
set -e
summary=$(grep -E '^critest: ' "$W/run.out" | tail -n 1 || true)
[[ -n $summary ]] || { echo "critest: no summary line (see $W)" >&2; cp "$W/hulld.log" /tmp/hull-critest-hulld.log 2>/dev/null; exit 1; }
passed=$(sed -E 's/critest: ([0-9]+) passed.*/\1/' <<<"$summary")
failed=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$summary")
run=$(ls -td "$CRITEST_WORK"/runs/*-hull | head -n 1)
unexpected=$(grep '^\[failed\]' "$run/failures.txt" 2>/dev/null | grep -vc 'public image with digest should be pulled and removed' || true)
# hulld's log goes with the run's reports whenever a spec failed, so that
# a failure seen once in CI can be looked into after the work dir is gone.
if (( failed > 0 )); then
  cp "$W/hulld.log" "$run/hulld.log" 2>/dev/null || true
fi
if (( passed < MIN )); then
  echo "critest: $passed passed, fewer than the $MIN required (failures: $run/failures.txt, hulld's log: $run/hulld.log)" >&2
  exit 1
fi
if (( ${CRITEST_STRICT:-1} && unexpected > 0 )); then
  echo "critest: $unexpected unexpected failures (see $run/failures.txt)" >&2
  cat "$run/failures.txt" >&2
  exit 1
fi
