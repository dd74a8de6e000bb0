package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/client/cio"
	"github.com/hullrt/hull/client/oci"
	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/testimage"
)

// usersImage is busybox with an /etc/passwd and /etc/group: user app
// (1000) is in groups 2000 and 3000; "fakeroot" has a malformed uid field.
func usersImage(t *testing.T) *testimage.Image {
	t.Helper()
	files, err := testimage.BusyboxFiles()
	if err != nil {
		t.Fatal(err)
	}
	etc := []testimage.File{
		{Name: "etc", Type: '5'},
		{Name: "etc/passwd", Data: []byte("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nfakeroot:x::0::/:/bin/sh\n")},
		{Name: "etc/group", Data: []byte("root:x:0:\napp:x:1000:\nextra:x:2000:app\nmore:x:3000:other,app\nnone:x:4000:other\n")},
	}
	return testimage.New([]string{"/bin/sh"}, files, etc)
}

// runCaptured runs a container to completion and returns its stdout and
// exit code; the container and its snapshot are removed.
func runCaptured(t *testing.T, ctx context.Context, c *client.Client, img *client.Image, id string, opts ...oci.SpecOpts) (string, uint32, error) {
	t.Helper()
	ct, err := c.NewContainer(ctx, id, client.WithImage(img), client.WithNewSnapshot(id, img),
		client.WithNewSpec(append([]oci.SpecOpts{oci.WithImageConfig(img)}, opts...)...))
	if err != nil {
		return "", 0, err
	}
	defer ct.Delete(ctx, client.WithSnapshotCleanup)
	var out lockedBuffer
	task, err := ct.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, &out, &out), cio.WithFIFODir(filepath.Join(t.TempDir(), "fifo"))))
	if err != nil {
		return "", 0, err
	}
	defer task.Delete(ctx)
	exitc, err := task.Wait(ctx)
	if err != nil {
		return "", 0, err
	}
	if err := task.Start(ctx); err != nil {
		return "", 0, err
	}
	select {
	case st := <-exitc:
		task.Delete(ctx) // closes IO, so the output is complete
		return out.String(), st.Code, st.Err
	case <-time.After(30 * time.Second):
		return out.String(), 0, fmt.Errorf("container %s did not exit", id)
	}
}

func statusField(status, name string) string {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestSecurityDefaults is a regression test per class of containerd
// advisory: supplementary groups (CVE-2023-25173), uid overflow and
// unresolvable users (CVE-2024-40635 and later), inheritable and ambient
// capabilities (GHSA-c9cp-9c75-9v8c), private directories and sockets
// (CVE-2021-41103, CVE-2024-25621, CVE-2020-15257), masked paths, and the
// warning about an old runc.
func TestSecurityDefaults(t *testing.T) {
	taskRuntimes(t)
	d := startForTasks(t, hulltest.Options{})
	ref := "example.test/users:1"
	importWithCtr(t, d, "sec", ref, usersImage(t))
	c, ctx := newClient(t, d, "sec")
	img, err := c.GetImage(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("supplementary groups and empty inheritable/ambient caps", func(t *testing.T) {
		out, code, err := runCaptured(t, ctx, c, img, "groups", oci.WithUser("app"), oci.WithProcessArgs("cat", "/proc/self/status"))
		if err != nil || code != 0 {
			t.Fatalf("run: %v (exit %d)\n%s", err, code, out)
		}
		if uid := strings.Fields(statusField(out, "Uid")); len(uid) == 0 || uid[0] != "1000" {
			t.Fatalf("Uid %v, want 1000", uid)
		}
		groups := " " + statusField(out, "Groups") + " "
		if !strings.Contains(groups, " 2000 ") || !strings.Contains(groups, " 3000 ") || strings.Contains(groups, " 4000 ") {
			t.Fatalf("Groups %q: want 2000 and 3000 from /etc/group, not 4000", groups)
		}
		for _, f := range []string{"CapInh", "CapAmb"} {
			if v := statusField(out, f); v != "0000000000000000" {
				t.Fatalf("%s = %s, want none", f, v)
			}
		}
		out, _, err = runCaptured(t, ctx, c, img, "rootcaps", oci.WithProcessArgs("cat", "/proc/self/status"))
		if err != nil {
			t.Fatal(err)
		}
		if inh, amb := statusField(out, "CapInh"), statusField(out, "CapAmb"); inh != "0000000000000000" || amb != "0000000000000000" {
			t.Fatalf("root container: CapInh %s CapAmb %s, want none", inh, amb)
		}
	})

	t.Run("users that must not become root", func(t *testing.T) {
		before := countSnapshots(t, ctx, c)
		n := 0
		for user, want := range map[string]error{
			"4294967296": errdefs.ErrInvalidArgument, // wraps to 0 in 32 bits
			"2147483648": errdefs.ErrInvalidArgument,
			"-1":         errdefs.ErrInvalidArgument,
			"nosuchuser": errdefs.ErrNotFound,
			"fakeroot":   errdefs.ErrNotFound, // empty uid field is not 0
		} {
			n++
			_, _, err := runCaptured(t, ctx, c, img, fmt.Sprintf("user%d", n), oci.WithUser(user), oci.WithProcessArgs("id"))
			if err == nil || !strings.Contains(err.Error(), user) || !errorIs(err, want) {
				t.Errorf("user %q: %v, want %v naming it", user, err, want)
			}
		}
		// The snapshots of failed creations were held by a lease only:
		// garbage collection removes them.
		hulltest.Eventually(t, 10*time.Second, "gc to remove the snapshots of the failed creations", func() error {
			if n := countSnapshots(t, ctx, c); n != before {
				return fmt.Errorf("%d snapshots left", n-before)
			}
			return nil
		})
	})

	t.Run("masked paths", func(t *testing.T) {
		out, code, err := runCaptured(t, ctx, c, img, "masked", oci.WithProcessArgs("sh", "-c",
			"ls /sys/firmware | wc -l; cat /proc/keys | wc -c; ls /sys/devices/virtual/powercap 2>/dev/null | wc -l; cat /proc/timer_list | wc -c; [ -e /proc/kcore ] && wc -c < /proc/kcore || echo 0"))
		if err != nil || code != 0 {
			t.Fatalf("run: %v (exit %d)\n%s", err, code, out)
		}
		// On this host, /sys/firmware, /proc/keys and /proc/timer_list have
		// content; a masked path shows none.
		if got := strings.Fields(out); strings.Join(got, " ") != "0 0 0 0 0" {
			t.Fatalf("masked paths show content: /sys/firmware entries, /proc/keys bytes, powercap entries, /proc/timer_list bytes, /proc/kcore bytes = %v", got)
		}
	})

	t.Run("private directories and sockets", func(t *testing.T) {
		ct, err := c.NewContainer(ctx, "dirs", client.WithImage(img), client.WithNewSnapshot("dirs", img),
			client.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs("sleep", "600")))
		if err != nil {
			t.Fatal(err)
		}
		defer ct.Delete(ctx, client.WithSnapshotCleanup)
		task, err := ct.NewTask(ctx, cio.NullIO)
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			task.Kill(ctx, 9)
			exitc := mustWait(t, ctx, "task dirs", task)
			<-exitc
			task.Delete(ctx)
		}()
		bundle := filepath.Join(d.State, "io.containerd.runtime.v2.task", "sec", "dirs")
		for path, max := range map[string]os.FileMode{
			d.Root: 0o711, d.State: 0o711,
			filepath.Join(d.State, "io.containerd.runtime.v2.task"): 0o700,
			filepath.Join(d.Root, "io.containerd.runtime.v2.task"):  0o700,
			bundle: 0o700,
		} {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm()&^max != 0 {
				t.Errorf("%s has mode %v, want at most %v", path, fi.Mode().Perm(), max)
			}
		}
		addr, err := os.ReadFile(filepath.Join(bundle, "address"))
		if err != nil {
			t.Fatal(err)
		}
		sock := strings.TrimPrefix(strings.TrimSpace(string(addr)), "unix://")
		if !filepath.IsAbs(sock) {
			t.Fatalf("shim address %q is not a filesystem socket", addr)
		}
		fi, err := os.Stat(sock)
		if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm()&0o077 != 0 {
			t.Fatalf("shim socket %s: %v %v, want a socket only root can use", sock, fi.Mode(), err)
		}
		di, err := os.Stat(filepath.Dir(sock))
		if err != nil || di.Mode().Perm()&0o077 != 0 {
			t.Fatalf("shim socket directory %s: %v, want 0700", filepath.Dir(sock), di.Mode())
		}
		unix, _ := os.ReadFile("/proc/net/unix")
		for _, line := range strings.Split(string(unix), "\n") {
			if strings.Contains(line, "@") && strings.Contains(line, filepath.Base(sock)) {
				t.Fatalf("shim listens on an abstract socket: %s", line)
			}
		}
		if ts := d.State + "/hull.sock.ttrpc"; true {
			if fi, err := os.Stat(ts); err != nil || fi.Mode().Perm()&0o077 != 0 {
				t.Fatalf("ttrpc socket %s: %v %v, want root only", ts, fi, err)
			}
		}
	})

	t.Run("old runc warning", func(t *testing.T) {
		if !strings.Contains(d.Log(), "CVE-2025-31133") {
			t.Fatalf("hulld did not warn about runc 1.1.5 at startup")
		}
	})
	assertNoLeaks(t, d)
}

func errorIs(err, target error) bool {
	return err != nil && (errdefs.IsInvalidArgument(err) && target == errdefs.ErrInvalidArgument ||
		errdefs.IsNotFound(err) && target == errdefs.ErrNotFound)
}
