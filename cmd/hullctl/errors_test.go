package main_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/core/containers"
	"github.com/hullrt/hull/internal/hulltest"
)

// TestMissingObjectsAreNamedOnce pins what hullctl prints about objects
// that are not there: each message names the object once and says "not
// found" once.
func TestMissingObjectsAreNamedOnce(t *testing.T) {
	h := start(t)
	// A container without a task, for the task commands.
	c, err := client.New(h.d.Address, client.WithDefaultNamespace("default"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	spec, err := typeurl.MarshalAny(&specs.Spec{Version: specs.Version})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ContainerService().Create(context.Background(), containers.Container{
		ID: "idle", Runtime: containers.RuntimeInfo{Name: client.DefaultRuntime}, Spec: spec,
	}); err != nil {
		t.Fatal(err)
	}
	const dgst = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"images", "rm", "example.com/nope:1"}, `image "example.com/nope:1": not found`},
		{[]string{"images", "label", "example.com/nope:1"}, `image "example.com/nope:1": not found`},
		{[]string{"containers", "info", "nope"}, `container "nope" in namespace "default": not found`},
		{[]string{"containers", "rm", "nope"}, `container "nope" in namespace "default": not found`},
		{[]string{"containers", "create", "example.com/nope:1", "c1"}, `image "example.com/nope:1" not found in namespace "default": pull or import it first`},
		{[]string{"tasks", "kill", "nope"}, `container "nope" in namespace "default": not found`},
		{[]string{"snapshots", "info", "nope"}, `snapshot nope does not exist: not found`},
		{[]string{"snapshots", "rm", "nope"}, `snapshot nope does not exist: not found`},
		{[]string{"leases", "rm", "nope"}, `lease "nope": not found`},
		{[]string{"content", "get", dgst}, "content digest " + dgst + ": not found"},
		{[]string{"content", "rm", dgst}, "content digest " + dgst + ": not found"},
		{[]string{"content", "abort", "nope"}, `ingest "nope": not found`},
		{[]string{"namespaces", "rm", "nope"}, `namespace "nope": not found`},
		{[]string{"namespaces", "label", "nope"}, `namespace "nope": not found`},
		{[]string{"content", "nope"}, `content: unknown command "nope" (see hullctl content --help)`},
		{[]string{"nope"}, `unknown command "nope" (see hullctl --help)`},
	} {
		r := h.run("", tc.args...)
		if want := "hullctl: " + tc.want + "\n"; r.code != 1 || r.stderr != want {
			t.Errorf("hullctl %s: exit %d, stderr %q; want exit 1, %q", strings.Join(tc.args, " "), r.code, r.stderr, want)
		}
	}
	for _, args := range [][]string{{"tasks", "kill", "idle"}, {"tasks", "rm", "idle"}, {"tasks", "ps", "idle"}, {"tasks", "pause", "idle"}} {
		r := h.run("", args...)
		if want := "hullctl: container \"idle\" has no task\n"; r.code != 1 || r.stderr != want {
			t.Errorf("hullctl %s: exit %d, stderr %q; want exit 1, %q", strings.Join(args, " "), r.code, r.stderr, want)
		}
	}
}

// TestNoDaemon checks that every command fails the same clear way when
// nothing listens on the socket: naming it and asking whether hulld runs.
func TestNoDaemon(t *testing.T) {
	h := &harness{t: t, bin: hulltest.Build(t, "hullctl", "github.com/hullrt/hull/cmd/hullctl")}
	sock := filepath.Join(t.TempDir(), "hull.sock")
	want := "hullctl: hulld is not answering on " + sock + " (no such file or directory): is it running? see systemctl status hull\n"
	for _, args := range [][]string{
		{"images", "ls"}, {"images", "rm", "x"}, {"images", "pull", "--skip-unpack", "example.com/x:1"},
		{"containers", "ls"}, {"tasks", "ls"}, {"tasks", "kill", "x"}, {"snapshots", "ls"}, {"leases", "ls"},
		{"content", "ls"}, {"namespaces", "ls"}, {"info"}, {"events"},
	} {
		start := time.Now()
		r := h.runEnv(nil, "", append([]string{"--address", sock, "--connect-timeout", "0"}, args...)...)
		if r.code != 1 || r.stderr != want {
			t.Errorf("hullctl %s: exit %d, stderr %q; want exit 1, %q", strings.Join(args, " "), r.code, r.stderr, want)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("hullctl %s took %s to fail with --connect-timeout 0", strings.Join(args, " "), took)
		}
	}
	r := h.runEnv(nil, "", "--address", sock, "--connect-timeout", "-1s", "images", "ls")
	if r.code != 1 || !strings.Contains(r.stderr, "--connect-timeout -1s: must not be negative") {
		t.Errorf("negative --connect-timeout: exit %d, stderr %q", r.code, r.stderr)
	}
}
