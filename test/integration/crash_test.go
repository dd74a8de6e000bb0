package integration

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hullrt/hull/internal/hulltest"
)

// TestKillDuringIngests kills hulld with SIGKILL while 100 ingests stream in
// and checks that a restarted hulld opens its database, lists no partial
// blob, and lets every ingest resume to a correct commit.
func TestKillDuringIngests(t *testing.T) {
	const n = 100
	const size = 512 << 10
	d := hulltest.Start(t, hulltest.Options{Config: noStartupGC})
	cs := contentapi.NewContentClient(dial(t, d))
	ctx := nsCtx("crash")
	blobs := make([][]byte, n)
	for i := range blobs {
		blobs[i] = make([]byte, size)
		rand.Read(blobs[i])
	}
	var wg sync.WaitGroup
	started := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			// Everything up to started happens before the kill, so a
			// failure there is the daemon's; every ingest says started
			// even then, so that the test does not wait for it in vain.
			signalled := false
			signal := func() {
				if !signalled {
					signalled = true
					started <- struct{}{}
				}
			}
			defer signal()
			ref := fmt.Sprintf("ingest-%d", i)
			w, err := cs.Write(ctx)
			if err != nil {
				t.Errorf("open ingest %s: %v", ref, err)
				return
			}
			// Every tenth ingest commits at once.
			if i%10 == 0 {
				err := w.Send(&contentapi.WriteContentRequest{Action: contentapi.WriteAction_COMMIT, Ref: ref, Data: blobs[i], Total: size, Expected: digest.FromBytes(blobs[i]).String()})
				if err == nil {
					_, err = w.Recv()
				}
				if err != nil {
					t.Errorf("commit %s before the kill: %v", ref, err)
				}
				return
			}
			// The others write a part of their blob, a different one
			// each, before they say started, so that every one is
			// partial when hulld dies; then they stream the rest in 16
			// KiB pieces until the daemon dies under them.
			const piece = 16 << 10
			before := (i%(size/piece-1) + 1) * piece
			for off := 0; off < size; off += piece {
				if off == before {
					signal()
				}
				err := w.Send(&contentapi.WriteContentRequest{Action: contentapi.WriteAction_WRITE, Ref: ref, Offset: int64(off), Data: blobs[i][off : off+piece]})
				if err == nil {
					_, err = w.Recv()
				}
				if err != nil {
					if !signalled {
						t.Errorf("write %s at %d before the kill: %v", ref, off, err)
					}
					return
				}
			}
		}(i)
	}
	for i := 0; i < n; i++ {
		select {
		case <-started:
		case <-time.After(30 * time.Second):
			t.Fatalf("only %d ingests started", i)
		}
	}
	d.Kill()
	wg.Wait()

	d2 := hulltest.Start(t, hulltest.Options{Dir: filepath.Dir(d.Root), Config: noStartupGC})
	cs = contentapi.NewContentClient(dial(t, d2))
	// Every listed blob is whole and matches its digest.
	lc, err := cs.List(ctx, &contentapi.ListContentRequest{})
	if err != nil {
		t.Fatal(err)
	}
	listed := 0
	for {
		m, err := lc.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, info := range m.Info {
			listed++
			if got := readAll(t, cs, info.Digest); digest.FromBytes(got).String() != info.Digest || int64(len(got)) != info.Size {
				t.Fatalf("blob %s is listed but its bytes do not match", info.Digest)
			}
		}
	}
	if listed < n/10 {
		t.Fatalf("%d blobs listed, the %d committed before the kill should be", listed, n/10)
	}
	// Every ingest resumes from where it stands and commits correctly.
	for i := 0; i < n; i++ {
		ref := fmt.Sprintf("ingest-%d", i)
		dg := digest.FromBytes(blobs[i])
		err := tryWriteBlob(cs, ctx, ref, blobs[i], size, dg)
		if err != nil && status.Code(err) != codes.AlreadyExists {
			t.Fatalf("resume %s: %v", ref, err)
		}
		if got := readAll(t, cs, dg.String()); !bytes.Equal(got, blobs[i]) {
			t.Fatalf("%s committed wrong bytes after resume", ref)
		}
	}
}

func readAll(t *testing.T, cs contentapi.ContentClient, dgst string) []byte {
	t.Helper()
	rc, err := cs.Read(nsCtx("crash"), &contentapi.ReadContentRequest{Digest: dgst})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for {
		m, err := rc.Recv()
		if err == io.EOF {
			return buf.Bytes()
		}
		if err != nil {
			t.Fatalf("read %s: %v", dgst, err)
		}
		buf.Write(m.Data)
	}
}
