package walking

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

func TestReadAheadCopiesInOrder(t *testing.T) {
	var pool chunkPool
	for _, size := range []int{0, 1, readAheadChunk - 1, readAheadChunk, 3*readAheadChunk + readAheadChunk/2, 20 * readAheadChunk} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rand.IntN(256))
		}
		r := newReadAhead(bytes.NewReader(data), &pool)
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("size %d: read %d bytes, %v", size, len(got), err)
		}
		r.Close()
		if size <= readAheadChunk-1 && r.allocated != 1 {
			t.Errorf("size %d: %d chunks taken, want 1", size, r.allocated)
		}
		if r.allocated > readAheadChunks+1 {
			t.Errorf("size %d: %d chunks taken, above the bound %d", size, r.allocated, readAheadChunks+1)
		}
	}
}

type failingReader struct{ n int }

var errSource = errors.New("source broke")

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errSource
	}
	n := min(len(p), f.n)
	f.n -= n
	return n, nil
}

func TestReadAheadErrorAndEarlyClose(t *testing.T) {
	var pool chunkPool
	r := newReadAhead(&failingReader{n: 2*readAheadChunk + 7}, &pool)
	got, err := io.ReadAll(r)
	if !errors.Is(err, errSource) || len(got) != 2*readAheadChunk+7 {
		t.Fatalf("read %d bytes, %v; want all of them, then the source's error", len(got), err)
	}
	r.Close()
	// A consumer that stops early: Close ends the producer, which is
	// blocked with every chunk filled.
	r = newReadAhead(bytes.NewReader(make([]byte, 50*readAheadChunk)), &pool)
	if _, err := io.ReadFull(r, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	r.Close()
	r.Close()
}
