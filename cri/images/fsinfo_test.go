package images

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/pull"
)

func writeFile(t *testing.T, path string, size int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Repeat("x", size)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func blocks(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return uint64(st.Blocks) * 512 //nolint:unconvert // differs between architectures
}

func TestMeasureDirs(t *testing.T) {
	root := t.TempDir()
	content, snaps, missing := filepath.Join(root, "content"), filepath.Join(root, "snapshots"), filepath.Join(root, "not-yet")
	writeFile(t, filepath.Join(content, "blobs", "a"), 10000)
	writeFile(t, filepath.Join(snaps, "1", "fs", "b"), 20000)
	// A hard link is counted once.
	if err := os.Link(filepath.Join(snaps, "1", "fs", "b"), filepath.Join(snaps, "1", "fs", "c")); err != nil {
		t.Fatal(err)
	}
	var want, inodes uint64
	for _, p := range []string{content, filepath.Join(content, "blobs"), filepath.Join(content, "blobs", "a"),
		snaps, filepath.Join(snaps, "1"), filepath.Join(snaps, "1", "fs"), filepath.Join(snaps, "1", "fs", "b")} {
		want += blocks(t, p)
		inodes++
	}
	// The same dir twice, a dir inside another and a missing dir add nothing.
	gs, err := measureDirs(context.Background(), []string{content, snaps, content, filepath.Join(snaps, "1"), missing})
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != 1 {
		t.Fatalf("one filesystem, %d groups: %+v", len(gs), gs)
	}
	if gs[0].mountpoint != content || gs[0].bytes != want || gs[0].inodes != inodes {
		t.Fatalf("got %+v; want %s, %d bytes, %d inodes", gs[0], content, want, inodes)
	}
	if gs[0].bytes < 30000 {
		t.Fatalf("%d bytes for 30000 bytes of files", gs[0].bytes)
	}

	// Another filesystem (/proc) is a group of its own.
	gs, err = measureDirs(context.Background(), []string{content, "/proc/self/fdinfo"})
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != 2 || gs[1].mountpoint != "/proc/self/fdinfo" {
		t.Fatalf("groups %+v", gs)
	}
	// What is mounted inside a tree is another filesystem's, not counted.
	mnt := filepath.Join(snaps, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=4m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	writeFile(t, filepath.Join(mnt, "big"), 1<<20)
	gs, err = measureDirs(context.Background(), []string{snaps, mnt})
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != 2 || gs[0].bytes >= 1<<20 || gs[1].mountpoint != mnt || gs[1].bytes < 1<<20 {
		t.Fatalf("tree with a mount inside: %+v", gs)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := 0; i < 2000; i++ {
		writeFile(t, filepath.Join(snaps, "many", string(rune('a'+i%26))+strings.Repeat("z", i/26)), 1)
	}
	if _, err := measureDirs(ctx, []string{snaps}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled measurement: %v", err)
	}
}

func TestFsUsageCaches(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "img", "a"), 5000)
	u := newFsUsage(FsInfoSource{ImageDirs: []string{filepath.Join(dir, "img")}, ContainerDirs: []string{filepath.Join(dir, "ctr")}}, time.Hour)
	s := &Service{fs: u}
	first, err := s.ImageFsInfo(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.ImageFilesystems) != 1 || len(first.ContainerFilesystems) != 1 {
		t.Fatalf("response %v", first)
	}
	img := first.ImageFilesystems[0]
	if img.Timestamp == 0 || img.FsId.GetMountpoint() != filepath.Join(dir, "img") || img.UsedBytes.GetValue() < 5000 || img.InodesUsed.GetValue() != 2 {
		t.Fatalf("image fs %v", img)
	}
	if c := first.ContainerFilesystems[0]; c.UsedBytes.GetValue() != 0 || c.InodesUsed == nil || c.FsId.GetMountpoint() != filepath.Join(dir, "ctr") {
		t.Fatalf("container fs %v", c)
	}
	// Within the TTL the measurement is reused: a new file is not seen.
	writeFile(t, filepath.Join(dir, "img", "b"), 5000)
	again, _ := s.ImageFsInfo(context.Background(), nil)
	if again.ImageFilesystems[0].UsedBytes.GetValue() != img.UsedBytes.GetValue() || again.ImageFilesystems[0].Timestamp != img.Timestamp {
		t.Fatalf("not cached: %v then %v", img, again.ImageFilesystems[0])
	}
	u.ttl = 0
	fresh, _ := s.ImageFsInfo(context.Background(), nil)
	if fresh.ImageFilesystems[0].InodesUsed.GetValue() != 3 {
		t.Fatalf("after the TTL: %v", fresh.ImageFilesystems[0])
	}
}

func TestWatchdog(t *testing.T) {
	desc := ocispec.Descriptor{Digest: digest.FromString("layer"), Size: 10}

	// Stalled mid-download: the context ends with the watchdog's error.
	w := newWatchdog(context.Background(), 50*time.Millisecond)
	w.progress(pull.Progress{Desc: desc, Status: pull.StatusDownloading, Offset: 1})
	select {
	case <-w.ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a stalled pull was not stopped")
	}
	if err := w.err(); err == nil || !strings.Contains(err.Error(), "no progress for 50ms") || !errdefs.IsUnavailable(err) {
		t.Fatalf("watchdog error %v", err)
	}
	w.stop()

	// Progress keeps it alive; after the last blob is done it waits no
	// more (unpacking is not timed).
	w = newWatchdog(context.Background(), 100*time.Millisecond)
	defer w.stop()
	deadline := time.Now().Add(400 * time.Millisecond)
	for time.Now().Before(deadline) {
		w.progress(pull.Progress{Desc: desc, Status: pull.StatusDownloading, Offset: 2})
		select {
		case <-w.ctx.Done():
			t.Fatalf("stopped a pull that made progress: %v", context.Cause(w.ctx))
		case <-time.After(10 * time.Millisecond):
		}
	}
	w.progress(pull.Progress{Desc: desc, Status: pull.StatusDone, Offset: 10})
	select {
	case <-w.ctx.Done():
		t.Fatalf("stopped a pull with no download under way: %v", context.Cause(w.ctx))
	case <-time.After(300 * time.Millisecond):
	}
	if w.err() != nil {
		t.Fatal(w.err())
	}

	// Disabled: no timer at all.
	w0 := newWatchdog(context.Background(), 0)
	w0.progress(pull.Progress{Desc: desc, Status: pull.StatusDownloading})
	w0.stop()
	if w0.err() != nil {
		t.Fatal(w0.err())
	}
}
