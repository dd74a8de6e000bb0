package archive

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// TestApplyManyFiles streams a layer of many tiny files through io.Pipe,
// as it is generated, and checks that Apply's memory stays bounded:
// Apply keeps no per-file state.
//
// It applies 200,000 files by default: 1,000,000 take about four times as
// long, well over a minute on two cores and ext4 (most of it the kernel
// creating and later deleting inodes). HULL_ARCHIVE_MANY_FILES sets another
// count (1000000 for the full run); -short skips the test.
func TestApplyManyFiles(t *testing.T) {
	requireRoot(t)
	if testing.Short() {
		t.Skip("-short")
	}
	count := 200_000
	if v := os.Getenv("HULL_ARCHIVE_MANY_FILES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatal(err)
		}
		count = n
	}
	const perDir = 1000
	const limit = 64 << 20
	root := t.TempDir()
	pr, pw := io.Pipe()
	var maxHeap uint64
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		maxHeap = max(maxHeap, ms.HeapInuse)
	}
	go func() {
		tw := tar.NewWriter(pw)
		mtime := time.Unix(1600000000, 0)
		data := []byte("tiny\n")
		for i := range count {
			if i%perDir == 0 {
				if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("d%04d/", i/perDir), Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime}); err != nil {
					pw.CloseWithError(err)
					return
				}
			}
			if i%50_000 == 0 {
				sample()
			}
			hdr := &tar.Header{Name: fmt.Sprintf("d%04d/f%07d", i/perDir, i), Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data)), ModTime: mtime, Uid: i % 7}
			if i%10 == 0 {
				// Some PAX records too, as real layers have.
				hdr.PAXRecords = map[string]string{paxXattrPrefix + "user.n": strconv.Itoa(i)}
			}
			if err := tw.WriteHeader(hdr); err != nil {
				pw.CloseWithError(err)
				return
			}
			if _, err := tw.Write(data); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(tw.Close())
	}()
	start := time.Now()
	n, err := Apply(context.Background(), root, pr)
	if err != nil {
		t.Fatal(err)
	}
	sample()
	t.Logf("applied %d files (%d MB of tar) in %v; max HeapInuse %.1f MiB", count, n>>20, time.Since(start), float64(maxHeap)/(1<<20))
	if maxHeap >= limit {
		t.Fatalf("HeapInuse reached %d bytes (limit %d)", maxHeap, limit)
	}
	last := fmt.Sprintf("d%04d/f%07d", (count-1)/perDir, count-1)
	if b, err := os.ReadFile(root + "/" + last); err != nil || string(b) != "tiny\n" {
		t.Fatalf("%s: %q, %v", last, b, err)
	}
}
