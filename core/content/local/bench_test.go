package local

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
)

const benchSize = 64 << 20

// BenchmarkIngest measures a whole ingest: write, hash, fsync, rename. The
// "baseline" case does the same work by hand (sha256 while copying to a file,
// then fsync) and is what "ingest" should stay close to.
func BenchmarkIngest(b *testing.B) {
	data := randBytes(42, benchSize)
	d := digest.FromBytes(data)
	// Hide bytes.Reader's WriterTo so that io.Copy goes through ReadFrom,
	// as it does for a stream.
	src := func() io.Reader { return struct{ io.Reader }{bytes.NewReader(data)} }

	b.Run("ingest", func(b *testing.B) {
		s, _ := newStore(b)
		ctx := context.Background()
		b.SetBytes(benchSize)
		i := 0
		for b.Loop() {
			i++
			w := mustWriter(b, s, fmt.Sprint("bench-", i))
			if _, err := io.Copy(w, src()); err != nil {
				b.Fatal(err)
			}
			if err := w.Commit(ctx, benchSize, d); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := s.Delete(ctx, d); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})

	b.Run("baseline", func(b *testing.B) {
		dir := b.TempDir()
		b.SetBytes(benchSize)
		buf := make([]byte, bufSize)
		for b.Loop() {
			f, err := os.Create(filepath.Join(dir, "data"))
			if err != nil {
				b.Fatal(err)
			}
			h := sha256.New()
			if _, err := io.CopyBuffer(io.MultiWriter(f, h), src(), buf); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
			f.Close()
			h.Sum(nil)
		}
	})
}
