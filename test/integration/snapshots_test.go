package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/registrytest"
)

// TestProxySnapshotter runs hull's native snapshotter as a separate process
// behind a socket and unpacks an image into it through [proxy_plugins].
func TestProxySnapshotter(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "snap.sock")
	snap := exec.Command(hulltest.Build(t, "hull-snapshotter", "github.com/hullrt/hull/cmd/hull-snapshotter"),
		"--type", "native", "--root", filepath.Join(dir, "snaps"), "--address", sock)
	snap.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := snap.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { snap.Process.Signal(syscall.SIGTERM); snap.Wait() })
	hulltest.Eventually(t, 10*time.Second, "hull-snapshotter to listen on "+sock, func() error {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
		}
		return err
	})
	reg := registrytest.Start(t, registrytest.Options{})
	reg.Push(t, "proxy/app", "1", layeredImage())
	d := hulltest.Start(t, hulltest.Options{Config: fmt.Sprintf(`version = 3
[proxy_plugins.remote]
  type = "snapshot"
  address = %q
`, sock)})
	if out := d.Ctr(t, nil, "plugins", "ls"); !strings.Contains(out, "remote") {
		t.Fatalf("proxy snapshotter not listed:\n%s", out)
	}
	h := newHullctl(t, d)
	ref := reg.Host() + "/proxy/app:1"
	h.ok(t, "images", "pull", "--plain", "--plain-http", "--snapshotter", "remote", ref)
	if out := h.ok(t, "images", "check"); !strings.Contains(out, "[remote]") {
		t.Fatalf("images check does not show the unpack into the proxy:\n%s", out)
	}
	target := t.TempDir()
	h.ok(t, "images", "mount", "--snapshotter", "remote", ref, target)
	data, err := os.ReadFile(filepath.Join(target, "etc/config"))
	h.ok(t, "images", "unmount", "--snapshotter", "remote", target)
	if err != nil || string(data) != "v2" {
		t.Fatalf("file through the proxy snapshotter: %q %v", data, err)
	}
	// The snapshots live in the other process's root.
	if entries, _ := os.ReadDir(filepath.Join(dir, "snaps", "snapshots")); len(entries) < 3 {
		t.Fatalf("proxy root holds %d snapshots", len(entries))
	}
}

func TestHullctlSnapshots(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	h := newHullctl(t, d)
	h.ok(t, "snapshots", "prepare", "base-work")
	mounts := h.ok(t, "snapshots", "mounts", "base-work")
	if !strings.HasPrefix(mounts, "bind ") {
		t.Fatalf("mounts of an empty active snapshot: %s", mounts)
	}
	src := strings.Fields(mounts)[1]
	if err := os.WriteFile(filepath.Join(src, "hello"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.ok(t, "snapshots", "commit", "base", "base-work")
	h.ok(t, "snapshots", "label", "base", "containerd.io/gc.root=test")
	h.ok(t, "snapshots", "view", "base-view", "base")
	ls := h.ok(t, "snapshots", "ls")
	if !strings.Contains(ls, "base-view") || !strings.Contains(ls, "Committed") || !strings.Contains(ls, "View") {
		t.Fatalf("snapshots ls:\n%s", ls)
	}
	if tree := h.ok(t, "snapshots", "tree"); !strings.Contains(tree, "base\n  base-view") {
		t.Fatalf("snapshots tree:\n%s", tree)
	}
	if u := h.ok(t, "snapshots", "usage", "base"); !strings.Contains(u, "base") {
		t.Fatalf("usage: %s", u)
	}
	// A layer of the difference between an active snapshot and its parent.
	h.ok(t, "snapshots", "prepare", "upper-work", "base")
	up := strings.Fields(h.ok(t, "snapshots", "mounts", "upper-work"))
	if len(up) < 3 {
		t.Fatalf("mounts of upper-work: %v", up)
	}
	desc := h.ok(t, "snapshots", "diff", "upper-work")
	if !strings.Contains(desc, "tar+gzip") || !strings.Contains(desc, "sha256:") {
		t.Fatalf("snapshots diff: %s", desc)
	}
	h.ok(t, "snapshots", "rm", "upper-work")
	h.fails(t, []string{"base", "child"}, "snapshots", "rm", "base")
	h.fails(t, []string{"missing"}, "snapshots", "prepare", "x", "missing")
	h.ok(t, "snapshots", "rm", "base-view")
	h.ok(t, "snapshots", "rm", "base")
	if ls := h.ok(t, "snapshots", "ls", "-q"); strings.TrimSpace(ls) != "" {
		t.Fatalf("snapshots left: %s", ls)
	}
}
