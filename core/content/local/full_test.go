package local

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/internal/tmpfstest"
)

// A write into a full filesystem fails as ResourceExhausted and says which
// filesystem and which store, not as a bare "no space left on device".
func TestWriteToFullDiskIsResourceExhausted(t *testing.T) {
	mnt := tmpfstest.Mount(t, 4<<20)
	root := filepath.Join(mnt, "content")
	s, err := NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w := mustWriter(t, s, "big")
	defer w.Close()
	chunk := make([]byte, 1<<20)
	for i := 0; ; i++ {
		if i > 8 {
			t.Fatal("wrote 8 MiB into a 4 MiB filesystem")
		}
		if _, err = w.Write(chunk); err != nil {
			break
		}
	}
	if !errdefs.IsResourceExhausted(err) {
		t.Fatalf("write into full disk: %v: want ResourceExhausted", err)
	}
	for _, want := range []string{"no space left on device on " + mnt, "content store at " + root} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// A new ingest cannot even be started, and says so the same way.
	_, err = s.Writer(context.Background(), content.WithRef("another"))
	if err == nil {
		t.Skip("the tmpfs still had room for a new ingest")
	}
	if !errdefs.IsResourceExhausted(err) {
		t.Errorf("open ingest on a full disk: %v: want ResourceExhausted", err)
	}
}

// Ingest directories that hold no resumable ingest are invisible to
// ListStatuses and so to Abort; the store removes them at open and on
// CleanupIngests, except those a writer of the store holds.
func TestCleanupIngestsRemovesWhatCannotBeResumed(t *testing.T) {
	s, root := newStore(t)
	ctx := context.Background()
	good := mustWriter(t, s, "good")
	mustWrite(t, good, []byte("resumable"))
	if err := good.Close(); err != nil {
		t.Fatal(err)
	}
	// A writer that is still creating its ingest: no data file yet.
	held := mustWriter(t, s, "held")
	defer held.Close()
	heldDir := s.ingestDir("held")
	if err := os.Remove(filepath.Join(heldDir, dataFile)); err != nil {
		t.Fatal(err)
	}

	ingest := filepath.Join(root, "ingest")
	mk := func(name string, files map[string]string) string {
		dir := filepath.Join(ingest, name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for f, v := range files {
			if err := os.WriteFile(filepath.Join(dir, f), []byte(v), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	stale := []string{
		// What a full disk left: the ref's temporary file, empty.
		mk(filepath.Base(s.ingestDir("full")), map[string]string{".ref.tmp": ""}),
		mk(filepath.Base(s.ingestDir("noref")), map[string]string{dataFile: "bytes"}),
		mk(filepath.Base(s.ingestDir("emptyref")), map[string]string{dataFile: "bytes", refFile: ""}),
		mk(filepath.Base(s.ingestDir("nodata")), map[string]string{refFile: "nodata"}),
		mk("not-the-hash-of-its-ref", map[string]string{dataFile: "bytes", refFile: "elsewhere"}),
	}
	if err := os.WriteFile(filepath.Join(ingest, "stray"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	stale = append(stale, filepath.Join(ingest, "stray"))

	n, err := s.CleanupIngests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(stale) {
		t.Errorf("CleanupIngests removed %d entries, want %d", n, len(stale))
	}
	for _, p := range stale {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still there (%v)", p, err)
		}
	}
	if _, err := os.Stat(heldDir); err != nil {
		t.Errorf("the ingest a writer holds was removed: %v", err)
	}
	if st, err := s.Status(ctx, "good"); err != nil || st.Offset != int64(len("resumable")) {
		t.Errorf("resumable ingest: %+v, %v", st, err)
	}

	// At open, a new store (a restarted daemon) holds nothing: the
	// writer of the old one died with it.
	mk(filepath.Base(s.ingestDir("full2")), map[string]string{".ref.tmp": ""})
	s2, err := NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	left, err := os.ReadDir(ingest)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 || left[0].Name() != filepath.Base(s.ingestDir("good")) {
		var names []string
		for _, e := range left {
			names = append(names, e.Name())
		}
		t.Errorf("after reopen the ingest directory holds %v, want only the resumable ingest", names)
	}
}
