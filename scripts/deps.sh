#!/usr/bin/env bash
# Installs what building, testing and the demo need on a fresh Debian machine
# (as root): Go modules, and Debian's packages for the yardstick clients and
# the test fixtures. Safe to run again: it installs only what is missing.
set -euo pipefail

# hull supports Debian's runc (1.1.5, on PATH) and upstream runc 1.5.2; the
# tests run containers under both, the latter from this fixed place
# (test/integration/runc_versions_test.go reads the same path).
RUNC_152=/usr/local/lib/hull-test/runc-1.5.2/runc

need=()
command -v ctr >/dev/null || need+=(containerd)          # ctr: the yardstick client
command -v runc >/dev/null || need+=(runc)
[ -x /bin/busybox ] || need+=(busybox-static)            # base of test images
command -v gcc >/dev/null || need+=(gcc)
command -v docker-registry >/dev/null || need+=(docker-registry)  # the test registry (loopback only)
command -v skopeo >/dev/null || need+=(skopeo)                    # reads what hull pushes
# The CRI: pod networks through Debian's CNI plugins, and what the critest
# kit (../shared/critest) builds its images and runs with.
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
command -v iptables >/dev/null || need+=(iptables)
command -v umoci >/dev/null || need+=(umoci)
command -v jq >/dev/null || need+=(jq)
command -v curl >/dev/null || need+=(curl)
command -v nsenter >/dev/null || need+=(util-linux)
# The second runc the tests run containers under (see below) links libseccomp.
[ -x "$RUNC_152" ] || {
	dpkg -s libseccomp-dev >/dev/null 2>&1 || need+=(libseccomp-dev)
	command -v pkg-config >/dev/null || need+=(pkg-config)
}

if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "deps: need root to install: ${need[*]}" >&2
		exit 1
	fi
	# Keep Debian's containerd and registry daemons from starting on install:
	# hull's tests only use ctr, and start their own registries.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	# A systemd host may still have started their daemons: stop them, the
	# tests start their own on temporary roots and loopback ports.
	for svc in containerd docker-registry; do
		if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
			systemctl disable --now "$svc" >/dev/null 2>&1 || true
		fi
	done
fi

go mod download
# containerd's conformance suites (test/compat) are a module of their own.
(cd test/compat && go mod download)

# Built once, with seccomp as upstream's releases are, into its own GOBIN so
# nothing lands on PATH; about 45 s on two cores, apt included.
if [ ! -x "$RUNC_152" ]; then
	echo "deps: building runc v1.5.2 into $(dirname "$RUNC_152")" >&2
	mkdir -p "$(dirname "$RUNC_152")"
	GOBIN="$(dirname "$RUNC_152")" CGO_ENABLED=1 GOFLAGS=-buildvcs=false \
		go install -tags seccomp github.com/opencontainers/runc@v1.5.2
fi

# containerd v2.4.2's daemon, ctr and runc shim: the yardsticks for
# containerd 2.x users (the new shim bootstrap, Transfer, config version 4).
# Built once into their own GOBIN so nothing lands on PATH; tests find them
# through internal/hulltest (Containerd2Bin), which reads the same path.
CONTAINERD2=/usr/local/lib/hull-test/containerd-2.4.2
if [ ! -x "$CONTAINERD2/containerd" ] || [ ! -x "$CONTAINERD2/ctr" ] || [ ! -x "$CONTAINERD2/containerd-shim-runc-v2" ]; then
	echo "deps: building containerd v2.4.2 into $CONTAINERD2" >&2
	mkdir -p "$CONTAINERD2"
	GOBIN="$CONTAINERD2" CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
		go install github.com/containerd/containerd/v2/cmd/containerd@v2.4.2 \
		github.com/containerd/containerd/v2/cmd/ctr@v2.4.2 \
		github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@v2.4.2
fi
