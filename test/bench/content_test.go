package bench

import (
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	"github.com/opencontainers/go-digest"
)

// BenchmarkContentIngest1GiB streams a 1 GiB random file through hulld's
// Content Write API in 1 MiB messages (each answered before the next, as
// containerd's client does) and commits it with its digest and size expected,
// against the floor of `sha256sum FILE` plus `cp FILE DEST` on the same disk.
// Target: hull <= 1.3x the floor. containerd's time for the same stream is
// printed too, for reference.
func BenchmarkContentIngest1GiB(b *testing.B) {
	const (
		size   = 1 << 30
		chunk  = 1 << 20
		reps   = 2
		target = 1.3
	)
	// /var/tmp, not /tmp: the file and both daemons' roots on the same disk.
	dir, err := os.MkdirTemp("/var/tmp", "hull-bench-ingest-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })

	src := filepath.Join(dir, "src.bin")
	dgst := writeRandomFile(b, src, size)

	hull := startHull(b, filepath.Join(dir, "hull"))
	ctrd := startContainerd(b, filepath.Join(dir, "containerd"))
	hullCS := contentapi.NewContentClient(dial(b, hull.Address))
	ctrdCS := contentapi.NewContentClient(dial(b, ctrd.Address))
	ctx := nsCtx("default")
	dest := filepath.Join(dir, "dest.bin")

	ingest := func(cs contentapi.ContentClient, ref string) time.Duration {
		syncDisk(b)
		start := time.Now()
		if err := ingestFile(ctx, cs, ref, src, size, dgst, chunk); err != nil {
			b.Fatalf("ingest %s: %v", ref, err)
		}
		d := time.Since(start)
		// Delete it so that the next repetition writes it again.
		if _, err := cs.Delete(ctx, &contentapi.DeleteContentRequest{Digest: dgst.String()}); err != nil {
			b.Fatalf("delete %s: %v", dgst, err)
		}
		return d
	}

	// openssl's SHA-256 uses the CPU's SHA instructions, as Go's does, and
	// coreutils' sha256sum does not: with it the floor is stricter.
	openssl, _ := exec.LookPath("openssl")
	var floor, floorSync, floorSSL, hullTimes, ctrdTimes []time.Duration
	b.ResetTimer()
	for i := 0; i < reps; i++ {
		// The floor: hash the file, then copy it.
		syncDisk(b)
		start := time.Now()
		if _, err := run("sha256sum", src); err != nil {
			b.Fatal(err)
		}
		if _, err := run("cp", src, dest); err != nil {
			b.Fatal(err)
		}
		floor = append(floor, time.Since(start))
		// The same plus an fsync of the copy, which a content store's commit
		// also pays (reported for reference only).
		if _, err := run("sync", dest); err != nil {
			b.Fatal(err)
		}
		floorSync = append(floorSync, time.Since(start))
		if err := os.Remove(dest); err != nil {
			b.Fatal(err)
		}
		if openssl != "" {
			syncDisk(b)
			start := time.Now()
			if _, err := run(openssl, "dgst", "-sha256", src); err != nil {
				b.Fatal(err)
			}
			if _, err := run("cp", src, dest); err != nil {
				b.Fatal(err)
			}
			floorSSL = append(floorSSL, time.Since(start))
			if err := os.Remove(dest); err != nil {
				b.Fatal(err)
			}
		}

		hullTimes = append(hullTimes, ingest(hullCS, fmt.Sprintf("bench-ingest-%d", i)))
		ctrdTimes = append(ctrdTimes, ingest(ctrdCS, fmt.Sprintf("bench-ingest-%d", i)))
	}
	b.StopTimer()

	h, f := median(hullTimes), median(floor)
	extra := fmt.Sprintf("sha256sum+cp+fsync %s (ratio %.2f)", ms(median(floorSync)), float64(h)/float64(median(floorSync)))
	if openssl != "" {
		extra += fmt.Sprintf("; openssl-sha256+cp %s (ratio %.2f, runs %v)", ms(median(floorSSL)), float64(h)/float64(median(floorSSL)), floorSSL)
		b.ReportMetric(float64(h)/float64(median(floorSSL)), "hull/openssl+cp")
	}
	extra += fmt.Sprintf("; containerd %s (hull/containerd %.2f); hull runs %v, floor runs %v",
		ms(median(ctrdTimes)), float64(h)/float64(median(ctrdTimes)), hullTimes, floor)
	report(b, "content-ingest-1GiB", "sha256sum+cp", h, f, target, extra)
	b.ReportMetric(float64(median(ctrdTimes))/float64(time.Millisecond), "containerd-ms")
	b.ReportMetric(float64(h)/float64(median(ctrdTimes)), "hull/containerd")
}

// writeRandomFile writes size random bytes to path and returns their digest.
func writeRandomFile(b *testing.B, path string, size int64) digest.Digest {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var seed [32]byte
	copy(seed[:], "hull content ingest benchmark...")
	r := rand.NewChaCha8(seed)
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, size)); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return digest.NewDigest(digest.SHA256, h)
}
