package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	leasesapi "github.com/containerd/containerd/api/services/leases/v1"
	"github.com/containerd/containerd/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/testimage"
)

// BenchmarkImagesLs10k fills hulld and containerd each with 10,000 images
// (one small image's blobs, 10,000 names pointing at its manifest) and times
// `ctr images ls` on each, which reads every image's manifest and config to
// show its size and platform, and `ctr images ls -q`, which only lists names.
// Target: hull <= 0.7x containerd for `ctr images ls`.
//
// A third server, grpcfloor, answers the same calls from memory over the
// same grpc-go transport as hulld: its time is the floor of a grpc-go daemon
// here, and hull/floor shows how much of hull's time is hull's own.
// Target: hull <= 1.15x the floor measured in the same run (metric
// hull/grpc-floor).
func BenchmarkImagesLs10k(b *testing.B) {
	const (
		images      = 10000
		concurrency = 8
		reps        = 5
		target      = 0.7
		floorTarget = 1.15
	)
	img := testimage.New([]string{"/hello"}, []testimage.File{{Name: "hello", Mode: 0o755, Data: []byte("#!/bin/sh\necho hello\n")}})

	hull := startHull(b, "")
	ctrd := startContainerd(b, "")
	daemons := []struct {
		name, addr string
		pid        int
		conn       *grpc.ClientConn
	}{
		{"hull", hull.Address, hull.PID(), dial(b, hull.Address)},
		{"containerd", ctrd.Address, ctrd.PID(), dial(b, ctrd.Address)},
	}
	ctx := nsCtx("default")
	for _, d := range daemons {
		start := time.Now()
		fill(b, ctx, d.conn, []*testimage.Image{img}, images, concurrency)
		fmt.Printf("images-ls-10k: filled %s with %d images in %s\n", d.name, images, time.Since(start).Round(time.Millisecond))
	}
	floorAddr, floorPID := startFloor(b, img, images)
	daemons = append(daemons, struct {
		name, addr string
		pid        int
		conn       *grpc.ClientConn
	}{"grpc-floor", floorAddr, floorPID, nil})
	syncDisk(b)

	// Check once that all list every image, each with its platform (read
	// from its config), then time.
	host := testimage.HostPlatform()
	platform := " " + host.OS + "/" + host.Architecture
	for _, d := range daemons {
		var out strings.Builder
		if _, err := runTo(&out, "ctr", "--address", d.addr, "images", "ls", "-q"); err != nil {
			b.Fatal(err)
		}
		if n := strings.Count(out.String(), "\n"); n != images {
			b.Fatalf("ctr images ls -q on %s listed %d images, want %d", d.name, n, images)
		}
		out.Reset()
		if _, err := runTo(&out, "ctr", "--address", d.addr, "images", "ls"); err != nil {
			b.Fatal(err)
		}
		if n := strings.Count(out.String(), platform); n != images {
			b.Fatalf("ctr images ls on %s showed platform%s for %d images, want %d", d.name, platform, n, images)
		}
	}

	b.ResetTimer()
	times := map[string][]time.Duration{}
	ctrCPU := map[string][]time.Duration{}    // ctr's own user+system time
	daemonCPU := map[string][]time.Duration{} // the daemon's, meanwhile
	for _, args := range [][]string{{"images", "ls"}, {"images", "ls", "-q"}} {
		for i := 0; i < reps; i++ {
			// Alternate, so that drift in the machine's load hits both alike.
			for _, d := range daemons {
				if d.name == "grpc-floor" && len(args) > 2 {
					continue // the floor is measured for the full listing only
				}
				profiled := func() {}
				if d.name == "hull" && i == 0 && len(args) == 2 {
					profiled = profileHull(b, hull, "images-ls", 8)
				}
				t, own, dcpu, err := cmdCPU(d.pid, "ctr", append([]string{"--address", d.addr}, args...)...)
				if err != nil {
					b.Fatal(err)
				}
				profiled()
				key := d.name + " " + strings.Join(args, " ")
				times[key] = append(times[key], t)
				ctrCPU[key] = append(ctrCPU[key], own)
				daemonCPU[key] = append(daemonCPU[key], dcpu)
			}
		}
	}
	b.StopTimer()

	ls, lsCtrd := median(times["hull images ls"]), median(times["containerd images ls"])
	q, qCtrd := median(times["hull images ls -q"]), median(times["containerd images ls -q"])
	cpu := func(key string) string {
		return fmt.Sprintf("ctr CPU %s, daemon CPU %s", ms(median(ctrCPU[key])), ms(median(daemonCPU[key])))
	}
	report(b, "images-ls-10k", "containerd", ls, lsCtrd, target,
		fmt.Sprintf("with hull: %s; with containerd: %s; hull runs %v, containerd runs %v",
			cpu("hull images ls"), cpu("containerd images ls"), times["hull images ls"], times["containerd images ls"]))
	fmt.Printf("images-ls-q-10k: hull %s containerd %s ratio %.2f (target <= %.2f); with hull: %s; with containerd: %s; hull runs %v, containerd runs %v\n",
		ms(q), ms(qCtrd), float64(q)/float64(qCtrd), target, cpu("hull images ls -q"), cpu("containerd images ls -q"),
		times["hull images ls -q"], times["containerd images ls -q"])
	floor := median(times["grpc-floor images ls"])
	overFloor := float64(ls) / float64(floor)
	fmt.Printf("images-ls-10k-floor: grpc-floor %s, a grpc-go server answering from memory with hulld's transport settings: floor/containerd %.2f, hull/floor %.2f (target <= %.2f, %s); with the floor: %s; floor runs %v\n",
		ms(floor), float64(floor)/float64(lsCtrd), overFloor, floorTarget, verdict(overFloor, floorTarget), cpu("grpc-floor images ls"), times["grpc-floor images ls"])
	b.ReportMetric(float64(floor)/float64(time.Millisecond), "floor-ms")
	b.ReportMetric(overFloor, "hull/grpc-floor")
	b.ReportMetric(float64(q)/float64(time.Millisecond), "hull-q-ms")
	b.ReportMetric(float64(qCtrd)/float64(time.Millisecond), "containerd-q-ms")
	b.ReportMetric(float64(q)/float64(qCtrd), "hull/containerd-q")
}

// startFloor starts grpcfloor serving n images of img on a socket of its own
// and returns the socket and its PID; it is stopped when b ends.
func startFloor(b *testing.B, img *testimage.Image, n int) (string, int) {
	b.Helper()
	dir := b.TempDir()
	args := []string{filepath.Join(dir, "floor.sock"), strconv.Itoa(n), img.Manifest.Desc.MediaType}
	for _, blob := range img.Blobs() {
		path := filepath.Join(dir, blob.Desc.Digest.Encoded())
		if err := os.WriteFile(path, blob.Data, 0o644); err != nil {
			b.Fatal(err)
		}
		args = append(args, path)
	}
	return args[0], runFloor(b, args)
}

// startLayoutFloor starts grpcfloor serving what fill(imgs, n) fills a
// daemon with: the blobs of imgs, and n images named and pointing as fill
// names and points them. It returns the socket and grpcfloor's PID; it is
// stopped when b ends.
func startLayoutFloor(b *testing.B, imgs []*testimage.Image, n int) (string, int) {
	b.Helper()
	dir := b.TempDir()
	layout := filepath.Join(dir, "layout")
	if err := os.MkdirAll(filepath.Join(layout, "blobs"), 0o755); err != nil {
		b.Fatal(err)
	}
	for _, img := range imgs {
		for _, blob := range img.Blobs() {
			// A blob that several images share is simply written again.
			if err := os.WriteFile(filepath.Join(layout, "blobs", blob.Desc.Digest.Encoded()), blob.Data, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	var list strings.Builder
	for i := range n {
		m := imgs[i%len(imgs)].Manifest.Desc
		fmt.Fprintf(&list, "%s %s %s %d\n", imageName(i), m.MediaType, m.Digest, m.Size)
	}
	if err := os.WriteFile(filepath.Join(layout, "images"), []byte(list.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	sock := filepath.Join(dir, "floor.sock")
	return sock, runFloor(b, []string{sock, "--layout", layout})
}

// runFloor starts grpcfloor with args, the first of which is its socket,
// waits until it answers Images.List and returns its PID; it is stopped
// when b ends.
func runFloor(b *testing.B, args []string) int {
	b.Helper()
	is := imagesapi.NewImagesClient(dial(b, args[0]))
	return startFloorServer(b, "grpcfloor", args, func() error {
		_, err := is.List(nsCtx("default"), &imagesapi.ListImagesRequest{})
		return err
	})
}

// startFloorServer builds the floor server (or callclock) test/bench/NAME
// and starts it with args, waits until ready succeeds and returns its PID;
// it is stopped when b ends.
func startFloorServer(b *testing.B, name string, args []string, ready func() error) int {
	b.Helper()
	bin := hulltest.Build(b, name, "github.com/hullrt/hull/test/bench/"+name)
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		err := ready()
		if err == nil {
			break
		}
		select {
		case <-done:
			b.Fatalf("%s exited: %s", name, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s not serving after 10s: %v", name, err)
		}
	}
	return cmd.Process.Pid
}

// imageName is the name of the image numbered i that fill creates.
func imageName(i int) string { return fmt.Sprintf("example.test/img/%d:latest", i) }

// fill writes the blobs of imgs and creates n images named
// example.test/img/N:latest, image N pointing at the manifest of
// imgs[N%len(imgs)], with concurrency writes or creates in flight. Each image
// is whole, as a pull leaves it: its manifest holds its config and layers
// through gc references, and a lease holds everything until the images do,
// so neither daemon's collector takes a blob and every image lists its
// platform. A blob that several of imgs share is written once.
func fill(b testing.TB, ctx context.Context, conn *grpc.ClientConn, imgs []*testimage.Image, n, concurrency int) {
	b.Helper()
	ls := leasesapi.NewLeasesClient(conn)
	lease, err := ls.Create(ctx, &leasesapi.CreateRequest{ID: "bench-fill"})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if _, err := ls.Delete(ctx, &leasesapi.DeleteRequest{ID: lease.Lease.ID}); err != nil {
			b.Fatal(err)
		}
	}()
	ctx = metadata.AppendToOutgoingContext(ctx, "containerd-lease", lease.Lease.ID)
	cs := contentapi.NewContentClient(conn)
	type write struct {
		blob   testimage.Blob
		labels map[string]string
	}
	var writes []write
	seen := map[string]bool{}
	for _, img := range imgs {
		refs := map[string]string{"containerd.io/gc.ref.content.config": img.Config.Desc.Digest.String()}
		for i, l := range img.Layers {
			refs[fmt.Sprintf("containerd.io/gc.ref.content.l.%d", i)] = l.Desc.Digest.String()
		}
		for _, blob := range img.Blobs() {
			if seen[blob.Desc.Digest.String()] {
				continue
			}
			seen[blob.Desc.Digest.String()] = true
			var labels map[string]string
			if blob.Desc.Digest == img.Manifest.Desc.Digest {
				labels = refs
			}
			writes = append(writes, write{blob, labels})
		}
	}
	// The blobs first, so that no image ever points at a missing manifest.
	if err := inParallel(ctx, len(writes), concurrency, func(ctx context.Context, i int) error {
		w := writes[i]
		return writeBlob(ctx, cs, fmt.Sprintf("bench-blob-%d", i), w.blob.Data, w.blob.Desc.Digest, w.labels)
	}); err != nil {
		b.Fatal(err)
	}
	is := imagesapi.NewImagesClient(conn)
	if err := inParallel(ctx, n, concurrency, func(ctx context.Context, i int) error {
		m := imgs[i%len(imgs)].Manifest.Desc
		name := imageName(i)
		target := &types.Descriptor{MediaType: m.MediaType, Digest: m.Digest.String(), Size: m.Size}
		if _, err := is.Create(ctx, &imagesapi.CreateImageRequest{Image: &imagesapi.Image{Name: name, Target: target}}); err != nil {
			return fmt.Errorf("create %s: %w", name, err)
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
}

// inParallel calls fn for 0..n-1 with up to concurrency calls in flight and
// returns the first error; after one, no further calls start and ctx, as
// fn sees it, is cancelled.
func inParallel(ctx context.Context, n, concurrency int, fn func(ctx context.Context, i int) error) error {
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, int(i)); err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}
