package spec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/client/oci"
	"github.com/hullrt/hull/core/containers"
)

// Profile names of the deprecated string form of security profiles
// (seccomp_profile_path, apparmor_profile) and of
// Options.UnsetSeccompProfile.
const (
	profileRuntimeDefault = "runtime/default"
	profileDockerDefault  = "docker/default"
	profileUnconfined     = "unconfined"
	profileLocalhostPfx   = "localhost/"
)

// maxSeccompProfileSize bounds what is read of a localhost seccomp
// profile: moby's default profile is about 20 KiB; a file a thousand times
// larger is not a profile.
const maxSeccompProfileSize = 16 << 20

// profile is a parsed security profile: its type and, for Localhost, the
// reference (a file for seccomp, a profile name for AppArmor).
type profile struct {
	kind runtime.SecurityProfile_ProfileType
	ref  string
}

// ParseProfileName parses the string form of a security profile, as the
// deprecated seccomp_profile_path and apparmor_profile fields and hulld's
// unset_seccomp_profile setting write it: "runtime/default" (or
// "docker/default"), "unconfined", or "localhost/<ref>". "" is returned
// as ok=false: the caller decides what no profile means. Anything else is
// InvalidArgument.
func ParseProfileName(name string) (t runtime.SecurityProfile_ProfileType, ref string, ok bool, err error) {
	switch {
	case name == "":
		return 0, "", false, nil
	case name == profileRuntimeDefault || name == profileDockerDefault:
		return runtime.SecurityProfile_RuntimeDefault, "", true, nil
	case name == profileUnconfined:
		return runtime.SecurityProfile_Unconfined, "", true, nil
	case strings.HasPrefix(name, profileLocalhostPfx) && len(name) > len(profileLocalhostPfx):
		return runtime.SecurityProfile_Localhost, strings.TrimPrefix(name, profileLocalhostPfx), true, nil
	}
	return 0, "", false, fmt.Errorf("security profile %q (want %q, %q or %q<profile>): %w",
		name, profileRuntimeDefault, profileUnconfined, profileLocalhostPfx, errdefs.ErrInvalidArgument)
}

// checkProfile validates a SecurityProfile message: a known type, and a
// localhost_ref exactly when the type is Localhost.
func checkProfile(what string, sp *runtime.SecurityProfile) (profile, error) {
	switch sp.GetProfileType() {
	case runtime.SecurityProfile_RuntimeDefault, runtime.SecurityProfile_Unconfined:
		if sp.GetLocalhostRef() != "" {
			return profile{}, fmt.Errorf("%s profile of type %s names localhost_ref %q, which only a Localhost profile may: %w",
				what, sp.GetProfileType(), sp.GetLocalhostRef(), errdefs.ErrInvalidArgument)
		}
		return profile{kind: sp.GetProfileType()}, nil
	case runtime.SecurityProfile_Localhost:
		ref := strings.TrimPrefix(sp.GetLocalhostRef(), profileLocalhostPfx)
		if ref == "" {
			return profile{}, fmt.Errorf("%s profile of type Localhost has no localhost_ref: %w", what, errdefs.ErrInvalidArgument)
		}
		return profile{kind: runtime.SecurityProfile_Localhost, ref: ref}, nil
	}
	return profile{}, fmt.Errorf("%s profile type %d is unknown: %w", what, int32(sp.GetProfileType()), errdefs.ErrInvalidArgument)
}

// seccompProfile picks the seccomp profile: the SecurityProfile if set,
// else the deprecated path, else Options.UnsetSeccompProfile, else
// unconfined (the CRI default).
func seccompProfile(sp *runtime.SecurityProfile, deprecatedPath, unset string) (profile, error) {
	var p profile
	if sp != nil {
		var err error
		if p, err = checkProfile("seccomp", sp); err != nil {
			return profile{}, err
		}
	} else {
		name := deprecatedPath
		if name == "" {
			name = unset
		}
		t, ref, ok, err := ParseProfileName(name)
		if err != nil {
			return profile{}, fmt.Errorf("seccomp: %w", err)
		}
		if !ok {
			t = runtime.SecurityProfile_Unconfined
		}
		p = profile{kind: t, ref: ref}
	}
	if p.kind == runtime.SecurityProfile_Localhost && !filepath.IsAbs(p.ref) {
		return profile{}, fmt.Errorf("seccomp localhost profile %q is not an absolute path: %w", p.ref, errdefs.ErrInvalidArgument)
	}
	return p, nil
}

// withSeccomp applies seccomp profile p; a privileged process gets none.
// It must come after the options that set capabilities, which the default
// and localhost profiles read.
func withSeccomp(p profile, privileged bool) oci.SpecOpts {
	if privileged || p.kind == runtime.SecurityProfile_Unconfined {
		return oci.WithSeccompUnconfined
	}
	if p.kind == runtime.SecurityProfile_RuntimeDefault {
		return oci.WithSeccompDefault
	}
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		data, err := readProfileFile(p.ref)
		if err != nil {
			return err
		}
		sc, err := LoadSeccompProfile(data, s)
		if err != nil {
			return fmt.Errorf("seccomp profile %s: %w", p.ref, err)
		}
		ensureLinux(s)
		s.Linux.Seccomp = sc
		return nil
	}
}

func readProfileFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("seccomp profile %s: %w", name, errors.Join(err, errdefs.ErrNotFound))
		}
		return nil, fmt.Errorf("seccomp profile %s: %w", name, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSeccompProfileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read seccomp profile %s: %w", name, err)
	}
	if len(data) > maxSeccompProfileSize {
		return nil, fmt.Errorf("seccomp profile %s is larger than %d bytes: %w", name, maxSeccompProfileSize, errdefs.ErrInvalidArgument)
	}
	return data, nil
}

// LoadSeccompProfile decodes a seccomp profile in Docker's JSON format
// (moby/profiles/seccomp, the format of Kubernetes' localhost profiles)
// for the capabilities and architecture of s. A profile without a default
// action and without rules means no filter (nil). Bad JSON or a bad rule
// is InvalidArgument.
func LoadSeccompProfile(data []byte, s *oci.Spec) (*specs.LinuxSeccomp, error) {
	sc, err := seccomp.LoadProfile(string(data), s)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	return sc, nil
}

// appArmorProfile picks the AppArmor profile: the SecurityProfile if set,
// else the deprecated string, else the runtime default.
func appArmorProfile(sp *runtime.SecurityProfile, deprecated string) (profile, error) {
	if sp != nil {
		return checkProfile("apparmor", sp)
	}
	t, ref, ok, err := ParseProfileName(deprecated)
	if err != nil {
		return profile{}, fmt.Errorf("apparmor: %w", err)
	}
	if !ok {
		t = runtime.SecurityProfile_RuntimeDefault
	}
	return profile{kind: t, ref: ref}, nil
}

// withAppArmor applies AppArmor profile p. Without AppArmor on the host,
// the default and unconfined are what the process gets anyway, and a named
// profile cannot be had, which is an error rather than a container that
// runs unconfined while its pod asked for a profile. Hull loads no
// default profile of its own, so runtime/default leaves the process
// unconfined also where AppArmor is enabled.
func withAppArmor(p profile, privileged, enabled bool) (oci.SpecOpts, error) {
	if !enabled {
		if p.kind == runtime.SecurityProfile_Localhost && !privileged {
			return nil, fmt.Errorf("apparmor profile %q: AppArmor is not enabled on this host: %w", p.ref, errdefs.ErrFailedPrecondition)
		}
		return nil, nil
	}
	name := ""
	switch {
	case privileged:
	case p.kind == runtime.SecurityProfile_Unconfined:
		name = profileUnconfined
	case p.kind == runtime.SecurityProfile_Localhost:
		name = p.ref
	}
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		ensureProcess(s)
		s.Process.ApparmorProfile = name
		return nil
	}, nil
}

// checkSELinux refuses SELinux options on a host that enforces SELinux:
// hull does not label processes and mounts, and a container that runs
// with the wrong label is worse than one that does not start. Without
// SELinux the options mean nothing and are ignored.
func checkSELinux(o *runtime.SELinuxOption, enabled bool) error {
	if !enabled || o == nil || (o.GetUser() == "" && o.GetRole() == "" && o.GetType() == "" && o.GetLevel() == "") {
		return nil
	}
	return fmt.Errorf("selinux options %q: hull does not apply SELinux labels: %w",
		strings.Join([]string{o.GetUser(), o.GetRole(), o.GetType(), o.GetLevel()}, ":"), errdefs.ErrFailedPrecondition)
}
