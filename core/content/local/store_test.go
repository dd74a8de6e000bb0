package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
)

func newStore(t testing.TB) (*Store, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "content")
	s, err := NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	return s, root
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func mustWriter(t testing.TB, s *Store, ref string, desc ...ocispec.Descriptor) content.Writer {
	t.Helper()
	opts := []content.WriterOpt{content.WithRef(ref)}
	if len(desc) > 0 {
		opts = append(opts, content.WithDescriptor(desc[0]))
	}
	w, err := s.Writer(context.Background(), opts...)
	if err != nil {
		t.Fatalf("Writer(%q): %v", ref, err)
	}
	return w
}

func mustWrite(t testing.TB, w io.Writer, p []byte) {
	t.Helper()
	if n, err := w.Write(p); err != nil || n != len(p) {
		t.Fatalf("Write: %d, %v", n, err)
	}
}

func readAll(t testing.TB, s *Store, dgst digest.Digest) []byte {
	t.Helper()
	ra, err := s.ReaderAt(context.Background(), ocispec.Descriptor{Digest: dgst})
	if err != nil {
		t.Fatalf("ReaderAt(%s): %v", dgst, err)
	}
	defer ra.Close()
	b, err := io.ReadAll(io.NewSectionReader(ra, 0, ra.Size()))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantErr(t testing.TB, err error, kind error, substr string) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("error %v: want %v", err, kind)
	}
	if !strings.Contains(err.Error(), substr) {
		t.Fatalf("error %q: want it to contain %q", err, substr)
	}
}

func commit(t testing.TB, s *Store, ref string, data []byte) digest.Digest {
	t.Helper()
	w := mustWriter(t, s, ref)
	defer w.Close()
	mustWrite(t, w, data)
	d := digest.FromBytes(data)
	if err := w.Commit(context.Background(), int64(len(data)), d); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return d
}

func ingestCount(t testing.TB, root string) int {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "ingest"))
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

func TestWriteCommitRead(t *testing.T) {
	s, root := newStore(t)
	ctx := context.Background()
	data := randBytes(1, 3<<20+12345)
	d := digest.FromBytes(data)

	w := mustWriter(t, s, "layer-1", ocispec.Descriptor{Digest: d, Size: int64(len(data))})
	// Half through Write, half through io.Copy, which uses ReadFrom.
	mustWrite(t, w, data[:1000])
	if n, err := io.Copy(w, struct{ io.Reader }{bytes.NewReader(data[1000:])}); err != nil || n != int64(len(data)-1000) {
		t.Fatalf("Copy: %d, %v", n, err)
	}
	if got := w.Digest(); got != d {
		t.Fatalf("Digest %s, want %s", got, d)
	}
	st, err := w.Status()
	if err != nil || st.Ref != "layer-1" || st.Offset != int64(len(data)) || st.Total != int64(len(data)) || st.Expected != d || st.StartedAt.IsZero() {
		t.Fatalf("Status %+v, %v", st, err)
	}
	if _, err := s.Info(ctx, d); !errdefs.IsNotFound(err) {
		t.Fatalf("blob visible before commit: %v", err)
	}
	if err := w.Commit(ctx, int64(len(data)), d); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close after Commit: %v", err)
	}

	if got := readAll(t, s, d); !bytes.Equal(got, data) {
		t.Fatal("read back differs from what was written")
	}
	info, err := s.Info(ctx, d)
	if err != nil || info.Digest != d || info.Size != int64(len(data)) || info.CreatedAt.IsZero() || info.Labels != nil {
		t.Fatalf("Info %+v, %v", info, err)
	}
	p, err := s.BlobPath(d)
	if err != nil || p != filepath.Join(root, "blobs", "sha256", d.Encoded()) {
		t.Fatalf("BlobPath %q, %v", p, err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o444 {
		t.Fatalf("blob mode %v, %v", fi.Mode(), err)
	}
	for _, dir := range []string{root, filepath.Join(root, "blobs"), filepath.Join(root, "ingest")} {
		if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("%s mode %v, %v", dir, fi.Mode(), err)
		}
	}
	if n := ingestCount(t, root); n != 0 {
		t.Fatalf("%d ingest directories left after commit", n)
	}
	if _, err := s.Status(ctx, "layer-1"); !errdefs.IsNotFound(err) {
		t.Fatalf("Status after commit: %v", err)
	}
	// The ref is free again.
	mustWriter(t, s, "layer-1").Close()
}

func TestEmptyBlob(t *testing.T) {
	s, _ := newStore(t)
	d := commit(t, s, "empty", nil)
	if d != digest.FromBytes(nil) {
		t.Fatal(d)
	}
	if got := readAll(t, s, d); len(got) != 0 {
		t.Fatal(got)
	}
}

func TestWriterAfterEnd(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	w := mustWriter(t, s, "r")
	mustWrite(t, w, []byte("x"))
	if err := w.Commit(ctx, 1, ""); err != nil {
		t.Fatal(err)
	}
	wantErr(t, w.Commit(ctx, 1, ""), errdefs.ErrFailedPrecondition, "already committed")
	_, err := w.Write([]byte("y"))
	wantErr(t, err, errdefs.ErrFailedPrecondition, `"r"`)

	w = mustWriter(t, s, "r2")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err = w.Write([]byte("y"))
	wantErr(t, err, errdefs.ErrFailedPrecondition, "closed")
	wantErr(t, w.Commit(ctx, 0, ""), errdefs.ErrFailedPrecondition, "closed")
	wantErr(t, w.Truncate(0), errdefs.ErrFailedPrecondition, "closed")
}

func TestWriterNeedsRef(t *testing.T) {
	s, _ := newStore(t)
	_, err := s.Writer(context.Background())
	wantErr(t, err, errdefs.ErrInvalidArgument, "ref")
}

func TestResumeAfterClose(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	data := randBytes(2, 1<<20)
	d := digest.FromBytes(data)

	w := mustWriter(t, s, "resume", ocispec.Descriptor{Size: int64(len(data))})
	mustWrite(t, w, data[:300000])
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := s.Status(ctx, "resume")
	if err != nil || st.Offset != 300000 || st.Total != int64(len(data)) || st.Ref != "resume" || st.StartedAt.IsZero() || st.UpdatedAt.Before(st.StartedAt) {
		t.Fatalf("Status %+v, %v", st, err)
	}

	// The second writer adds the expected digest; the recorded size stays.
	w = mustWriter(t, s, "resume", ocispec.Descriptor{Digest: d})
	defer w.Close()
	st2, _ := w.Status()
	if st2.Offset != 300000 || st2.Total != int64(len(data)) || st2.Expected != d || !st2.StartedAt.Equal(st.StartedAt) {
		t.Fatalf("resumed Status %+v, first %+v", st2, st)
	}
	if got, want := w.Digest(), digest.FromBytes(data[:300000]); got != want {
		t.Fatalf("resumed Digest %s, want %s", got, want)
	}
	mustWrite(t, w, data[300000:])
	// No arguments: the descriptors' size and digest are checked.
	if err := w.Commit(ctx, 0, ""); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, s, d), data) {
		t.Fatal("read back differs")
	}
}

// TestResumeAfterCrash stands in for a killed process: the first writer is
// never closed, and a new Store on the same root takes over.
func TestResumeAfterCrash(t *testing.T) {
	s1, root := newStore(t)
	ctx := context.Background()
	data := randBytes(3, 2<<20)
	d := digest.FromBytes(data)

	w1 := mustWriter(t, s1, "crash")
	mustWrite(t, w1, data[:777777])
	// w1 is abandoned open, as a dead process would leave it.

	_, err := s1.Writer(ctx, content.WithRef("crash"))
	wantErr(t, err, errdefs.ErrUnavailable, "ref crash locked for ")

	s2, err := NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	sts, err := s2.ListStatuses(ctx)
	if err != nil || len(sts) != 1 || sts[0].Ref != "crash" || sts[0].Offset != 777777 {
		t.Fatalf("ListStatuses %+v, %v", sts, err)
	}
	// The dead writer never recorded its times: its start is its ref
	// file's, to the clock's tick.
	if st := sts[0]; st.StartedAt.IsZero() || time.Since(st.StartedAt) > time.Minute || st.UpdatedAt.Before(st.StartedAt) {
		t.Fatalf("times of an ingest whose writer died: %+v", st)
	}
	var n int
	if err := s2.Walk(ctx, func(content.Info) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("Walk saw %d blobs before commit, %v", n, err)
	}
	w2 := mustWriter(t, s2, "crash")
	defer w2.Close()
	if st, _ := w2.Status(); st.Offset != 777777 {
		t.Fatalf("resumed at %d", st.Offset)
	}
	mustWrite(t, w2, data[777777:])
	if err := w2.Commit(ctx, int64(len(data)), d); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, s2, d), data) {
		t.Fatal("read back differs")
	}
	w1.Close() // only to release the test's file descriptor
}

func TestCrashLeftovers(t *testing.T) {
	s, root := newStore(t)
	ctx := context.Background()

	// A crash between creating the ingest directory and its data file.
	dir := s.ingestDir("half")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, value := range map[string]string{totalFile: "99", startedAtFile: "2001-01-01T00:00:00Z", updatedAtFile: "2001-01-01T00:00:00Z"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(value), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if sts, err := s.ListStatuses(ctx); err != nil || len(sts) != 0 {
		t.Fatalf("ListStatuses %+v, %v", sts, err)
	}
	if _, err := s.Status(ctx, "half"); !errdefs.IsNotFound(err) {
		t.Fatalf("Status: %v", err)
	}
	w := mustWriter(t, s, "half")
	if st, _ := w.Status(); st.Offset != 0 || st.Total != 0 {
		t.Fatalf("stale values leaked into a new ingest: %+v", st)
	}
	mustWrite(t, w, []byte("hello"))
	if st, err := s.Status(ctx, "half"); err != nil || st.StartedAt.Year() < 2020 || st.UpdatedAt.Year() < 2020 {
		t.Fatalf("stale times leaked into a new ingest: %+v, %v", st, err)
	}
	w.Close()

	// A crash between the chmod and the rename of Commit.
	if err := os.Chmod(filepath.Join(dir, dataFile), 0o444); err != nil {
		t.Fatal(err)
	}
	w = mustWriter(t, s, "half")
	mustWrite(t, w, []byte(" world"))
	if err := w.Commit(ctx, 11, digest.FromString("hello world")); err != nil {
		t.Fatal(err)
	}
	if n := ingestCount(t, root); n != 0 {
		t.Fatalf("%d ingests left", n)
	}
}

func TestCommitMismatch(t *testing.T) {
	s, root := newStore(t)
	ctx := context.Background()
	data := []byte("0123456789")
	d := digest.FromBytes(data)
	other := digest.FromString("something else")

	w := mustWriter(t, s, "bad")
	mustWrite(t, w, data)
	wantErr(t, w.Commit(ctx, 12, ""), errdefs.ErrFailedPrecondition, "unexpected commit size 10, expected 12")
	// Commit ended the writer but left the ingest.
	_, err := w.Write([]byte("x"))
	wantErr(t, err, errdefs.ErrFailedPrecondition, "closed")
	if st, err := s.Status(ctx, "bad"); err != nil || st.Offset != 10 {
		t.Fatalf("Status %+v, %v", st, err)
	}

	w = mustWriter(t, s, "bad")
	wantErr(t, w.Commit(ctx, 10, other), errdefs.ErrFailedPrecondition,
		fmt.Sprintf("unexpected commit digest %s, expected %s", d, other))
	if n := ingestCount(t, root); n != 1 {
		t.Fatalf("%d ingests, want 1", n)
	}
	var blobs int
	s.Walk(ctx, func(content.Info) error { blobs++; return nil })
	if blobs != 0 {
		t.Fatalf("%d blobs after failed commits", blobs)
	}

	// A size recorded by the descriptor is checked too.
	w = mustWriter(t, s, "bad", ocispec.Descriptor{Size: 11})
	wantErr(t, w.Commit(ctx, 0, ""), errdefs.ErrFailedPrecondition, "unexpected commit size 10, expected 11")

	// Restart the ingest and get it right.
	want := []byte("the right bytes")
	w = mustWriter(t, s, "bad", ocispec.Descriptor{Size: int64(len(want)), Digest: digest.FromBytes(want)})
	if err := w.Truncate(0); err != nil {
		t.Fatal(err)
	}
	if w.Digest() != digest.FromBytes(nil) {
		t.Fatal("Truncate(0) did not reset the digest")
	}
	mustWrite(t, w, want)
	if err := w.Commit(ctx, int64(len(want)), digest.FromBytes(want)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, s, digest.FromBytes(want)), want) {
		t.Fatal("read back differs")
	}
}

func TestTruncateMiddle(t *testing.T) {
	s, _ := newStore(t)
	data := randBytes(4, 3<<20)
	w := mustWriter(t, s, "t")
	defer w.Close()
	mustWrite(t, w, data)
	wantErr(t, w.Truncate(int64(len(data)+1)), errdefs.ErrInvalidArgument, "truncate")
	cut := 1<<20 + 5
	if err := w.Truncate(int64(cut)); err != nil {
		t.Fatal(err)
	}
	if got, want := w.Digest(), digest.FromBytes(data[:cut]); got != want {
		t.Fatalf("Digest %s, want %s", got, want)
	}
	tail := []byte("tail")
	mustWrite(t, w, tail)
	full := append(append([]byte{}, data[:cut]...), tail...)
	if err := w.Commit(context.Background(), int64(len(full)), digest.FromBytes(full)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, s, digest.FromBytes(full)), full) {
		t.Fatal("read back differs")
	}
}

func TestConcurrentWritersOneRef(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	const n = 20
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners []content.Writer
		losers  int
	)
	for range n {
		wg.Go(func() {
			w, err := s.Writer(ctx, content.WithRef("contended"))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				winners = append(winners, w)
			case errdefs.IsUnavailable(err) && strings.Contains(err.Error(), "ref contended locked for "):
				losers++
			default:
				t.Errorf("Writer: %v", err)
			}
		})
	}
	wg.Wait()
	if len(winners) != 1 || losers != n-1 {
		t.Fatalf("%d writers opened, %d refused", len(winners), losers)
	}
	if err := winners[0].Close(); err != nil {
		t.Fatal(err)
	}
	mustWriter(t, s, "contended").Close()
}

func TestStatusWhileWriting(t *testing.T) {
	s, _ := newStore(t)
	w := mustWriter(t, s, "live")
	defer w.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 50 {
			mustWrite(t, w, randBytes(uint64(i), 4096))
		}
	}()
	for range 50 {
		w.Status()
		w.Digest()
		s.Status(context.Background(), "live")
	}
	<-done
	st, err := s.Status(context.Background(), "live")
	if err != nil || st.Offset != 50*4096 {
		t.Fatalf("Status %+v, %v", st, err)
	}
}

func TestAbort(t *testing.T) {
	s, root := newStore(t)
	ctx := context.Background()
	w := mustWriter(t, s, "doomed")
	mustWrite(t, w, []byte("abc"))
	w.Close()
	if err := s.Abort(ctx, "doomed"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Status(ctx, "doomed"); !errdefs.IsNotFound(err) {
		t.Fatalf("Status after Abort: %v", err)
	}
	if n := ingestCount(t, root); n != 0 {
		t.Fatalf("%d ingests left", n)
	}
	wantErr(t, s.Abort(ctx, "doomed"), errdefs.ErrNotFound, "doomed")
	wantErr(t, s.Abort(ctx, "never"), errdefs.ErrNotFound, "never")

	// Aborting under an open writer makes its Commit fail; no blob appears.
	w = mustWriter(t, s, "doomed")
	mustWrite(t, w, []byte("abc"))
	if err := s.Abort(ctx, "doomed"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, w.Commit(ctx, 3, ""), errdefs.ErrNotFound, "doomed")
	if _, err := s.Info(ctx, digest.FromString("abc")); !errdefs.IsNotFound(err) {
		t.Fatalf("Info: %v", err)
	}
	mustWriter(t, s, "doomed").Close() // the ref was released
}

func TestAlreadyExists(t *testing.T) {
	s, root := newStore(t)
	ctx := context.Background()
	data := []byte("same bytes")
	d := commit(t, s, "first", data)

	_, err := s.Writer(ctx, content.WithRef("second"), content.WithDescriptor(ocispec.Descriptor{Digest: d}))
	wantErr(t, err, errdefs.ErrAlreadyExists, "content "+d.String()+" exists")

	// Without a descriptor the duplicate shows up at commit.
	w := mustWriter(t, s, "third")
	mustWrite(t, w, data)
	wantErr(t, w.Commit(ctx, int64(len(data)), ""), errdefs.ErrAlreadyExists, d.String())
	if n := ingestCount(t, root); n != 0 {
		t.Fatalf("%d ingests left", n)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	mustWriter(t, s, "third").Close()
}

func TestReaderAt(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	data := []byte("0123456789abcdef")
	d := commit(t, s, "r", data)

	ra, err := s.ReaderAt(ctx, ocispec.Descriptor{Digest: d})
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	if ra.Size() != int64(len(data)) {
		t.Fatalf("Size %d", ra.Size())
	}
	buf := make([]byte, 4)
	if n, err := ra.ReadAt(buf, 5); n != 4 || err != nil || string(buf) != "5678" {
		t.Fatalf("ReadAt(5): %d %v %q", n, err, buf)
	}
	if n, err := ra.ReadAt(buf, 14); n != 2 || err != io.EOF || string(buf[:n]) != "ef" {
		t.Fatalf("ReadAt(14): %d %v %q", n, err, buf[:n])
	}
	if n, err := ra.ReadAt(buf, 100); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt(100): %d %v", n, err)
	}
	if _, ok := ra.(io.Writer); ok {
		t.Fatal("ReaderAt exposes Write")
	}

	_, err = s.ReaderAt(ctx, ocispec.Descriptor{Digest: digest.FromString("absent")})
	wantErr(t, err, errdefs.ErrNotFound, digest.FromString("absent").String())
}

func TestInvalidDigests(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	good := digest.FromString("x").Encoded()
	for _, d := range []digest.Digest{
		"sha256:nothex",
		"sha256:" + digest.Digest(good[:10]),
		"sha256:../../../../etc/passwd",
		"sha256:" + digest.Digest(strings.ToUpper(good)),
		"md5:d41d8cd98f00b204e9800998ecf8427e",
		digest.Digest(good),
	} {
		t.Run(string(d), func(t *testing.T) {
			quoted := fmt.Sprintf("%q", d)
			_, err := s.BlobPath(d)
			wantErr(t, err, errdefs.ErrInvalidArgument, quoted)
			_, err = s.Info(ctx, d)
			wantErr(t, err, errdefs.ErrInvalidArgument, quoted)
			wantErr(t, s.Delete(ctx, d), errdefs.ErrInvalidArgument, quoted)
			_, err = s.ReaderAt(ctx, ocispec.Descriptor{Digest: d})
			wantErr(t, err, errdefs.ErrInvalidArgument, quoted)
			_, err = s.Writer(ctx, content.WithRef("w"), content.WithDescriptor(ocispec.Descriptor{Digest: d}))
			wantErr(t, err, errdefs.ErrInvalidArgument, quoted)
			w := mustWriter(t, s, "w")
			wantErr(t, w.Commit(ctx, 0, d), errdefs.ErrInvalidArgument, quoted)
		})
	}
}

func TestOtherAlgorithm(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	data := []byte("hashed with sha512")
	d := digest.SHA512.FromBytes(data)
	w := mustWriter(t, s, "512")
	mustWrite(t, w, data)
	if err := w.Commit(ctx, 0, d); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, s, d), data) {
		t.Fatal("read back differs")
	}
}

func TestDelete(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	d := commit(t, s, "del", []byte("delete me"))
	ra, err := s.ReaderAt(ctx, ocispec.Descriptor{Digest: d})
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	if err := s.Delete(ctx, d); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Info(ctx, d); !errdefs.IsNotFound(err) {
		t.Fatalf("Info after Delete: %v", err)
	}
	wantErr(t, s.Delete(ctx, d), errdefs.ErrNotFound, d.String())
	// An open reader keeps its bytes.
	buf := make([]byte, 9)
	if _, err := ra.ReadAt(buf, 0); err != nil || string(buf) != "delete me" {
		t.Fatalf("ReadAt after Delete: %q %v", buf, err)
	}
	// The same content can be committed again.
	commit(t, s, "del", []byte("delete me"))
}

func TestWalk(t *testing.T) {
	s, root := newStore(t)
	ctx := context.Background()
	want := map[digest.Digest]int64{}
	for i := range 5 {
		data := randBytes(uint64(i), 100+i)
		want[commit(t, s, fmt.Sprint("walk", i), data)] = int64(len(data))
	}
	// Stray files are not blobs.
	os.WriteFile(filepath.Join(root, "blobs", "sha256", "junk"), nil, 0o600)
	os.WriteFile(filepath.Join(root, "blobs", "README"), nil, 0o600)
	// An open ingest is not a blob either.
	w := mustWriter(t, s, "open")
	defer w.Close()
	mustWrite(t, w, []byte("pending"))

	got := map[digest.Digest]int64{}
	err := s.Walk(ctx, func(info content.Info) error {
		if info.CreatedAt.IsZero() {
			t.Errorf("%s: no CreatedAt", info.Digest)
		}
		got[info.Digest] = info.Size
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Walk %v, want %v", got, want)
	}

	stop := errors.New("stop")
	calls := 0
	if err := s.Walk(ctx, func(content.Info) error { calls++; return stop }); err != stop || calls != 1 {
		t.Fatalf("Walk returned %v after %d calls", err, calls)
	}
}

func TestListStatuses(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	for _, ref := range []string{"a", "b/with/slashes", "c ☃"} {
		w := mustWriter(t, s, ref)
		mustWrite(t, w, []byte(ref))
		w.Close()
	}
	sts, err := s.ListStatuses(ctx)
	if err != nil || len(sts) != 3 {
		t.Fatalf("ListStatuses %+v, %v", sts, err)
	}
	for _, st := range sts {
		if st.Offset != int64(len(st.Ref)) {
			t.Errorf("%+v", st)
		}
	}
	if sts, err := s.ListStatuses(ctx, ""); err != nil || len(sts) != 3 {
		t.Fatalf("ListStatuses(\"\") %d, %v", len(sts), err)
	}
	_, err = s.ListStatuses(ctx, "ref==a")
	wantErr(t, err, errdefs.ErrNotImplemented, "ref==a")
}

func TestManyConcurrentIngests(t *testing.T) {
	s, root := newStore(t)
	ctx := context.Background()
	const n = 100
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			data := randBytes(uint64(i), 64<<10+i)
			d := digest.FromBytes(data)
			w, err := s.Writer(ctx, content.WithRef(fmt.Sprint("ingest-", i)),
				content.WithDescriptor(ocispec.Descriptor{Digest: d, Size: int64(len(data))}))
			if err != nil {
				t.Error(err)
				return
			}
			defer w.Close()
			for off := 0; off < len(data); off += 10000 {
				if _, err := w.Write(data[off:min(off+10000, len(data))]); err != nil {
					t.Error(err)
					return
				}
			}
			if err := w.Commit(ctx, int64(len(data)), d); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	count := 0
	if err := s.Walk(ctx, func(content.Info) error { count++; return nil }); err != nil || count != n {
		t.Fatalf("Walk saw %d blobs, %v", count, err)
	}
	if c := ingestCount(t, root); c != 0 {
		t.Fatalf("%d ingests left", c)
	}
}

// A new ingest writes only what it needs (its ref, its size when known,
// its data), with no temporary files; its start is recorded exactly once
// a writer closes it; a commit leaves no directory behind.
func TestNewIngestFiles(t *testing.T) {
	s, root := newStore(t)
	ctx := context.Background()
	data := []byte("some layer")
	w := mustWriter(t, s, "files", ocispec.Descriptor{Size: int64(len(data))})
	names := func() []string {
		entries, err := os.ReadDir(s.ingestDir("files"))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range entries {
			out = append(out, e.Name())
		}
		return out
	}
	if got := strings.Join(names(), ","); got != "data,ref,total" {
		t.Fatalf("a new ingest holds %s", got)
	}
	mustWrite(t, w, data[:4])
	st1, _ := w.Status()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w = mustWriter(t, s, "files")
	st2, _ := w.Status()
	if !st2.StartedAt.Equal(st1.StartedAt) || st2.Offset != 4 || st2.Total != int64(len(data)) {
		t.Fatalf("resumed as %+v, closed as %+v", st2, st1)
	}
	mustWrite(t, w, data[4:])
	if err := w.Commit(ctx, int64(len(data)), digest.FromBytes(data)); err != nil {
		t.Fatal(err)
	}
	if n := ingestCount(t, root); n != 0 {
		t.Fatalf("%d ingests left", n)
	}
	if _, err := os.Stat(s.ingestDir("files")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ingest directory after commit: %v", err)
	}
}
