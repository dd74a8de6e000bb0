package bench

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/registrytest"
	"github.com/hullrt/hull/internal/testimage"
)

// scratchDir returns a new directory for a benchmark's files and daemon
// roots, removed when b ends. Unless HULL_BENCH_TMPDIR names a directory to
// make it in (such as /dev/shm, to see the CPU cost without the disk's), it
// is the root of a new ext4 filesystem with a journal (mkfs.ext4's defaults),
// on a sparse 8GiB file in /var/tmp, this machine's disk, attached to a loop
// device with direct I/O. Why not /var/tmp itself: its ext4 has no journal,
// and without one the inode allocator skips every inode deleted less than
// 60s ago (300s while its inode table block is dirty), one buffer-cache
// lookup each, so creating 40,000 files within minutes of deleting as many
// (the previous run's, or anyone's) takes 10-30s of system time instead of
// 2-4s (perf: recently_deleted and find_get_block_common under
// __ext4_new_inode), whoever creates them. On the scratch filesystem `tar
// -xzf` of the unpack benchmark's layer takes 2.0s run after run.
func scratchDir(b *testing.B, pattern string) string {
	b.Helper()
	if base := os.Getenv("HULL_BENCH_TMPDIR"); base != "" {
		dir, err := os.MkdirTemp(base, pattern)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	dir, err := os.MkdirTemp("/var/tmp", pattern)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	f, err := os.Create(img)
	if err != nil {
		b.Fatal(err)
	}
	if err := f.Truncate(8 << 30); err != nil {
		b.Fatal(err)
	}
	f.Close()
	// Inode tables and journal written now, not by a kernel thread during
	// the runs.
	if _, err := run("mkfs.ext4", "-q", "-E", "lazy_itable_init=0,lazy_journal_init=0", img); err != nil {
		b.Fatal(err)
	}
	var out strings.Builder
	if _, err := runTo(&out, "losetup", "--direct-io=on", "--show", "-f", img); err != nil {
		b.Fatal(err)
	}
	dev := strings.TrimSpace(out.String())
	b.Cleanup(func() {
		if _, err := run("losetup", "-d", dev); err != nil {
			b.Errorf("detach %s: %v", dev, err)
		}
	})
	if err := os.Mkdir(mnt, 0o755); err != nil {
		b.Fatal(err)
	}
	if _, err := run("mount", dev, mnt); err != nil {
		b.Fatal(err)
	}
	// Cleanups run last first: the daemons started in it are stopped by
	// then.
	b.Cleanup(func() {
		// A daemon that has just exited may still hold the filesystem
		// busy for a moment (its last files closing): retry briefly.
		var err error
		for i := 0; i < 20; i++ {
			if _, err = run("umount", mnt); err == nil {
				return
			}
			time.Sleep(250 * time.Millisecond)
		}
		b.Errorf("unmount the scratch filesystem: %v; held by: %s", err, holders(mnt))
		run("umount", "-l", mnt)
	})
	return mnt
}

// holders names the processes with a file, directory or mapping under dir,
// for the message of a failed unmount.
func holders(dir string) string {
	var found []string
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid := p.Name()
		if _, err := strconv.Atoi(pid); err != nil {
			continue
		}
		var links []string
		for _, l := range []string{"cwd", "root", "exe"} {
			links = append(links, filepath.Join("/proc", pid, l))
		}
		fds, _ := os.ReadDir(filepath.Join("/proc", pid, "fd"))
		for _, fd := range fds {
			links = append(links, filepath.Join("/proc", pid, "fd", fd.Name()))
		}
		for _, l := range links {
			if t, err := os.Readlink(l); err == nil && strings.HasPrefix(t, dir) {
				comm, _ := os.ReadFile(filepath.Join("/proc", pid, "comm"))
				found = append(found, fmt.Sprintf("%s (%s) %s -> %s", pid, strings.TrimSpace(string(comm)), filepath.Base(l), t))
				break
			}
		}
	}
	if len(found) == 0 {
		return "no process found"
	}
	return strings.Join(found, "; ")
}

// overlaySnapshots is where an overlayfs snapshotter rooted in a daemon's
// root keeps its snapshots, one directory each (the same for hulld and
// containerd).
func overlaySnapshots(root string) string {
	return filepath.Join(root, "io.containerd.snapshotter.v1.overlayfs", "snapshots")
}

// countDir counts the entries of dir (0 when it does not exist).
func countDir(b *testing.B, dir string) int {
	b.Helper()
	es, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		b.Fatal(err)
	}
	return len(es)
}

// waitCount waits up to 30s for dir to hold want entries (a snapshotter may
// remove directories after its garbage collection returns) and fails b
// otherwise; it returns how long it waited.
func waitCount(b *testing.B, what, dir string, want int) time.Duration {
	b.Helper()
	start := time.Now()
	for {
		n := countDir(b, dir)
		if n == want {
			return time.Since(start)
		}
		if time.Since(start) > 30*time.Second {
			b.Fatalf("%s: %d entries in %s, want %d", what, n, dir, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countTree counts the regular files and directories under root.
func countTree(b *testing.B, root string) (files, dirs int) {
	b.Helper()
	err := filepath.WalkDir(root, func(_ string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case e.Type().IsRegular():
			files++
		case e.IsDir():
			dirs++
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return files, dirs - 1 // not root itself
}

// manyFilesLayer describes a layer written to disk by writeManyFilesLayer.
type manyFilesLayer struct {
	path        string
	desc        ocispec.Descriptor
	diffID      digest.Digest
	tarSize     int64
	files, dirs int
}

// words is a vocabulary of pseudo-words for compressible file contents.
func words(r *rand.Rand, n int) [][]byte {
	const letters = "etaoinshrdlcumwfgypbvkjxqz"
	ws := make([][]byte, n)
	for i := range ws {
		w := make([]byte, 2+r.IntN(9), 12)
		for j := range w {
			// Skewed towards the first letters, like text.
			w[j] = letters[min(r.IntN(len(letters)), r.IntN(len(letters)))]
		}
		ws[i] = append(w, ' ')
	}
	return ws
}

// writeManyFilesLayer streams a gzip layer (klauspost gzip, default level)
// to path without holding it in memory: top*sub directories of perDir files
// each, of sizes spread evenly over 1-14KiB (7.5KiB on average), of text
// made of pseudo-words from a 4096-word vocabulary, which compresses about
// 2.5-3 times. The entries are what a layer of a real image holds: each
// directory before its files, uid/gid 0, a fixed mtime.
func writeManyFilesLayer(path string, top, sub, perDir int) (manyFilesLayer, error) {
	l := manyFilesLayer{path: path}
	f, err := os.Create(path)
	if err != nil {
		return l, err
	}
	defer f.Close()
	blobHash := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(f, blobHash), 1<<20)
	zw, err := gzip.NewWriterLevel(bw, gzip.DefaultCompression)
	if err != nil {
		return l, err
	}
	diffHash := sha256.New()
	counter := &countingWriter{w: io.MultiWriter(diffHash, zw)}
	tw := tar.NewWriter(counter)
	r := rand.New(rand.NewPCG(1700000000, 42))
	vocab := words(r, 4096)
	mtime := time.Unix(1700000000, 0)
	dir := func(name string) error {
		l.dirs++
		return tw.WriteHeader(&tar.Header{Name: name + "/", Mode: 0o755, Typeflag: tar.TypeDir, ModTime: mtime})
	}
	buf := make([]byte, 0, 16<<10)
	if err := dir("usr"); err != nil {
		return l, err
	}
	if err := dir("usr/share"); err != nil {
		return l, err
	}
	for i := range top {
		d := fmt.Sprintf("usr/share/pkg-%03d", i)
		if err := dir(d); err != nil {
			return l, err
		}
		for j := range sub {
			s := fmt.Sprintf("%s/mod-%03d", d, j)
			if err := dir(s); err != nil {
				return l, err
			}
			for k := range perDir {
				size := 1024 + r.IntN(13<<10)
				buf = buf[:0]
				for len(buf) < size {
					buf = append(buf, vocab[r.IntN(len(vocab))]...)
					if r.IntN(12) == 0 {
						buf = append(buf, '\n')
					}
				}
				buf = buf[:size]
				name := fmt.Sprintf("%s/file-%05d.txt", s, k)
				if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(size), Typeflag: tar.TypeReg, ModTime: mtime}); err != nil {
					return l, err
				}
				if _, err := tw.Write(buf); err != nil {
					return l, err
				}
				l.files++
			}
		}
	}
	if err := tw.Close(); err != nil {
		return l, err
	}
	if err := zw.Close(); err != nil {
		return l, err
	}
	if err := bw.Flush(); err != nil {
		return l, err
	}
	st, err := f.Stat()
	if err != nil {
		return l, err
	}
	if err := f.Close(); err != nil {
		return l, err
	}
	l.tarSize = counter.n
	l.diffID = digest.NewDigest(digest.SHA256, diffHash)
	l.desc = ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageLayerGzip,
		Digest:    digest.NewDigest(digest.SHA256, blobHash),
		Size:      st.Size(),
	}
	return l, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// pushBlobFile uploads the blob in file path, described by desc, to repo
// (POST, then a monolithic PUT ?digest= streaming the file), for blobs too
// big to hold in memory as a testimage.Blob.
func pushBlobFile(b *testing.B, reg *registrytest.Registry, repo, path string, desc ocispec.Descriptor) {
	b.Helper()
	do := func(req *http.Request, want int) *http.Response {
		resp, err := reg.Do(req)
		if err != nil {
			b.Fatalf("push %s: %s %s: %v", desc.Digest, req.Method, req.URL, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			b.Fatalf("push %s: %s %s: %s: %s", desc.Digest, req.Method, req.URL, resp.Status, body)
		}
		return resp
	}
	req, err := http.NewRequest(http.MethodPost, reg.URL()+"/v2/"+repo+"/blobs/uploads/", nil)
	if err != nil {
		b.Fatal(err)
	}
	loc, err := do(req, http.StatusAccepted).Location()
	if err != nil {
		b.Fatal(err)
	}
	qv := loc.Query()
	qv.Set("digest", desc.Digest.String())
	loc.RawQuery = qv.Encode()
	// Every copy the transport opens (it may reopen the body to retry) is
	// closed here too: one left to a finalizer kept the scratch filesystem
	// busy at its unmount.
	var (
		mu     sync.Mutex
		opened []*os.File
	)
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, f := range opened {
			f.Close()
		}
	}()
	open := func() (io.ReadCloser, error) {
		f, err := os.Open(path)
		if err == nil {
			mu.Lock()
			opened = append(opened, f)
			mu.Unlock()
		}
		return f, err
	}
	body, err := open()
	if err != nil {
		b.Fatal(err)
	}
	req, err = http.NewRequest(http.MethodPut, loc.String(), body)
	if err != nil {
		b.Fatal(err)
	}
	req.ContentLength = desc.Size
	req.GetBody = open
	req.Header.Set("Content-Type", "application/octet-stream")
	do(req, http.StatusCreated)
}

// manyFilesImage builds writeManyFilesLayer's layer in dir, pushes a
// one-layer image of it to reg as repo:v1 and returns the layer, the image
// (whose layer blob has no Data: it stays on disk) and its reference.
func manyFilesImage(b *testing.B, name, dir string, reg *registrytest.Registry, repo string, top, sub, perDir int) (manyFilesLayer, *testimage.Image, string) {
	b.Helper()
	start := time.Now()
	layer, err := writeManyFilesLayer(filepath.Join(dir, "layer.tar.gz"), top, sub, perDir)
	if err != nil {
		b.Fatal(err)
	}
	fmt.Printf("%s: built a layer of %d files, %.1fMiB of tar, %.1fMiB gzip, in %s (in %s)\n",
		name, layer.files, float64(layer.tarSize)/(1<<20), float64(layer.desc.Size)/(1<<20),
		time.Since(start).Round(time.Millisecond), dir)
	start = time.Now()
	pushBlobFile(b, reg, repo, layer.path, layer.desc)
	img := testimage.NewLayers(testimage.HostPlatform(), []string{"/bin/true"},
		testimage.BuiltLayer{Blob: testimage.Blob{Desc: layer.desc}, DiffID: layer.diffID})
	reg.Push(b, repo, "v1", img) // the layer is there already: only config and manifest go
	fmt.Printf("%s: pushed to %s in %s\n", name, reg.Host(), time.Since(start).Round(time.Millisecond))
	return layer, img, reg.Host() + "/" + repo + ":v1"
}

// hullctlBin returns $HULLCTL_BIN or a hullctl built from this tree.
func hullctlBin(b *testing.B) string {
	b.Helper()
	if p := os.Getenv("HULLCTL_BIN"); p != "" {
		return p
	}
	return hulltest.Build(b, "hullctl", "github.com/hullrt/hull/cmd/hullctl")
}

// BenchmarkUnpack300MB times unpacking one gzip layer of about 300MB
// uncompressed holding 40,000 files of 1-14KiB of compressible text in 1,000
// directories (built on disk, pushed to a plain-http docker-registry):
// `hullctl images unpack REF` against a hulld that has fetched the image
// (`images pull --skip-unpack`, once), versus `tar -xzf LAYER -C DIR` into a
// new directory on the same filesystem (scratchDir's: a journaled ext4 on
// this machine's disk). After each hull run the snapshot is removed
// (`hullctl snapshots rm CHAIN` and `hullctl gc`) and the overlayfs
// snapshotter's directory is checked to be empty, so every run writes every
// file; tar's directory is removed after each of its runs. Runs alternate,
// medians of 3, the disk synced before each; neither includes writing the
// files back to disk. Target: hull <= 1.0x tar.
func BenchmarkUnpack300MB(b *testing.B) {
	const (
		reps                = 3
		target              = 1.0
		top, sub, perDir    = 40, 25, 40
		repo, ns            = "bench/many-files", "bench-unpack"
		wantFiles, wantDirs = top * sub * perDir, 2 + top + top*sub
	)
	dir := scratchDir(b, "hull-bench-unpack-")
	reg := registrytest.Start(b, registrytest.Options{})
	layer, _, ref := manyFilesImage(b, "unpack-300MB", dir, reg, repo, top, sub, perDir)

	hullctl := hullctlBin(b)
	h := startHull(b, filepath.Join(dir, "hull"))
	hctl := func(args ...string) []string {
		return append([]string{"--address", h.Address, "--namespace", ns}, args...)
	}
	if _, err := run(hullctl, hctl("images", "pull", "--plain", "--plain-http", "--skip-unpack", ref)...); err != nil {
		b.Fatal(err)
	}
	snaps := overlaySnapshots(h.Root)
	chain := layer.diffID.String() // the chain ID of a single layer is its diffID
	settle(b, h.Address)

	timeHull := func() distRun {
		if n := countDir(b, snaps); n != 0 {
			b.Fatalf("hull: %d snapshot directories before a run", n)
		}
		syncDisk(b)
		profiled := profileHull(b, h, "unpack-300MB", 4)
		wall, own, dcpu, err := cmdCPU(h.PID(), hullctl, hctl("images", "unpack", ref)...)
		profiled()
		if err != nil {
			b.Fatal(err)
		}
		if n := countDir(b, snaps); n != 1 {
			b.Fatalf("hull: %d snapshot directories after unpacking one layer", n)
		}
		es, _ := os.ReadDir(snaps)
		if f, d := countTree(b, filepath.Join(snaps, es[0].Name(), "fs")); f != wantFiles || d != wantDirs {
			b.Fatalf("hull: the snapshot holds %d files and %d directories, want %d and %d", f, d, wantFiles, wantDirs)
		}
		if _, err := run(hullctl, hctl("snapshots", "rm", chain)...); err != nil {
			b.Fatal(err)
		}
		if _, err := run(hullctl, hctl("gc")...); err != nil {
			b.Fatal(err)
		}
		if waited := waitCount(b, "hull after snapshots rm and gc", snaps, 0); waited > time.Second {
			fmt.Printf("unpack-300MB: hull's snapshot directory went %s after gc returned\n", waited.Round(time.Millisecond))
		}
		return distRun{wall: wall, client: own, daemon: dcpu}
	}
	timeTar := func(i int) distRun {
		dest := filepath.Join(dir, fmt.Sprintf("tar-%d", i))
		if err := os.Mkdir(dest, 0o755); err != nil {
			b.Fatal(err)
		}
		syncDisk(b)
		// tar's CPU time includes its gzip child's (wait4 reports both).
		wall, own, _, err := cmdCPU(os.Getpid(), "tar", "-xzf", layer.path, "-C", dest)
		if err != nil {
			b.Fatal(err)
		}
		if f, d := countTree(b, dest); f != wantFiles || d != wantDirs {
			b.Fatalf("tar: %d files and %d directories, want %d and %d", f, d, wantFiles, wantDirs)
		}
		if err := os.RemoveAll(dest); err != nil {
			b.Fatal(err)
		}
		return distRun{wall: wall, client: own}
	}
	hullMem := idleMemory(b, h.PID())

	b.ResetTimer()
	var hullRuns, tarRuns distTimes
	for i := 0; i < reps; i++ {
		if i%2 == 0 {
			hullRuns = append(hullRuns, timeHull())
			tarRuns = append(tarRuns, timeTar(i))
		} else {
			tarRuns = append(tarRuns, timeTar(i))
			hullRuns = append(hullRuns, timeHull())
		}
	}
	b.StopTimer()
	hullMem.finish(b, h.PID())

	hm, tm := median(hullRuns.walls()), median(tarRuns.walls())
	report(b, "unpack-300MB", "tar", hm, tm, target,
		fmt.Sprintf("hull: %s; tar CPU (with gzip) %s; hull runs %v (hulld CPU %v), tar runs %v (CPU %v); hulld %s",
			hullRuns.cpuSummary(false), ms(median(tarRuns.pick(func(r distRun) time.Duration { return r.client }))),
			hullRuns.walls(), hullRuns.pick(func(r distRun) time.Duration { return r.daemon }),
			tarRuns.walls(), tarRuns.pick(func(r distRun) time.Duration { return r.client }), hullMem))
	b.ReportMetric(mib(hullMem.increase()), "hull-peak-increase-MiB")
}

// BenchmarkPullUnpack500MB pulls and unpacks the image of BenchmarkPull500MB
// (6 gzip layers of about 500MiB in all, each one file of random data:
// download, decompression and large sequential writes, few files; see
// BenchmarkUnpack300MB for many small files) from a plain-http
// docker-registry on loopback: `hullctl images pull --plain --plain-http
// REF` against hulld versus `ctr images pull --plain-http REF` against
// containerd, both rooted in one scratchDir (a journaled ext4 on this
// machine's disk) and unpacking into their overlayfs snapshotter. Each
// run uses a fresh namespace and starts with none of the layers' blobs and
// no snapshot directory on disk (the previous run's image is removed with
// `images rm --sync`, and that is checked), so every run downloads, writes
// and applies everything. Runs alternate, medians of 3. Target: hull <= 0.7x
// containerd, and hulld's peak RSS during its pulls no more than 64MiB over
// its idle RSS.
func BenchmarkPullUnpack500MB(b *testing.B) {
	const (
		reps      = 3
		target    = 0.7
		memTarget = 64 // MiB
		repo      = "bench/big"
	)
	img := bigImage(b)
	dir := scratchDir(b, "hull-bench-pull-unpack-")

	reg := registrytest.Start(b, registrytest.Options{})
	start := time.Now()
	reg.Push(b, repo, "v1", img)
	fmt.Printf("pull-unpack-500MB: pushed to %s in %s\n", reg.Host(), time.Since(start).Round(time.Millisecond))
	ref := reg.Host() + "/" + repo + ":v1"

	hull, ctrd := startDistDaemons(b, dir,
		[]string{"images", "pull", "--plain", "--plain-http", ref},
		[]string{"images", "pull", "--plain-http", ref})
	hull.snapshots = overlaySnapshots(hull.root)
	ctrd.snapshots = overlaySnapshots(ctrd.root)
	settle(b, hull.addr, ctrd.addr)
	hullMem, ctrdMem := idleMemory(b, hull.pid), idleMemory(b, ctrd.pid)

	b.ResetTimer()
	// Alternating, who goes first swapped each round, so that drift hits
	// both alike.
	times := alternate(b, reps, "bench-pull-unpack", ref, img, reg.PID(), hull, ctrd)
	b.StopTimer()
	hullMem.finish(b, hull.pid)
	ctrdMem.finish(b, ctrd.pid)

	h, c := median(times["hull"].walls()), median(times["containerd"].walls())
	report(b, "pull-unpack-500MB", "containerd", h, c, target,
		fmt.Sprintf("with hull: %s; with containerd: %s; hull runs %v, containerd runs %v",
			times["hull"].cpuSummary(true), times["containerd"].cpuSummary(true),
			times["hull"].walls(), times["containerd"].walls()))
	fmt.Printf("pull-unpack-500MB-memory: hulld %s (target <= %dMiB, %s); containerd %s\n",
		hullMem, memTarget, verdict(mib(hullMem.increase()), memTarget), ctrdMem)
	b.ReportMetric(mib(hullMem.increase()), "hull-peak-increase-MiB")
	b.ReportMetric(mib(ctrdMem.increase()), "containerd-peak-increase-MiB")
}

// BenchmarkPullUnpackManyFiles is BenchmarkPullUnpack500MB with the image
// of BenchmarkUnpack300MB instead (one gzip layer of 129MiB, 322MiB of tar,
// 40,000 files of compressible text), where creating files and
// decompressing, not moving bytes, is the work: `hullctl images pull --plain
// --plain-http REF` against hulld versus `ctr images pull --plain-http REF`
// against containerd, each run in a fresh namespace from no blob and no
// snapshot on disk (checked). Runs alternate, medians of 3. Target, as for
// the 500MB pull: hull <= 0.7x containerd.
func BenchmarkPullUnpackManyFiles(b *testing.B) {
	const (
		reps             = 3
		target           = 0.7
		top, sub, perDir = 40, 25, 40
		repo             = "bench/many-files"
	)
	dir := scratchDir(b, "hull-bench-pull-many-")
	reg := registrytest.Start(b, registrytest.Options{})
	_, img, ref := manyFilesImage(b, "pull-unpack-many-files", dir, reg, repo, top, sub, perDir)

	hull, ctrd := startDistDaemons(b, dir,
		[]string{"images", "pull", "--plain", "--plain-http", ref},
		[]string{"images", "pull", "--plain-http", ref})
	hull.snapshots = overlaySnapshots(hull.root)
	ctrd.snapshots = overlaySnapshots(ctrd.root)
	settle(b, hull.addr, ctrd.addr)
	hullMem, ctrdMem := idleMemory(b, hull.pid), idleMemory(b, ctrd.pid)

	b.ResetTimer()
	times := map[string]distTimes{}
	for i := 0; i < reps; i++ {
		order := []*distDaemon{hull, ctrd}
		if i%2 == 1 {
			order = []*distDaemon{ctrd, hull}
		}
		for _, d := range order {
			ns := fmt.Sprintf("bench-pull-many-%d", i)
			times[d.name] = append(times[d.name], timeDist(b, d, ns, ref, img, reg.PID()))
		}
	}
	b.StopTimer()
	hullMem.finish(b, hull.pid)
	ctrdMem.finish(b, ctrd.pid)

	h, c := median(times["hull"].walls()), median(times["containerd"].walls())
	report(b, "pull-unpack-many-files", "containerd", h, c, target,
		fmt.Sprintf("with hull: %s; with containerd: %s; hull runs %v, containerd runs %v; memory: hulld %s; containerd %s",
			times["hull"].cpuSummary(true), times["containerd"].cpuSummary(true),
			times["hull"].walls(), times["containerd"].walls(), hullMem, ctrdMem))
	b.ReportMetric(mib(hullMem.increase()), "hull-peak-increase-MiB")
}

// checkSnapshots checks that d's overlayfs snapshotter holds want snapshot
// directories (when d.snapshots is set), waiting up to 30s for removals.
func checkSnapshots(b *testing.B, d *distDaemon, when string, want int) {
	b.Helper()
	if d.snapshots == "" {
		return
	}
	if want == 0 {
		if waited := waitCount(b, d.name+" "+when, d.snapshots, 0); waited > time.Second {
			fmt.Printf("%s: snapshot directories went %s after `images rm --sync` returned\n", d.name, waited.Round(time.Millisecond))
		}
		return
	}
	if n := countDir(b, d.snapshots); n != want {
		b.Fatalf("%s: %d snapshot directories %s, want %d", d.name, n, when, want)
	}
}
