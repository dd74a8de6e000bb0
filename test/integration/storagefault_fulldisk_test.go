package integration

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	leasesapi "github.com/containerd/containerd/api/services/leases/v1"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"

	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/registrytest"
	"github.com/hullrt/hull/internal/testimage"
	"github.com/hullrt/hull/internal/tmpfstest"
)

// TestStorageFaultFullDisk runs hulld on a small filesystem and fills it:
// the write that does not fit answers ResourceExhausted naming the
// filesystem; `hullctl gc` on the full disk still succeeds and frees what
// nothing references; and ingest directories a full disk left unusable are
// removed by gc and when hulld starts.
func TestStorageFaultFullDisk(t *testing.T) {
	mnt := tmpfstest.Mount(t, 32<<20)
	d := hulltest.Start(t, hulltest.Options{Dir: mnt, Config: onlyRequestedGC})
	cs := contentapi.NewContentClient(dial(t, d))
	ctx := nsCtx("full")

	// Blobs nothing references (no lease, no image), as a pull that
	// failed and gave up its lease leaves; no collection runs by itself
	// here, since nothing is deleted.
	var blobs []digest.Digest
	var err error
	for i := 0; i < 64; i++ {
		data := make([]byte, 1<<20)
		rand.Read(data)
		dgst := digest.FromBytes(data)
		var w contentapi.Content_WriteClient
		if w, err = cs.Write(ctx); err != nil {
			t.Fatal(err)
		}
		err = w.Send(&contentapi.WriteContentRequest{Action: contentapi.WriteAction_COMMIT, Ref: dgst.String(), Data: data, Total: int64(len(data)), Expected: dgst.String()})
		if err == nil {
			_, err = w.Recv()
		}
		if err != nil {
			break
		}
		blobs = append(blobs, dgst)
	}
	if len(blobs) == 0 || len(blobs) == 64 {
		t.Fatalf("%d blobs of 1 MiB written into 32 MiB (last error %v)", len(blobs), err)
	}
	wantCode(t, "write into a full disk", err, codes.ResourceExhausted, "no space left on device on "+mnt, "content store")
	// Whatever is left, another writer takes.
	tmpfstest.Fill(t, mnt, "someone-else")
	// Then even records no longer fit: the metadata database says so, and
	// names itself and the filesystem.
	ls := leasesapi.NewLeasesClient(dial(t, d))
	big := map[string]string{"note": strings.Repeat("x", 4000)}
	for i := 0; i < 1000; i++ {
		if _, err = ls.Create(ctx, &leasesapi.CreateRequest{ID: fmt.Sprintf("note-%d", i), Labels: big}); err != nil {
			break
		}
	}
	wantCode(t, "record into a full disk", err, codes.ResourceExhausted, "no space left on device on "+mnt, "metadata database")
	// Down to the last page: smaller records until they fail too.
	for i := 0; i < 10000; i++ {
		if _, err = ls.Create(ctx, &leasesapi.CreateRequest{ID: fmt.Sprintf("small-%d", i)}); err != nil {
			break
		}
	}
	wantCode(t, "small record into a full disk", err, codes.ResourceExhausted, "metadata database")

	ingest := contentIngestDir(t, d)
	stale := filepath.Join(ingest, "left-by-a-full-disk")
	if err := os.MkdirAll(stale, 0o700); err == nil {
		os.WriteFile(filepath.Join(stale, ".ref.tmp"), nil, 0o600)
	}

	h := newHullctl(t, d)
	h.ok(t, "gc")
	if !strings.Contains(d.Log(), "released the reserve") {
		t.Error("gc did not need the metadata reserve: the disk was not as full as the test means it to be")
	}
	for _, dgst := range blobs {
		if _, err := cs.Info(ctx, &contentapi.InfoRequest{Digest: dgst.String()}); err == nil {
			t.Fatalf("blob %s kept by gc", dgst)
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	if free := int64(st.Bavail) * st.Bsize; free < int64(len(blobs)-1)<<20 {
		t.Errorf("%d bytes free after gc removed %d MiB of blobs", free, len(blobs))
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("unusable ingest directory survived gc: %v", err)
	}

	// One left while hulld is down goes when it starts.
	if err := os.MkdirAll(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(stale, ".ref.tmp"), nil, 0o600)
	d.Stop()
	d = hulltest.Start(t, hulltest.Options{Dir: mnt, Config: noStartupGC})
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("unusable ingest directory survived a restart: %v", err)
	}
}

// onlyRequestedGC keeps every collection away but those a client asks for:
// hulld would otherwise start one by itself on a full disk, before the test
// could show that `hullctl gc` works there.
const onlyRequestedGC = `version = 3
[plugins."io.containerd.gc.v1.scheduler"]
  startup_delay = "1h"
  schedule_delay = "1h"
`

// contentIngestDir is where d's content store keeps its ingests.
func contentIngestDir(t *testing.T, d *hulltest.Daemon) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(d.Root, "*", "ingest"))
	if len(m) != 1 {
		t.Fatalf("content ingest directory under %s: %v", d.Root, m)
	}
	return m[0]
}

// TestStorageFaultFullDiskPullUnpackCreate fills hulld's root during a
// pull, an unpack and a container create: each fails with
// ResourceExhausted naming the filesystem, hullctl gc frees the space,
// and the same operations succeed once there is room.
func TestStorageFaultFullDiskPullUnpackCreate(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	// A layer larger than the disk, that does not compress.
	big := make([]byte, 40<<20)
	rand.Read(big)
	reg.Push(t, "test/big", "1", testimage.New([]string{"/bin/sh"}, []testimage.File{{Name: "big", Data: big}}))
	// A layer that is small to download and large once unpacked.
	reg.Push(t, "test/bomb", "1", testimage.New([]string{"/bin/sh"}, []testimage.File{{Name: "zeros", Data: make([]byte, 40<<20)}}))

	mnt := tmpfstest.Mount(t, 24<<20)
	d := hulltest.Start(t, hulltest.Options{Dir: mnt, Config: onlyRequestedGC})
	h := newHullctl(t, d)
	fullOn := "no space left on device on " + mnt

	h.fails(t, []string{fullOn}, "images", "pull", "--plain", "--plain-http", reg.Host()+"/test/big:1")
	h.ok(t, "gc")

	bomb := reg.Host() + "/test/bomb:1"
	h.ok(t, "images", "pull", "--plain", "--plain-http", "--skip-unpack", bomb)
	h.fails(t, []string{fullOn}, "images", "unpack", bomb)
	h.ok(t, "gc")

	// A container's task on a full disk: its bundle does not fit. (The
	// container's record and snapshot directories need no data blocks.)
	hulltest.Build(t, "containerd-shim-hull-v2", "github.com/hullrt/hull/cmd/containerd-shim-hull-v2")
	small := reg.Host() + "/test/small:1"
	reg.Push(t, "test/small", "1", busyboxImage(t))
	h.ok(t, "images", "pull", "--plain", "--plain-http", small)
	filler := tmpfstest.Fill(t, mnt, "filler")
	h.fails(t, []string{fullOn, "task bundles"}, "run", "--rm", "--name", "c1", small, "true")
	os.Remove(filler)
	h.ok(t, "run", "--rm", "--name", "c2", small, "true")
	waitBundlesGone(t, filepath.Join(mnt, "state"), "default")
}
