package compat

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"

	hullmount "github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/internal/hulltest"
)

// errClass names the errdefs class of err, for comparing two daemons'
// answers.
func errClass(err error) string {
	for _, c := range []struct {
		is   func(error) bool
		name string
	}{
		{errdefs.IsNotFound, "NotFound"}, {errdefs.IsAlreadyExists, "AlreadyExists"},
		{errdefs.IsNotImplemented, "NotImplemented"}, {errdefs.IsInvalidArgument, "InvalidArgument"},
		{errdefs.IsFailedPrecondition, "FailedPrecondition"}, {errdefs.IsUnknown, "Unknown"},
	} {
		if err != nil && c.is(err) {
			return c.name
		}
	}
	if err == nil {
		return "ok"
	}
	return "other: " + err.Error()
}

// shape is an activation with its daemon's paths left out: which mounts
// are active and which are the system's, and whether each system mount's
// source is one of the active mount points (by index). Without full, the
// active mounts show their type only: containerd 2.4.2 records no more of
// them, so its Info answers no more (hull's does, checked apart).
func shape(info mount.ActivationInfo, full bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name=%s labels=%v", info.Name, info.Labels)
	mps := map[string]int{}
	for i, a := range info.Active {
		mps[a.MountPoint] = i
		if full {
			fmt.Fprintf(&b, " active[%d]=%s %s %v mounted=%t", i, a.Type, a.Source, a.Options, a.MountedAt != nil && a.MountPoint != "")
		} else {
			fmt.Fprintf(&b, " active[%d]=%s mounted=%t", i, a.Type, a.MountedAt != nil && a.MountPoint != "")
		}
	}
	for i, s := range info.System {
		src := s.Source
		if n, ok := mps[src]; ok {
			src = fmt.Sprintf("<active %d>", n)
		}
		fmt.Fprintf(&b, " system[%d]=%s %s %v", i, s.Type, src, s.Options)
	}
	return b.String()
}

// mountsScenario drives mm as the Mounts service's users do and returns
// what it answered, one line per call, free of daemon-specific paths, and
// Info's answer for "tmp".
func mountsScenario(t *testing.T, ctx context.Context, mm mount.Manager) ([]string, mount.ActivationInfo) {
	var tmpInfo mount.ActivationInfo
	var out []string
	tmpfs := mount.Mount{Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1m"}}
	activate := func(name string, ms []mount.Mount, opts ...mount.ActivateOpt) mount.ActivationInfo {
		info, err := mm.Activate(ctx, name, ms, opts...)
		if err != nil {
			out = append(out, fmt.Sprintf("activate %s: %s", name, errClass(err)))
			return info
		}
		out = append(out, "activate "+shape(info, true))
		return info
	}
	t.Cleanup(func() {
		for _, n := range []string{"tmp", "fmt"} {
			mm.Deactivate(context.WithoutCancel(ctx), n)
		}
	})

	activate("plain", []mount.Mount{tmpfs})
	activate("unknown", []mount.Mount{{Type: "foo/bar", Source: "x"}})
	tmp := activate("tmp", []mount.Mount{tmpfs}, mount.WithTemporary, mount.WithLabels(map[string]string{"a": "b"}))
	fmtMounts := []mount.Mount{tmpfs, {Type: "format/bind", Source: "{{ mount 0 }}", Options: []string{"rbind"}}}
	fm := activate("fmt", fmtMounts)
	// A name taken. Asked of a temporary activation, containerd 2.4.2
	// answers either AlreadyExists or a second activation that unmounts
	// the first, from one run to the next; of a lasting one, always
	// AlreadyExists.
	activate("fmt", fmtMounts)
	for _, name := range []string{"tmp", "fmt", "nosuch"} {
		info, err := mm.Info(ctx, name)
		if err != nil {
			out = append(out, fmt.Sprintf("info %s: %s", name, errClass(err)))
			continue
		}
		if name == "tmp" {
			tmpInfo = info
		}
		out = append(out, "info "+shape(info, false))
	}
	list, err := mm.List(ctx)
	var names []string
	for _, i := range list {
		names = append(names, i.Name)
	}
	slices.Sort(names)
	out = append(out, fmt.Sprintf("list %v: %s", names, errClass(err)))
	for _, a := range append(tmp.Active, fm.Active...) {
		if mps, _ := hullmount.MountedUnder(a.MountPoint); len(mps) == 0 {
			out = append(out, "not mounted: "+filepath.Base(a.MountPoint))
		}
	}
	for _, name := range []string{"tmp", "fmt", "tmp", "nosuch"} {
		out = append(out, fmt.Sprintf("deactivate %s: %s", name, errClass(mm.Deactivate(ctx, name))))
	}
	for _, a := range append(tmp.Active, fm.Active...) {
		if mps, _ := hullmount.MountedUnder(a.MountPoint); len(mps) != 0 {
			out = append(out, "still mounted: "+filepath.Base(a.MountPoint))
		}
	}
	list, err = mm.List(ctx)
	out = append(out, fmt.Sprintf("list after: %d %s", len(list), errClass(err)))
	return out, tmpInfo
}

// TestMountsWithContainerdsClient: containerd v2.4.2's mount manager
// client (Client.MountManager, over containerd.services.mounts.v1) gets
// the same answers from hulld as from containerd v2.4.2: NotImplemented
// for mounts that need no help, a temporary tmpfs activation with its bind
// mount, a formatted bind over an earlier mount, AlreadyExists, Info,
// List, Deactivate that unmounts, NotFound.
func TestMountsWithContainerdsClient(t *testing.T) {
	d := startHulld(t)
	ctrd := hulltest.StartContainerdWith(t, "", hulltest.ContainerdOptions{Binary: hulltest.Containerd2Bin(t, "containerd")})
	ctx := namespaces.WithNamespace(context.Background(), "compat")
	answers := map[string][]string{}
	for name, address := range map[string]string{"hulld": d.Address, "containerd": ctrd.Address} {
		c, err := containerd.New(address)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// The activations are held by a lease, as a client's are: an
		// activation nothing holds is for gc to take, whenever it runs.
		ctx, done, err := c.WithLease(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer done(context.WithoutCancel(ctx))
		var info mount.ActivationInfo
		answers[name], info = mountsScenario(t, ctx, c.MountManager())
		if name == "hulld" && (len(info.Active) != 1 || info.Active[0].Source != "tmpfs" || !slices.Equal(info.Active[0].Options, []string{"size=1m"})) {
			t.Errorf("hulld's Info leaves out what was mounted: %+v", info.Active)
		}
	}
	if !reflect.DeepEqual(answers["hulld"], answers["containerd"]) {
		t.Errorf("hulld answers:\n%s\ncontainerd v2.4.2 answers:\n%s", strings.Join(answers["hulld"], "\n"), strings.Join(answers["containerd"], "\n"))
	}
	t.Logf("answers:\n%s", strings.Join(answers["hulld"], "\n"))

	// Bad input hull refuses before mounting anything; containerd 2.4.2
	// finds some of it only when it mounts, in other classes (logged).
	for _, tc := range []struct {
		name string
		ms   []mount.Mount
		opts []mount.ActivateOpt
		want func(error) bool
		says string
	}{
		{"badtype", []mount.Mount{{Type: "nosuchfs", Source: "x"}}, []mount.ActivateOpt{mount.WithTemporary}, errdefs.IsInvalidArgument, `"nosuchfs"`},
		{"badindex", []mount.Mount{{Type: "tmpfs", Source: "tmpfs"}, {Type: "format/bind", Source: "{{ mount 4 }}"}}, nil, errdefs.IsInvalidArgument, "index 4"},
	} {
		for name, address := range map[string]string{"hulld": d.Address, "containerd": ctrd.Address} {
			c, err := containerd.New(address)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = c.MountManager().Activate(ctx, tc.name, tc.ms, tc.opts...)
			if name == "containerd" {
				t.Logf("containerd v2.4.2 on %s: %s (%v)", tc.name, errClass(err), err)
				c.MountManager().Deactivate(ctx, tc.name)
				continue
			}
			if !tc.want(err) || !strings.Contains(fmt.Sprint(err), tc.says) {
				t.Errorf("hulld on %s: %v, want an error naming %s", tc.name, err, tc.says)
			}
			if _, err := c.MountManager().Info(ctx, tc.name); !errdefs.IsNotFound(err) {
				t.Errorf("hulld kept a record of refused activation %s: %v", tc.name, err)
			}
		}
	}
}
