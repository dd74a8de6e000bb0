// Package integration drives real hulld processes. The tests in this file use
// Debian's ctr (from the containerd package) as the yardstick client: each
// command must work against hulld as it does against containerd.
package integration

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/testimage"
)

func TestCtrVersion(t *testing.T) {
	hulltest.RequireCtr(t)
	d := hulltest.Start(t, hulltest.Options{})
	out := d.Ctr(t, nil, "version")
	if !strings.Contains(out, "Server:") || !strings.Contains(out, "UUID:") {
		t.Fatalf("ctr version did not show the server:\n%s", out)
	}
	// The UUID is kept under root: a restart shows the same one.
	uuid := field(out, "UUID:")
	if uuid == "" {
		t.Fatalf("no UUID in\n%s", out)
	}
	d.Stop()
	d2 := hulltest.Start(t, hulltest.Options{Dir: filepath.Dir(d.Root)})
	if got := field(d2.Ctr(t, nil, "version"), "UUID:"); got != uuid {
		t.Fatalf("UUID changed across restart: %q then %q", uuid, got)
	}
}

func field(out, name string) string {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == name {
			return f[1]
		}
	}
	return ""
}

func TestCtrPluginsLs(t *testing.T) {
	hulltest.RequireCtr(t)
	d := hulltest.Start(t, hulltest.Options{})
	out := d.Ctr(t, nil, "plugins", "ls")
	for _, want := range []string{
		"io.containerd.content.v1 ", "io.containerd.metadata.v1 ", "io.containerd.grpc.v1 ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plugins ls lacks %q:\n%s", want, out)
		}
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "grpc.v1") && strings.HasSuffix(strings.TrimSpace(l), "error") {
			t.Errorf("plugin failed: %s", l)
		}
	}
	// Filters reach the server.
	out = d.Ctr(t, nil, "plugins", "ls", "id==content")
	if n := strings.Count(out, "\n"); n != 3 { // header + content.v1 + grpc.v1 content
		t.Errorf("plugins ls id==content printed %d lines:\n%s", n, out)
	}
}

func TestCtrNamespaces(t *testing.T) {
	hulltest.RequireCtr(t)
	d := hulltest.Start(t, hulltest.Options{Config: noStartupGC})
	d.Ctr(t, nil, "namespaces", "create", "team-a", "owner=alice")
	out := d.Ctr(t, nil, "namespaces", "ls")
	if !strings.Contains(out, "team-a") || !strings.Contains(out, "owner=alice") {
		t.Fatalf("namespaces ls:\n%s", out)
	}
	d.Ctr(t, nil, "namespaces", "label", "team-a", "owner=bob", "tier=gold")
	out = d.Ctr(t, nil, "namespaces", "ls")
	if !strings.Contains(out, "owner=bob") || !strings.Contains(out, "tier=gold") {
		t.Fatalf("namespaces ls after label:\n%s", out)
	}
	if out, err := d.CtrErr(nil, "namespaces", "create", "team-a"); err == nil || !strings.Contains(out, "already exists") {
		t.Fatalf("duplicate create: err=%v\n%s", err, out)
	}
	// A namespace that holds content cannot be removed; the error says
	// what it holds in containerd 2.x's words.
	d.Ctr(t, []byte("hello"), "-n", "team-a", "content", "ingest", "hello-ref")
	out, err := d.CtrErr(nil, "namespaces", "remove", "team-a")
	if err == nil || !strings.Contains(out, "still has blobs") {
		t.Fatalf("removing a non-empty namespace: err=%v\n%s", err, out)
	}
	d.Ctr(t, nil, "-n", "team-a", "content", "rm", digest.FromString("hello").String())
	// ctr's ingest holds a lease with a 24h expiry; drop it too.
	for _, id := range strings.Fields(d.Ctr(t, nil, "-n", "team-a", "leases", "ls", "-q")) {
		d.Ctr(t, nil, "-n", "team-a", "leases", "rm", id)
	}
	d.Ctr(t, nil, "namespaces", "remove", "team-a")
	if out := d.Ctr(t, nil, "namespaces", "ls"); strings.Contains(out, "team-a") {
		t.Fatalf("team-a still listed:\n%s", out)
	}
	for _, bad := range []string{"-bad", "bad_", strings.Repeat("a", 77), "a/b"} {
		if out, err := d.CtrErr(nil, "namespaces", "create", "--", bad); err == nil || !strings.Contains(out, "invalid") {
			t.Errorf("namespace %q accepted: err=%v %s", bad, err, out)
		}
	}
}

// noStartupGC keeps the first collection away while a test works with
// content that ctr ingests without a lease (which gc may rightly remove).
const noStartupGC = `version = 3
[plugins."io.containerd.gc.v1.scheduler"]
  startup_delay = "1h"
`

func TestCtrContent(t *testing.T) {
	hulltest.RequireCtr(t)
	d := hulltest.Start(t, hulltest.Options{Config: noStartupGC})
	data := make([]byte, 3<<20+17)
	rand.Read(data)
	dgst := digest.FromBytes(data)
	d.Ctr(t, data, "content", "ingest", "--expected-size", "3145745", "--expected-digest", dgst.String(), "blob-1")
	out := d.Ctr(t, nil, "content", "ls")
	if !strings.Contains(out, dgst.String()) {
		t.Fatalf("content ls lacks %s:\n%s", dgst, out)
	}
	got, err := exec.Command("ctr", "--address", d.Address, "content", "get", dgst.String()).Output()
	if err != nil {
		t.Fatalf("content get: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("content get returned %d bytes that differ from the %d ingested", len(got), len(data))
	}
	// Wrong expected digest: refused, nothing stored.
	other := []byte("other bytes")
	out, err = d.CtrErr(other, "content", "ingest", "--expected-digest", digest.FromString("x").String(), "bad-ref")
	if err == nil {
		t.Fatalf("ingest with a wrong digest succeeded:\n%s", out)
	}
	if out := d.Ctr(t, nil, "content", "ls"); strings.Contains(out, digest.FromBytes(other).String()) {
		t.Fatalf("a blob that failed its digest check is listed:\n%s", out)
	}
	// An ingest in progress shows in content active.
	cmd := exec.Command("ctr", "--address", d.Address, "content", "ingest", "slow-ref")
	pw, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := pw.Write(bytes.Repeat([]byte("x"), 1<<20)); err != nil {
		t.Fatalf("write to ctr content ingest: %v", err)
	}
	hulltest.Eventually(t, 10*time.Second, "content active to list slow-ref", func() error {
		if out := d.Ctr(t, nil, "content", "active"); !strings.Contains(out, "slow-ref") {
			return fmt.Errorf("content active:\n%s", out)
		}
		return nil
	})
	pw.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("slow ingest: %v", err)
	}
	d.Ctr(t, nil, "content", "rm", dgst.String())
	if out := d.Ctr(t, nil, "content", "ls"); strings.Contains(out, dgst.String()) {
		t.Fatalf("removed blob still listed:\n%s", out)
	}
	if out, err := d.CtrErr(nil, "content", "get", dgst.String()); err == nil || !strings.Contains(out, "not found") {
		t.Fatalf("content get of a removed blob: err=%v %.200q", err, out)
	}
}

func TestCtrImportAndImagesLs(t *testing.T) {
	hulltest.RequireCtr(t)
	d := hulltest.Start(t, hulltest.Options{})
	img := testimage.New([]string{"/bin/sh"}, []testimage.File{{Name: "hello.txt", Data: []byte("hi\n")}})
	var archive bytes.Buffer
	if err := testimage.WriteOCIArchive(&archive, "example.test/hello:1", img); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "hello.tar")
	if err := os.WriteFile(path, archive.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	d.Ctr(t, nil, "images", "import", "--no-unpack", path)
	out := d.Ctr(t, nil, "images", "ls")
	if !strings.Contains(out, "example.test/hello:1") || !strings.Contains(out, img.Manifest.Desc.Digest.String()) {
		t.Fatalf("images ls:\n%s", out)
	}
	d.Ctr(t, nil, "images", "tag", "example.test/hello:1", "example.test/hello:2")
	d.Ctr(t, nil, "images", "label", "example.test/hello:2", "stage=test")
	out = d.Ctr(t, nil, "images", "ls", "labels.stage==test")
	if !strings.Contains(out, "example.test/hello:2") || strings.Contains(out, "example.test/hello:1") {
		t.Fatalf("filtered images ls:\n%s", out)
	}
	// Deleting both images lets gc remove the blobs they held, once ctr's
	// import lease is gone.
	for _, id := range strings.Fields(d.Ctr(t, nil, "leases", "ls", "-q")) {
		d.Ctr(t, nil, "leases", "rm", id)
	}
	d.Ctr(t, nil, "images", "rm", "example.test/hello:1")
	d.Ctr(t, nil, "images", "rm", "--sync", "example.test/hello:2")
	if out := d.Ctr(t, nil, "content", "ls", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("content left after the images were removed and collected:\n%s", out)
	}
	blobs, _ := filepath.Glob(filepath.Join(d.Root, "io.containerd.content.v1.content", "blobs", "sha256", "*"))
	if len(blobs) != 0 {
		t.Fatalf("blob files left on disk: %v", blobs)
	}
}

func TestCtrLeases(t *testing.T) {
	hulltest.RequireCtr(t)
	d := hulltest.Start(t, hulltest.Options{})
	d.Ctr(t, nil, "leases", "create", "--id", "my-lease", "--expires", "1h", "purpose=test")
	out := d.Ctr(t, nil, "leases", "ls")
	if !strings.Contains(out, "my-lease") || !strings.Contains(out, "purpose=test") {
		t.Fatalf("leases ls:\n%s", out)
	}
	if out, err := d.CtrErr(nil, "leases", "create", "--id", "my-lease"); err == nil {
		t.Fatalf("duplicate lease created: %s", out)
	}
	d.Ctr(t, nil, "leases", "rm", "my-lease")
	if out := d.Ctr(t, nil, "leases", "ls", "-q"); strings.Contains(out, "my-lease") {
		t.Fatalf("lease still listed:\n%s", out)
	}
}

func TestCtrEvents(t *testing.T) {
	hulltest.RequireCtr(t)
	d := hulltest.Start(t, hulltest.Options{Config: noStartupGC})
	cmd := exec.Command("ctr", "--address", d.Address, "events")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// Subscribe is asynchronous: publish until the first event shows.
	// (Debian's ctr 1.6 cannot decode /content/create, which came later, and
	// skips it; the client library's tests check that one.)
	want := []string{"/namespaces/create", "/content/delete", "/namespaces/delete", "/images/create", "/images/update", "/images/delete",
		"/snapshot/prepare", "/snapshot/commit", "/snapshot/remove"}
	deadline := time.After(15 * time.Second)
	seen := map[string]string{}
	for i := 0; len(seen) == 0; i++ {
		ns := "ev" + string(rune('a'+i%26))
		d.Ctr(t, nil, "namespaces", "create", ns)
		select {
		case l := <-lines:
			seen[topicOf(l)] = l
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			t.Fatal("no event arrived")
		}
	}
	d.Ctr(t, []byte("event data"), "-n", "evns", "content", "ingest", "ev-ref")
	d.Ctr(t, nil, "-n", "evns", "content", "rm", digest.FromString("event data").String())
	for _, id := range strings.Fields(d.Ctr(t, nil, "-n", "evns", "leases", "ls", "-q")) {
		d.Ctr(t, nil, "-n", "evns", "leases", "rm", id)
	}
	d.Ctr(t, nil, "namespaces", "remove", "evns")
	img := testimage.New([]string{"/bin/sh"}, []testimage.File{{Name: "f", Data: []byte("x")}})
	var archive bytes.Buffer
	if err := testimage.WriteOCIArchive(&archive, "example.test/ev:1", img); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ev.tar")
	if err := os.WriteFile(path, archive.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	d.Ctr(t, nil, "images", "import", "--no-unpack", path)
	d.Ctr(t, nil, "images", "label", "example.test/ev:1", "a=b")
	d.Ctr(t, nil, "images", "rm", "example.test/ev:1")
	d.Ctr(t, nil, "snapshots", "prepare", "ev-active", "")
	d.Ctr(t, nil, "snapshots", "commit", "ev-committed", "ev-active")
	d.Ctr(t, nil, "snapshots", "rm", "ev-committed")
	for _, w := range want {
		for seen[w] == "" {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("ctr events ended; saw %v", seen)
				}
				seen[topicOf(l)] = l
			case <-deadline:
				t.Fatalf("event %s never arrived; saw %v", w, seen)
			}
		}
	}
	if !strings.Contains(seen["/content/delete"], "evns") {
		t.Errorf("content event lacks its namespace: %s", seen["/content/delete"])
	}
}

// topicOf returns the topic field of a `ctr events` line:
// "<time> <namespace> <topic> <event>".
func topicOf(line string) string {
	for _, f := range strings.Fields(line) {
		if strings.HasPrefix(f, "/") {
			return f
		}
	}
	return ""
}
