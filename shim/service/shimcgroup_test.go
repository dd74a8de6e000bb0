package service

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
)

func TestJoinCgroupV1(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"cpu/shims", "memory/shims", "pids", "unified/shims"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := joinCgroup(root, "/shims", 42); err != nil {
		t.Fatal(err)
	}
	for d, want := range map[string]string{"cpu/shims": "42", "memory/shims": "42", "unified/shims": ""} {
		got, _ := os.ReadFile(filepath.Join(root, d, "cgroup.procs"))
		if string(got) != want {
			t.Errorf("%s/cgroup.procs = %q, want %q", d, got, want)
		}
	}
	if err := joinCgroup(root, "nosuch", 42); !errdefs.IsNotFound(err) {
		t.Errorf("missing cgroup: %v, want NotFound", err)
	}
	for _, bad := range []string{"/", "../etc", "a/../../b"} {
		if err := joinCgroup(root, bad, 42); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%q: %v, want InvalidArgument", bad, err)
		}
	}
}

func TestJoinCgroupV2(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpu memory"), 0o644)
	os.MkdirAll(filepath.Join(root, "system.slice", "shims"), 0o755)
	if err := joinCgroup(root, "system.slice/shims", 7); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(root, "system.slice", "shims", "cgroup.procs")); string(got) != "7" {
		t.Errorf("cgroup.procs = %q", got)
	}
	if err := joinCgroup(root, "nosuch", 7); !errdefs.IsNotFound(err) {
		t.Errorf("missing cgroup: %v, want NotFound", err)
	}
}
