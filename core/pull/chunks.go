package pull

import (
	"context"
	"fmt"
	"io"
	"sync"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/remotes"
)

// chunkReader reads a blob from offset to its end as chunks fetched in
// parallel, ahead of the reader, and returns them in order. At most parallel
// chunks are in memory at once, so its memory is parallel*chunkSize.
type chunkReader struct {
	ctx    context.Context
	cancel context.CancelFunc
	f      remotes.RangeFetcher
	desc   ocispec.Descriptor
	size   int64

	chunks chan chan chunkResult // in order; each delivers one chunk
	cur    []byte
	err    error
	wg     sync.WaitGroup
}

type chunkResult struct {
	data []byte
	err  error
}

func newChunkReader(ctx context.Context, f remotes.RangeFetcher, desc ocispec.Descriptor, offset, chunkSize int64, parallel int) *chunkReader {
	ctx, cancel := context.WithCancel(ctx)
	r := &chunkReader{ctx: ctx, cancel: cancel, f: f, desc: desc, chunks: make(chan chan chunkResult, parallel-1)}
	r.wg.Add(1)
	go r.schedule(offset, chunkSize)
	return r
}

// schedule starts one fetch per chunk, in order; the buffered channel of
// result slots bounds how many run ahead of the reader.
func (r *chunkReader) schedule(offset, chunkSize int64) {
	defer r.wg.Done()
	defer close(r.chunks)
	for off := offset; off < r.desc.Size; off += chunkSize {
		n := min(chunkSize, r.desc.Size-off)
		slot := make(chan chunkResult, 1)
		select {
		case r.chunks <- slot:
		case <-r.ctx.Done():
			return
		}
		r.wg.Add(1)
		go func(off, n int64) {
			defer r.wg.Done()
			slot <- r.fetch(off, n)
		}(off, n)
	}
}

func (r *chunkReader) fetch(off, n int64) chunkResult {
	rc, err := r.f.FetchRange(r.ctx, r.desc, off, n)
	if err != nil {
		return chunkResult{err: err}
	}
	defer rc.Close()
	buf := make([]byte, n)
	if _, err := io.ReadFull(rc, buf); err != nil {
		return chunkResult{err: fmt.Errorf("%s bytes %d-%d: %w", r.desc.Digest, off, off+n-1, err)}
	}
	return chunkResult{data: buf}
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		slot, ok := <-r.chunks
		if !ok {
			r.err = io.EOF
			continue
		}
		res := <-slot
		if res.err != nil {
			r.err = res.err
			continue
		}
		r.cur = res.data
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// Close stops the fetches and waits for them.
func (r *chunkReader) Close() error {
	r.cancel()
	go func() {
		for slot := range r.chunks {
			<-slot
		}
	}()
	r.wg.Wait()
	return nil
}
