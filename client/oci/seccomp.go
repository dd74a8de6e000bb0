package oci

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hullrt/hull/core/containers"
)

// DefaultSeccompProfile returns the default seccomp profile for a process
// with the given capabilities on the running architecture: moby's
// profile (github.com/moby/profiles/seccomp), the one Docker, containerd
// and CRI-O apply, so a container is confined under hull exactly as under
// them. It is an allow list: other syscalls fail with EPERM. Calls that
// need a capability (mount and unshare need CAP_SYS_ADMIN, ptrace
// CAP_SYS_PTRACE, ...) are allowed only if the bounding set holds it, and
// clone may create no namespaces without CAP_SYS_ADMIN. It covers the
// native architecture and its compat modes (x86 and x32 on amd64), which
// a process could otherwise switch to around the filter.
func DefaultSeccompProfile(caps *specs.LinuxCapabilities) (*specs.LinuxSeccomp, error) {
	if caps == nil {
		// No capabilities at all: the profile reads the bounding set.
		caps = &specs.LinuxCapabilities{}
	}
	p, err := seccomp.GetDefaultProfile(&specs.Spec{Process: &specs.Process{Capabilities: caps}})
	if err != nil {
		return nil, fmt.Errorf("default seccomp profile for bounding set %v: %w: %w", caps.Bounding, err, errdefs.ErrInternal)
	}
	return p, nil
}

// WithSeccompDefault applies the default seccomp profile (see
// DefaultSeccompProfile) for the spec's capabilities. Apply it after the
// options that change capabilities (WithPrivileged removes any seccomp
// profile).
func WithSeccompDefault(_ context.Context, _ Client, _ *containers.Container, s *Spec) error {
	ensureLinux(s)
	var caps *specs.LinuxCapabilities
	if s.Process != nil {
		caps = s.Process.Capabilities
	}
	p, err := DefaultSeccompProfile(caps)
	if err != nil {
		return err
	}
	s.Linux.Seccomp = p
	return nil
}

// WithSeccompUnconfined removes any seccomp profile, so the process may make
// every syscall its capabilities allow.
func WithSeccompUnconfined(_ context.Context, _ Client, _ *containers.Container, s *Spec) error {
	if s.Linux != nil {
		s.Linux.Seccomp = nil
	}
	return nil
}
