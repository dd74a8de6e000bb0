package oci

import (
	"fmt"
	"path"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func knownNamespace(t specs.LinuxNamespaceType) bool {
	switch t {
	case specs.PIDNamespace, specs.NetworkNamespace, specs.MountNamespace, specs.IPCNamespace,
		specs.UTSNamespace, specs.UserNamespace, specs.CgroupNamespace, specs.TimeNamespace:
		return true
	}
	return false
}

// Validate reports obviously broken specs before they reach a runtime,
// whose errors are far less clear: no process, no arguments, a relative
// working directory, no root path, a mount without a destination, an
// unknown or repeated namespace type, ids above 2^31-1. The error is
// InvalidArgument and names the field.
func Validate(s *Spec) error {
	if s == nil {
		return fmt.Errorf("spec is nil: %w", errdefs.ErrInvalidArgument)
	}
	if s.Process == nil {
		return fmt.Errorf("spec field %q is missing: %w", "process", errdefs.ErrInvalidArgument)
	}
	if len(s.Process.Args) == 0 || s.Process.Args[0] == "" {
		return fmt.Errorf("spec field %q is empty: %w", "process.args", errdefs.ErrInvalidArgument)
	}
	if !path.IsAbs(s.Process.Cwd) {
		return fmt.Errorf("spec field %q is %q, which is not absolute: %w", "process.cwd", s.Process.Cwd, errdefs.ErrInvalidArgument)
	}
	if s.Process.User.UID > maxID {
		return fmt.Errorf("spec field %q is %d, above %d: %w", "process.user.uid", s.Process.User.UID, maxID, errdefs.ErrInvalidArgument)
	}
	if s.Process.User.GID > maxID {
		return fmt.Errorf("spec field %q is %d, above %d: %w", "process.user.gid", s.Process.User.GID, maxID, errdefs.ErrInvalidArgument)
	}
	for _, g := range s.Process.User.AdditionalGids {
		if g > maxID {
			return fmt.Errorf("spec field %q holds %d, above %d: %w", "process.user.additionalGids", g, maxID, errdefs.ErrInvalidArgument)
		}
	}
	if s.Root == nil || s.Root.Path == "" {
		return fmt.Errorf("spec field %q is empty: %w", "root.path", errdefs.ErrInvalidArgument)
	}
	for i, m := range s.Mounts {
		if m.Destination == "" {
			return fmt.Errorf("spec field %q has no destination (source %q): %w", fmt.Sprintf("mounts[%d].destination", i), m.Source, errdefs.ErrInvalidArgument)
		}
	}
	if s.Linux != nil {
		seen := map[specs.LinuxNamespaceType]bool{}
		for i, ns := range s.Linux.Namespaces {
			field := fmt.Sprintf("linux.namespaces[%d].type", i)
			if !knownNamespace(ns.Type) {
				return fmt.Errorf("spec field %q is %q, an unknown namespace type: %w", field, ns.Type, errdefs.ErrInvalidArgument)
			}
			if seen[ns.Type] {
				return fmt.Errorf("spec field %q repeats namespace type %q: %w", field, ns.Type, errdefs.ErrInvalidArgument)
			}
			seen[ns.Type] = true
		}
	}
	return nil
}
