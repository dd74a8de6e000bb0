#!/usr/bin/env bash
# Installs what building, testing and the demo need on a fresh Debian machine
# (as root): Go modules, and Debian's packages for the yardstick clients and
# the test fixtures. Safe to run again: it installs only what is missing.
set -euo pipefail

need=()
command -v ctr >/dev/null || need+=(containerd)          # ctr: the yardstick client
command -v runc >/dev/null || need+=(runc)
[ -x /bin/busybox ] || need+=(busybox-static)            # base of test images
command -v gcc >/dev/null || need+=(gcc)
command -v docker-registry >/dev/null || need+=(docker-registry)  # the test registry (loopback only)
command -v skopeo >/dev/null || need+=(skopeo)                    # reads what hull pushes

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
