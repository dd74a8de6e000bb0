package bench

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	transferapi "github.com/containerd/containerd/api/services/transfer/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/registrytest"
	"github.com/hullrt/hull/internal/testimage"
	"github.com/hullrt/hull/internal/tmpfstest"
)

// BenchmarkPullUnpack40Layers pulls and unpacks an image of 40 small
// layers (one small file each), where the cost per layer, not bytes, is
// the work, from a plain-http docker-registry on loopback, with both
// daemons rooted on one tmpfs: `hullctl images pull --plain-http REF`
// against hulld and containerd v2.4.2's `ctr images pull --plain-http REF`
// (its Transfer service) against containerd v2.4.2, and the same ctr
// against hulld when hulld serves Transfer. Each run uses a fresh
// namespace and starts with none of the layers' blobs and no snapshot on
// disk (checked). Each path pulls once untimed first; then runs
// alternate, medians of 9 (times on this shared machine vary by a third
// from run to run). Target: hull <= 0.7x
// containerd v2.4.2, through hullctl and through Transfer.
//
// The floor through Transfer is the same ctr pull into transferfloor,
// which fetches, checks, stores and extracts the blobs and does nothing
// else (no database, no snapshots, no progress), on the same tmpfs and
// alternating with the others: the registry's and ctr's CPU share these 2
// cores with the daemon's, so the floor is measured, not subtracted.
func BenchmarkPullUnpack40Layers(b *testing.B) {
	const (
		reps   = 9
		target = 0.7
		repo   = "bench/layers40"
	)
	ctr2 := hulltest.Containerd2Bin(b, "ctr")
	dir := tmpfstest.Mount(b, 2<<30)
	img := testimage.NewFor(testimage.HostPlatform(), []string{"/bin/true"}, testimage.ManyLayers(40)...)
	reg := registrytest.Start(b, registrytest.Options{})
	reg.Push(b, repo, "v1", img)
	ref := reg.Host() + "/" + repo + ":v1"

	hullctl := hullctlBin(b)
	h := startHull(b, filepath.Join(dir, "hull"))
	c := hulltest.StartContainerdWith(b, filepath.Join(dir, "containerd"), hulltest.ContainerdOptions{Binary: hulltest.Containerd2Bin(b, "containerd")})
	ctrRemove := func(addr string) func(ns, ref string) (string, []string) {
		return func(ns, ref string) (string, []string) {
			return ctr2, []string{"--address", addr, "--namespace", ns, "images", "rm", "--sync", ref}
		}
	}
	daemons := []*distDaemon{
		{name: "hull", addr: h.Address, root: h.Root, pid: h.PID(), snapshots: overlaySnapshots(h.Root),
			cmd: func(ns string) (string, []string) {
				return hullctl, []string{"--address", h.Address, "--namespace", ns, "images", "pull", "--plain", "--plain-http", ref}
			},
			removeCmd: func(ns, ref string) (string, []string) {
				return hullctl, []string{"--address", h.Address, "--namespace", ns, "images", "rm", "--sync", ref}
			}},
		{name: "containerd", addr: c.Address, root: c.Root, pid: c.PID(), snapshots: overlaySnapshots(c.Root),
			cmd: func(ns string) (string, []string) {
				return ctr2, []string{"--address", c.Address, "--namespace", ns, "images", "pull", "--plain-http", ref}
			},
			removeCmd: ctrRemove(c.Address)},
	}
	// ctr 2.4 through hulld's Transfer service, when hulld has one.
	if _, err := run(ctr2, "--address", h.Address, "--namespace", "bench-probe", "images", "pull", "--plain-http", ref); err == nil {
		run(ctr2, "--address", h.Address, "--namespace", "bench-probe", "images", "rm", "--sync", ref)
		daemons = append(daemons, &distDaemon{name: "hull-transfer", addr: h.Address, root: h.Root, pid: h.PID(), snapshots: overlaySnapshots(h.Root),
			cmd: func(ns string) (string, []string) {
				return ctr2, []string{"--address", h.Address, "--namespace", ns, "images", "pull", "--plain-http", ref}
			},
			removeCmd: ctrRemove(h.Address)})
	} else {
		fmt.Printf("pull-unpack-40-layers: no Transfer pull into hulld: %v\n", err)
	}
	// The floors first, which also warm the registry up: its first
	// requests are the slowest (its heap grows). hull fetches blobs of at
	// most 1 MiB 8 at a time, containerd all blobs 3 at a time.
	floor := fetchFloor(b, reg.URL(), repo, "v1", img, reps, 8)
	floor3 := fetchFloor(b, reg.URL(), repo, "v1", img, reps, 3)
	// One untimed pull and removal by each path: a daemon's first pulls
	// are slower too, and the probe above warmed hulld alone.
	for _, d := range daemons {
		ns := "bench-warm-" + d.name
		name, args := d.cmd(ns)
		if out, err := run(name, args...); err != nil {
			b.Fatalf("%s: warm-up pull: %v\n%s", d.name, err, out)
		}
		name, args = d.removeCmd(ns, ref)
		if out, err := run(name, args...); err != nil {
			b.Fatalf("%s: warm-up removal: %v\n%s", d.name, err, out)
		}
	}
	// The floor under any daemon's Transfer pull: ctr 2.4 into
	// transferfloor, which fetches, checks, stores and extracts the blobs
	// and does nothing else, on the same tmpfs.
	floorPull := startTransferFloor(b, ctr2, dir, ref, img, reg.PID())
	floorPull(1) // warm-up, as the daemons'
	settle(b, h.Address, c.Address)

	b.ResetTimer()
	profiled := profileHull(b, h, "pull-unpack-40-layers", 8)
	times := map[string]distTimes{}
	for i := 0; i < reps; i++ {
		for j := range daemons {
			d := daemons[(i+j)%len(daemons)]
			ns := fmt.Sprintf("bench-layers-%d", i)
			times[d.name] = append(times[d.name], timeDist(b, d, ns, ref, img, reg.PID()))
		}
		times["transferfloor"] = append(times["transferfloor"], floorPull(i+2))
	}
	// Before it fetches anything, a pull starts its client, which dials
	// and calls: what `version` costs each client.
	starts := map[string][]time.Duration{}
	for i := 0; i < reps; i++ {
		for client, args := range map[string][]string{
			"hullctl": {hullctl, "--address", h.Address, "version"},
			"ctr":     {ctr2, "--address", c.Address, "version"},
		} {
			wall, _, _, err := cmdCPU(h.PID(), args[0], args[1:]...)
			if err != nil {
				b.Fatalf("%s version: %v", client, err)
			}
			starts[client] = append(starts[client], wall)
		}
	}
	b.StopTimer()
	profiled()
	c0 := median(times["containerd"].walls())
	fmt.Printf("pull-unpack-40-layers floor: fetching the manifest, config and layers from this registry, 8 at a time, keeping nothing, in-process: %s, %.2f of containerd 2.4.2's pull+unpack (3 at a time: %s, %.2f)\n",
		floor.Round(time.Millisecond), float64(floor)/float64(c0), floor3.Round(time.Millisecond), float64(floor3)/float64(c0))
	for _, client := range []string{"hullctl", "ctr"} {
		st := median(starts[client])
		fmt.Printf("pull-unpack-40-layers floor with the client's start (%s version: %s): %s, %.2f of containerd 2.4.2's pull+unpack\n",
			client, st.Round(time.Millisecond), (floor + st).Round(time.Millisecond), float64(floor+st)/float64(c0))
	}
	for _, d := range daemons[:1] {
		h0 := median(times[d.name].walls())
		report(b, "pull-unpack-40-layers", "containerd-2.4.2", h0, c0, target,
			fmt.Sprintf("hullctl into hulld: %s; ctr 2.4 into containerd 2.4.2: %s; runs %v and %v",
				times[d.name].cpuSummary(true), times["containerd"].cpuSummary(true), times[d.name].walls(), times["containerd"].walls()))
	}
	if t, ok := times["hull-transfer"]; ok {
		ht := median(t.walls())
		fmt.Printf("pull-unpack-40-layers through Transfer: ctr 2.4 into hulld %s, into containerd 2.4.2 %s, ratio %.2f (target %.1f); %s; runs %v\n",
			ht.Round(time.Millisecond), c0.Round(time.Millisecond), float64(ht)/float64(c0), target, t.cpuSummary(true), t.walls())
		b.ReportMetric(float64(ht)/float64(c0), "transfer-ratio")
	}
	ft := times["transferfloor"]
	f0 := median(ft.walls())
	fmt.Printf("pull-unpack-40-layers floor through Transfer: ctr 2.4 into transferfloor (fetch, check, store and extract, nothing else) %s, %.2f of containerd 2.4.2's pull+unpack; %s; runs %v\n",
		f0.Round(time.Millisecond), float64(f0)/float64(c0), ft.cpuSummary(true), ft.walls())
	b.ReportMetric(float64(f0)/float64(c0), "transfer-floor-ratio")
}

// startTransferFloor starts transferfloor on a socket in dir, storing its
// pulls under dir too, and returns what times ctr's Nth pull of ref of img
// (made of testimage.ManyLayers) through it. That checks that every blob
// is stored and every layer's file extracted, then removes what the pull
// stored, untimed. transferfloor is stopped when b ends.
func startTransferFloor(b *testing.B, ctr, dir, ref string, img *testimage.Image, registryPID int) func(n int) distRun {
	b.Helper()
	sock, store := filepath.Join(dir, "transferfloor.sock"), filepath.Join(dir, "transferfloor")
	if err := os.Mkdir(store, 0o755); err != nil {
		b.Fatal(err)
	}
	tc := transferapi.NewTransferClient(dial(b, sock))
	pid := startFloorServer(b, "transferfloor", []string{sock, store}, func() error {
		_, err := tc.Transfer(nsCtx("default"), &transferapi.TransferRequest{})
		if status.Code(err) == codes.Unimplemented {
			return nil
		}
		return fmt.Errorf("probe: %v", err)
	})
	return func(n int) distRun {
		b.Helper()
		pulled := filepath.Join(store, strconv.Itoa(n))
		r := runDist(b, "transferfloor", pid, registryPID, ctr, "--address", sock, "--namespace", "floor", "images", "pull", "--plain-http", ref)
		for _, bl := range img.Blobs() {
			if _, err := os.Stat(filepath.Join(pulled, "blobs", bl.Desc.Digest.Encoded())); err != nil {
				b.Fatalf("transferfloor did not store blob %s: %v", bl.Desc.Digest, err)
			}
		}
		for i, l := range img.Layers {
			name := fmt.Sprintf("layer-%04d", i)
			if data, err := os.ReadFile(filepath.Join(pulled, "layers", l.Desc.Digest.Encoded(), name)); err != nil || string(data) != name+"\n" {
				b.Fatalf("transferfloor did not extract layer %s's file %s: %q, %v", l.Desc.Digest, name, data, err)
			}
		}
		if err := os.RemoveAll(pulled); err != nil {
			b.Fatal(err)
		}
		return r
	}
}

// fetchFloor is the median time, over reps, of fetching img's manifest,
// config and layers from the registry at base with conc requests at a
// time over a fresh connection pool,
// keeping nothing: what any pull of img from this registry costs before it
// stores, hashes or unpacks a byte, the registry's own CPU included.
func fetchFloor(b *testing.B, base, repo, tag string, img *testimage.Image, reps, conc int) time.Duration {
	b.Helper()
	var walls []time.Duration
	for i := 0; i < reps; i++ {
		tr := &http.Transport{MaxIdleConnsPerHost: conc}
		cl := &http.Client{Transport: tr}
		get := func(path, accept string) error {
			req, err := http.NewRequest(http.MethodGet, base+"/v2/"+repo+path, nil)
			if err != nil {
				return err
			}
			if accept != "" {
				req.Header.Set("Accept", accept)
			}
			resp, err := cl.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET %s: %s", path, resp.Status)
			}
			return nil
		}
		start := time.Now()
		if err := get("/manifests/"+tag, img.Manifest.Desc.MediaType); err != nil {
			b.Fatal(err)
		}
		blobs := append([]testimage.Blob{img.Config}, img.Layers...)
		sem := make(chan struct{}, conc)
		errs := make(chan error, len(blobs))
		for _, bl := range blobs {
			sem <- struct{}{}
			go func() {
				defer func() { <-sem }()
				errs <- get("/blobs/"+bl.Desc.Digest.String(), "")
			}()
		}
		for range blobs {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
		walls = append(walls, time.Since(start))
		tr.CloseIdleConnections()
	}
	return median(walls)
}
