package unpack

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/diff/walking"
	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/core/snapshots/overlay"
	"github.com/hullrt/hull/internal/testimage"
)

// parallelImage has layers that apply apart from their parents (whiteouts,
// opaque directories, hard links within the layer, a directory replacing a
// file, a file in a directory the layer does not list, whose mode and times
// come from below) and one that cannot: it names a directory after writing
// into it.
func parallelImage() *testimage.Image {
	return testimage.New([]string{"/bin/tool"}, parallelLayers()...)
}

// parallelLayers are parallelImage's layers.
func parallelLayers() [][]testimage.File {
	l1 := []testimage.File{
		{Name: "etc/", Type: tar.TypeDir},
		{Name: "etc/config", Data: []byte("v1")},
		{Name: "etc/removed", Data: []byte("to be whited out")},
		{Name: "opaque/", Type: tar.TypeDir, Mode: 0o750},
		{Name: "opaque/old", Data: []byte("hidden by the opaque dir above")},
		{Name: "opaque/sub/", Type: tar.TypeDir},
		{Name: "opaque/sub/x", Data: []byte("x")},
		{Name: "bin/", Type: tar.TypeDir},
		{Name: "bin/tool", Mode: 0o4755, Data: []byte("#!/bin/sh\n")},
		{Name: "tmp/", Type: tar.TypeDir, Mode: 0o1777},
		{Name: "gone/", Type: tar.TypeDir},
		{Name: "gone/deep", Data: []byte("d")},
		{Name: "wasfile", Data: []byte("f")},
	}
	l2 := []testimage.File{
		{Name: "etc/", Type: tar.TypeDir, Mode: 0o700},
		{Name: "etc/config", Data: []byte("v2"), Mode: 0o600},
		{Name: "etc/.wh.removed"},
		{Name: "opaque/", Type: tar.TypeDir},
		{Name: "opaque/.wh..wh..opq"},
		{Name: "opaque/new", Data: []byte("new")},
		{Name: "data/", Type: tar.TypeDir, Mode: 0o1777},
		{Name: "data/file", Data: []byte("payload")},
		{Name: "data/hard", Type: tar.TypeLink, Linkname: "data/file"},
		{Name: "data/soft", Type: tar.TypeSymlink, Linkname: "../etc/config"},
		{Name: ".wh.gone"},
		{Name: "wasfile/", Type: tar.TypeDir},
		{Name: "wasfile/now", Data: []byte("a dir now")},
	}
	// tmp/ is not in the layer: applied apart, it is made 0755 and gets
	// 1777 from below at commit.
	l3 := []testimage.File{
		{Name: "tmp/x", Data: []byte("x")},
		{Name: "opaque/sub2/", Type: tar.TypeDir},
	}
	l4 := []testimage.File{
		{Name: "data/", Type: tar.TypeDir, Mode: 0o1777},
		{Name: "data/.wh.hard"},
		{Name: "data/fifo", Type: tar.TypeFifo, Mode: 0o644},
		{Name: "bin/", Type: tar.TypeDir},
		{Name: "bin/.wh..wh..opq"},
		{Name: "bin/other", Data: []byte("o")},
		{Name: "bin/link", Type: tar.TypeLink, Linkname: "bin/other"},
	}
	// tmp/ named after tmp/y was written into it: applied in chain.
	l5 := []testimage.File{
		{Name: "tmp/y", Data: []byte("y")},
		{Name: "tmp/", Type: tar.TypeDir, Mode: 0o1777},
	}
	return [][]testimage.File{l1, l2, l3, l4, l5}
}

// overlaySetup is setup with an overlay snapshotter; it skips where
// overlay cannot be mounted.
func overlaySetup(t *testing.T) (context.Context, snapshots.Snapshotter, Options, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("overlay mounts need root")
	}
	dir := t.TempDir()
	db := openDB(t, dir)
	ov, err := overlay.New(filepath.Join(dir, "overlay"))
	if err != nil {
		t.Skipf("overlay not usable here: %v", err)
	}
	t.Cleanup(func() { ov.Close() })
	db.AddSnapshotter("overlayfs", ov)
	sn, _ := db.Snapshotter("overlayfs")
	ctx := namespaces.WithNamespace(context.Background(), "unpack")
	return ctx, sn, Options{Content: db.Content(), Snapshotter: sn, SnapshotterName: "overlayfs", Applier: walking.NewApplier(db.Content())}, dir
}

// describe lists every entry under root with type, mode, owner, size or
// device, link target, content, link count, times (not root's, which is
// the snapshot's, nor a whiteout's) and extended attributes (trusted.overlay.* too, when
// root is an upper directory).
func describe(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s mode=%o %d:%d", rel, st.Mode, st.Uid, st.Gid)
		// Whiteout devices are made when applied; their times are not
		// the layer's.
		whiteout := st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
		if rel != "." && !whiteout {
			line += fmt.Sprintf(" mtime=%d.%09d", st.Mtim.Sec, st.Mtim.Nsec)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			target, _ := os.Readlink(p)
			line += " -> " + target
		case unix.S_IFREG:
			data, _ := os.ReadFile(p)
			line += fmt.Sprintf(" %q nlink=%d", data, st.Nlink)
		case unix.S_IFCHR, unix.S_IFBLK:
			line += fmt.Sprintf(" rdev=%d", st.Rdev)
		}
		buf := make([]byte, 4096)
		if n, err := unix.Llistxattr(p, buf); err == nil && n > 0 {
			names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
			sort.Strings(names)
			for _, name := range names {
				v := make([]byte, 256)
				m, _ := unix.Lgetxattr(p, name, v)
				line += fmt.Sprintf(" %s=%q", name, v[:max(m, 0)])
			}
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// unpacked unpacks img with parallel layers at once and returns, for each
// layer, its snapshot's own directory and the mounted tree of the chain up
// to it, and the statuses reported per layer.
func unpacked(t *testing.T, img *testimage.Image, parallel int) (layers, trees [][]string, statuses map[digest.Digest][]string) {
	t.Helper()
	ctx, sn, o, dir := overlaySetup(t)
	for _, b := range img.Blobs() {
		store(t, ctx, o.Content, b)
	}
	var mu sync.Mutex
	statuses = map[digest.Digest][]string{}
	o.Progress = func(layer ocispec.Descriptor, _ digest.Digest, status string) {
		mu.Lock()
		defer mu.Unlock()
		statuses[layer.Digest] = append(statuses[layer.Digest], status)
	}
	o.ParallelLayers = parallel
	top, err := Unpack(ctx, img.Manifest.Desc, o)
	if err != nil {
		t.Fatalf("unpack with %d layers at once: %v", parallel, err)
	}
	layers, trees = inspect(t, ctx, sn, o, dir, img, top)
	return layers, trees, statuses
}

// inspect checks that top is img's chain of committed snapshots in sn,
// with each layer's blob labelled and nothing left active, and describes
// each layer's own directory and the tree up to it.
func inspect(t *testing.T, ctx context.Context, sn snapshots.Snapshotter, o Options, dir string, img *testimage.Image, top digest.Digest) (layers, trees [][]string) {
	t.Helper()
	var cfg ocispec.Image
	if err := json.Unmarshal(img.Config.Data, &cfg); err != nil {
		t.Fatal(err)
	}
	diffIDs := cfg.RootFS.DiffIDs
	if want := identity.ChainID(diffIDs); top != want {
		t.Fatalf("top chain %s, want %s", top, want)
	}
	// Each layer's blob is labelled with its uncompressed digest by the
	// time Unpack returns, whether its label was written in the commit
	// loop or beside it.
	for i, l := range img.Layers {
		info, err := o.Content.Info(ctx, l.Desc.Digest)
		if err != nil || info.Labels[LabelUncompressed] != diffIDs[i].String() {
			t.Errorf("layer %d: labels %v, %v; want %s = %s", i, info.Labels, err, LabelUncompressed, diffIDs[i])
		}
	}
	for i := range diffIDs {
		chain := identity.ChainID(diffIDs[:i+1]).String()
		info, err := sn.Stat(ctx, chain)
		if err != nil {
			t.Fatal(err)
		}
		wantParent := ""
		if i > 0 {
			wantParent = identity.ChainID(diffIDs[:i]).String()
		}
		if info.Kind != snapshots.KindCommitted || info.Parent != wantParent {
			t.Fatalf("layer %d: %s, parent %q; want committed on %q", i, info.Kind, info.Parent, wantParent)
		}
		key := fmt.Sprintf("view-%d", i)
		mounts, err := sn.View(ctx, key, chain)
		if err != nil {
			t.Fatal(err)
		}
		// A view's first layer is the snapshot's own directory: a bind
		// mount's source or the topmost lowerdir.
		own := mounts[0].Source
		if mounts[0].Type == "overlay" {
			for _, opt := range mounts[0].Options {
				if v, ok := strings.CutPrefix(opt, "lowerdir="); ok {
					l, _ := mount.OverlayLayers(v)
					own = l[0]
				}
			}
		}
		layers = append(layers, describe(t, own))
		err = mount.WithTempMount(ctx, mounts, func(root string) error {
			trees = append(trees, describe(t, root))
			return nil
		}, mount.WithTempMountDir(dir))
		if err != nil {
			t.Fatal(err)
		}
		if err := sn.Remove(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	active := 0
	sn.Walk(ctx, func(_ context.Context, i snapshots.Info) error {
		if i.Kind != snapshots.KindCommitted {
			active++
		}
		return nil
	})
	if active != 0 {
		t.Fatalf("%d snapshots left active", active)
	}
	return layers, trees
}

// sameTrees fails t where a parallel unpack's layer directories or trees
// differ from those of one layer after another.
func sameTrees(t *testing.T, seqLayers, seqTrees, parLayers, parTrees [][]string) {
	t.Helper()
	for i := range seqLayers {
		if s, p := strings.Join(seqLayers[i], "\n"), strings.Join(parLayers[i], "\n"); s != p {
			t.Errorf("layer %d's directory differs\none after another:\n%s\nin parallel:\n%s", i, s, p)
		}
		if s, p := strings.Join(seqTrees[i], "\n"), strings.Join(parTrees[i], "\n"); s != p {
			t.Errorf("tree up to layer %d differs\none after another:\n%s\nin parallel:\n%s", i, s, p)
		}
	}
}

// TestParallelUnpackMatchesSequential unpacks the same image one layer after
// another and four at once with overlayfs, and requires the same snapshots:
// the same chain, the same content in each layer's directory (whiteout
// devices and opaque marks included) and the same mounted trees.
func TestParallelUnpackMatchesSequential(t *testing.T) {
	img := parallelImage()
	seqLayers, seqTrees, _ := unpacked(t, img, 1)
	parLayers, parTrees, statuses := unpacked(t, img, 4)
	sameTrees(t, seqLayers, seqTrees, parLayers, parTrees)
	// Layers 1 to 3 were applied apart, once; layer 4 could not be and
	// was applied a second time, in chain.
	for i, want := range []string{"applying applied", "applying applied", "applying applied", "applying applied", "applying applying applied"} {
		if got := strings.Join(statuses[img.Layers[i].Desc.Digest], " "); got != want {
			t.Errorf("layer %d: statuses %q, want %q", i, got, want)
		}
	}
	// The tree the image shows, as a reader of it sees it.
	top := strings.Join(parTrees[len(parTrees)-1], "\n")
	for _, want := range []string{"etc/config mode=100600", "opaque/new", "opaque/sub2", "data/fifo", "bin/other", "tmp/x", "tmp/y", "tmp mode=41777", "wasfile/now"} {
		if !strings.Contains(top, want) {
			t.Errorf("top tree lacks %q:\n%s", want, top)
		}
	}
	for _, gone := range []string{"etc/removed", "opaque/old", "opaque/sub", "gone", "data/hard", "bin/tool"} {
		if strings.Contains(top, gone+" ") {
			t.Errorf("top tree still has %q:\n%s", gone, top)
		}
	}
}

// TestParallelUnpackNative checks that a snapshotter refusing
// snapshots.WithParent still gets every layer, applied in chain.
func TestParallelUnpackNative(t *testing.T) {
	ctx, _, sn, o := setup(t)
	img := parallelImage()
	for _, b := range img.Blobs() {
		store(t, ctx, o.Content, b)
	}
	o.ParallelLayers = 3
	top, err := Unpack(ctx, img.Manifest.Desc, o)
	if err != nil {
		t.Fatal(err)
	}
	mounts, err := sn.View(ctx, "v", top.String())
	if err != nil {
		t.Fatal(err)
	}
	tree := strings.Join(describe(t, mounts[0].Source), "\n")
	for _, want := range []string{"opaque/new", "data/fifo", "tmp/x", "bin/link"} {
		if !strings.Contains(tree, want) {
			t.Errorf("tree lacks %q:\n%s", want, tree)
		}
	}
	if strings.Contains(tree, "etc/removed") || strings.Contains(tree, "opaque/old") {
		t.Errorf("whited out entries remain:\n%s", tree)
	}
}

// chainRecorder is a snapshotter that records the length of each chain
// it is asked to commit.
type chainRecorder struct {
	snapshots.Snapshotter
	runs []int
}

func (c *chainRecorder) CommitChain(ctx context.Context, parent string, links []snapshots.CommitLink) (int, error) {
	c.runs = append(c.runs, len(links))
	return snapshots.CommitChain(ctx, c.Snapshotter, parent, links)
}

// TestCommitAppliedChainsReadyLayers gives the committer every layer
// applied apart at once: it commits them in one chain, up to the layer
// that could not be applied apart, which it applies again on its parent;
// the snapshots are those of an unpack one layer after another. When
// another unpack has committed the first layers meanwhile, each chain
// stops at the first of them, whose snapshot the committer drops, and goes
// on from there.
func TestCommitAppliedChainsReadyLayers(t *testing.T) {
	img := parallelImage()
	seqLayers, seqTrees, _ := unpacked(t, img, 1)
	for _, tc := range []struct {
		name      string
		committed int // layers another unpack commits after the applies
		runs      []int
	}{
		// Layers 0 to 3 in one chain; layer 4 is committed by its
		// apply on its parent, outside any chain.
		{"alone", 0, []int{4}},
		{"raced", 3, []int{4, 3, 2, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, sn, o, dir := overlaySetup(t)
			for _, b := range img.Blobs() {
				store(t, ctx, o.Content, b)
			}
			var cfg ocispec.Image
			if err := json.Unmarshal(img.Config.Data, &cfg); err != nil {
				t.Fatal(err)
			}
			diffIDs := cfg.RootFS.DiffIDs
			chains := identity.ChainIDs(slices.Clone(diffIDs))
			layers := make([]ocispec.Descriptor, len(img.Layers))
			results := make([]chan detached, len(layers))
			noWait := func(digest.Digest) error { return nil }
			for i, l := range img.Layers {
				layers[i] = l.Desc
				results[i] = make(chan detached, 1)
				results[i] <- applyDetached(ctx, o, l.Desc, diffIDs[i], chains[i], i > 0, noWait, prepareOne(ctx, o, l.Desc, chains[i]))
			}
			var parent digest.Digest
			for i := range tc.committed {
				if err := unpackLayer(ctx, o, layers[i], diffIDs[i], chains[i], parent); err != nil {
					t.Fatal(err)
				}
				parent = chains[i]
			}
			rec := &chainRecorder{Snapshotter: sn}
			o.Snapshotter = rec
			top, err := commitApplied(ctx, o, "", layers, diffIDs, chains, results, noWait, func() {})
			if err != nil {
				t.Fatal(err)
			}
			parLayers, parTrees := inspect(t, ctx, sn, o, dir, img, top)
			sameTrees(t, seqLayers, seqTrees, parLayers, parTrees)
			if !slices.Equal(rec.runs, tc.runs) {
				t.Fatalf("chains committed: %v, want %v", rec.runs, tc.runs)
			}
		})
	}
}

// prepareCounter counts the snapshots prepared through it.
type prepareCounter struct {
	snapshots.Snapshotter
	mu       sync.Mutex
	prepared int
	all      chan struct{} // closed at the want'th Prepare
	want     int
}

func (p *prepareCounter) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	m, err := p.Snapshotter.Prepare(ctx, key, parent, opts...)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.prepared++; p.prepared == p.want {
		close(p.all)
	}
	return m, err
}

// TestParallelUnpackPreparesAhead holds back every layer's blob until each
// layer's snapshot is prepared: they are all prepared before any blob is
// there (so that the stores record them in shared transactions), the
// unpack then makes the same snapshots as one layer after another, and an
// unpack whose blobs never come leaves no snapshot behind.
func TestParallelUnpackPreparesAhead(t *testing.T) {
	img := parallelImage()
	var m ocispec.Manifest
	if err := json.Unmarshal(img.Manifest.Data, &m); err != nil {
		t.Fatal(err)
	}
	isLayer := func(d digest.Digest) bool {
		return slices.ContainsFunc(m.Layers, func(l ocispec.Descriptor) bool { return l.Digest == d })
	}

	t.Run("complete", func(t *testing.T) {
		var pc *prepareCounter
		ready := func(ctx context.Context, d digest.Digest) error {
			if !isLayer(d) {
				return nil
			}
			select {
			case <-pc.all:
				return nil
			case <-time.After(10 * time.Second):
				return fmt.Errorf("blob %s held back: only %d of %d snapshots were prepared without it", d, pc.prepared, pc.want)
			}
		}
		unpackThrough(t, func(sn snapshots.Snapshotter) snapshots.Snapshotter {
			pc = &prepareCounter{Snapshotter: sn, all: make(chan struct{}), want: len(m.Layers)}
			return pc
		}, 2, ready)
	})

	t.Run("blobs never come", func(t *testing.T) {
		ctx, sn, o, _ := overlaySetup(t)
		store(t, ctx, o.Content, img.Config)
		pc := &prepareCounter{Snapshotter: sn, all: make(chan struct{}), want: len(m.Layers)}
		o.Snapshotter, o.ParallelLayers = pc, 2
		failed := errors.New("the pull failed")
		ready := func(ctx context.Context, d digest.Digest) error {
			if !isLayer(d) {
				return nil
			}
			<-pc.all
			return failed
		}
		if _, err := UnpackManifest(ctx, m, o, ready); !errors.Is(err, failed) {
			t.Fatalf("unpack without its blobs: %v, want %v", err, failed)
		}
		var left []string
		sn.Walk(ctx, func(_ context.Context, i snapshots.Info) error {
			left = append(left, i.Name)
			return nil
		})
		if len(left) != 0 {
			t.Fatalf("snapshots left by the failed unpack: %v", left)
		}
	})
}

// TestParallelUnpackLinksWhatAnotherNamespaceHas unpacks an image in one
// namespace, then it and an image on top of it in another: the layers the
// first namespace has are linked, none applied again, as one layer after
// another would link them, and only the new layer is applied. Each layer's
// blob is stored only when the unpack waits for it, as in a pull, and the
// linked layers' blobs are labelled too.
func TestParallelUnpackLinksWhatAnotherNamespaceHas(t *testing.T) {
	base := parallelImage()
	top := testimage.New([]string{"/bin/tool"}, append(parallelLayers(), []testimage.File{{Name: "top", Data: []byte("t")}})...)
	for i := range base.Layers {
		if top.Layers[i].Desc.Digest != base.Layers[i].Desc.Digest {
			t.Fatalf("layer %d differs between the images", i)
		}
	}
	ctx, sn, o, dir := overlaySetup(t)
	o.ParallelLayers = 4
	unpack := func(ctx context.Context, img *testimage.Image) (digest.Digest, map[digest.Digest][]string) {
		t.Helper()
		store(t, ctx, o.Content, img.Config)
		var m ocispec.Manifest
		if err := json.Unmarshal(img.Manifest.Data, &m); err != nil {
			t.Fatal(err)
		}
		blobs := map[digest.Digest]testimage.Blob{}
		for _, l := range img.Layers {
			blobs[l.Desc.Digest] = l
		}
		once := map[digest.Digest]*sync.Once{}
		for d := range blobs {
			once[d] = new(sync.Once)
		}
		ready := func(ctx context.Context, d digest.Digest) error {
			if once[d] != nil { // not the config, stored already
				once[d].Do(func() { store(t, ctx, o.Content, blobs[d]) })
			}
			return nil
		}
		var mu sync.Mutex
		statuses := map[digest.Digest][]string{}
		o := o
		o.Progress = func(layer ocispec.Descriptor, _ digest.Digest, status string) {
			mu.Lock()
			defer mu.Unlock()
			statuses[layer.Digest] = append(statuses[layer.Digest], status)
		}
		chain, err := UnpackManifest(ctx, m, o, ready)
		if err != nil {
			t.Fatal(err)
		}
		return chain, statuses
	}
	unpack(ctx, base)
	other := namespaces.WithNamespace(ctx, "other")
	chain, statuses := unpack(other, top)
	for i, l := range top.Layers {
		want := "exists"
		if i == len(top.Layers)-1 {
			want = "applying applied"
		}
		if got := strings.Join(statuses[l.Desc.Digest], " "); got != want {
			t.Errorf("layer %d in the second namespace: statuses %q, want %q", i, got, want)
		}
	}
	inspect(t, other, sn, o, dir, top, chain)
	// A layer on its own and no layer at all: nothing to link below.
	chain, statuses = unpack(namespaces.WithNamespace(ctx, "third"), base)
	for i, l := range base.Layers {
		if got := strings.Join(statuses[l.Desc.Digest], " "); got != "exists" {
			t.Errorf("layer %d in the third namespace: statuses %q, want exists", i, got)
		}
	}
	inspect(t, namespaces.WithNamespace(ctx, "third"), sn, o, dir, base, chain)
}

// labelCounter counts the uncompressed-digest labels an unpack writes
// through Update (the config's label is written apart).
type labelCounter struct {
	content.Store
	mu      sync.Mutex
	updates int
}

func (c *labelCounter) Update(ctx context.Context, info content.Info, fieldpaths ...string) (content.Info, error) {
	if _, ok := info.Labels[LabelUncompressed]; ok {
		c.mu.Lock()
		c.updates++
		c.mu.Unlock()
	}
	return c.Store.Update(ctx, info, fieldpaths...)
}

// manyCounter is labelCounter for a store that takes many updates at once.
type manyCounter struct {
	*labelCounter
	many int
}

func (c *manyCounter) UpdateMany(ctx context.Context, infos []content.Info, fieldpaths ...string) error {
	c.mu.Lock()
	c.many++
	c.mu.Unlock()
	return c.Store.(content.ManyUpdater).UpdateMany(ctx, infos, fieldpaths...)
}

// TestParallelUnpackLabelsInOneWrite: the layers a parallel unpack
// commits get their uncompressed digests in one write when the store
// takes many updates at once, and one Update each when it does not.
func TestParallelUnpackLabelsInOneWrite(t *testing.T) {
	img := testimage.NewFor(testimage.HostPlatform(), []string{"/bin/true"}, testimage.ManyLayers(6)...)
	var cfg ocispec.Image
	if err := json.Unmarshal(img.Config.Data, &cfg); err != nil {
		t.Fatal(err)
	}
	for _, many := range []bool{true, false} {
		ctx, _, o, _ := overlaySetup(t)
		for _, b := range img.Blobs() {
			store(t, ctx, o.Content, b)
		}
		lc := &labelCounter{Store: o.Content}
		mc := &manyCounter{labelCounter: lc}
		o.Content = lc
		if many {
			o.Content = mc
		}
		o.ParallelLayers = 4
		if _, err := Unpack(ctx, img.Manifest.Desc, o); err != nil {
			t.Fatalf("unpack (many %v): %v", many, err)
		}
		for i, l := range img.Layers {
			info, err := o.Content.Info(ctx, l.Desc.Digest)
			if err != nil || info.Labels[LabelUncompressed] != cfg.RootFS.DiffIDs[i].String() {
				t.Errorf("many %v: layer %d: labels %v, %v; want %s = %s", many, i, info.Labels, err, LabelUncompressed, cfg.RootFS.DiffIDs[i])
			}
		}
		wantMany, wantUpdates := 1, 0
		if !many {
			wantMany, wantUpdates = 0, len(img.Layers)
		}
		if mc.many != wantMany || lc.updates != wantUpdates {
			t.Errorf("many %v: %d UpdateMany and %d Update calls, want %d and %d", many, mc.many, lc.updates, wantMany, wantUpdates)
		}
	}
}

// prepareOne prepares layer's snapshot without parent, as prepareAll does
// for each layer.
func prepareOne(ctx context.Context, o Options, layer ocispec.Descriptor, chain digest.Digest) prepared {
	p, _ := prepareLayer(ctx, o, layer, chain, "")
	return p
}

// batchRecorder records the batches of Prepares made through it.
type batchRecorder struct {
	snapshots.Snapshotter
	mu      sync.Mutex
	batches []int
}

func (b *batchRecorder) PrepareMany(ctx context.Context, reqs []snapshots.PrepareRequest) []snapshots.PrepareResult {
	b.mu.Lock()
	b.batches = append(b.batches, len(reqs))
	b.mu.Unlock()
	return snapshots.PrepareMany(ctx, b.Snapshotter, reqs)
}

// unpackThrough unpacks parallelImage, all its blobs stored, through the
// snapshotter wrap makes of the store's, with parallel applies and ready
// as UnpackManifest takes it, and checks that it makes the same
// snapshots as an unpack one layer after another. It returns the
// manifest.
func unpackThrough(t *testing.T, wrap func(snapshots.Snapshotter) snapshots.Snapshotter, parallel int, ready func(context.Context, digest.Digest) error) ocispec.Manifest {
	t.Helper()
	img := parallelImage()
	seqLayers, seqTrees, _ := unpacked(t, img, 1)
	var m ocispec.Manifest
	if err := json.Unmarshal(img.Manifest.Data, &m); err != nil {
		t.Fatal(err)
	}
	ctx, sn, o, dir := overlaySetup(t)
	for _, b := range img.Blobs() {
		store(t, ctx, o.Content, b)
	}
	o.Snapshotter, o.ParallelLayers = wrap(sn), parallel
	top, err := UnpackManifest(ctx, m, o, ready)
	if err != nil {
		t.Fatal(err)
	}
	o.Snapshotter = sn
	parLayers, parTrees := inspect(t, ctx, sn, o, dir, img, top)
	sameTrees(t, seqLayers, seqTrees, parLayers, parTrees)
	return m
}

// TestParallelUnpackPreparesInOneBatch: a snapshotter that prepares many
// snapshots at once (snapshots.ManyPreparer) gets every layer's above the
// first in one batch, and the unpack makes the same snapshots as one
// layer after another.
func TestParallelUnpackPreparesInOneBatch(t *testing.T) {
	var rec *batchRecorder
	m := unpackThrough(t, func(sn snapshots.Snapshotter) snapshots.Snapshotter {
		rec = &batchRecorder{Snapshotter: sn}
		return rec
	}, 2, nil)
	if want := []int{len(m.Layers) - 1}; !slices.Equal(rec.batches, want) {
		t.Errorf("batches of prepares: %v, want %v", rec.batches, want)
	}
}

// TestParallelUnpackCommitsOneChain lets each layer's blob arrive only a
// while after the one below it, as in a pull: the committer still waits
// for every apply and commits the layers above the first (which has no
// parent to go on and is committed alone) as one chain, not each run that
// was ready when it looked, and the snapshots are those of an unpack one
// layer after another.
func TestParallelUnpackCommitsOneChain(t *testing.T) {
	var (
		rec    *chainRecorder
		layers []digest.Digest
	)
	for _, l := range parallelImage().Layers {
		layers = append(layers, l.Desc.Digest)
	}
	ready := func(ctx context.Context, d digest.Digest) error {
		time.Sleep(time.Duration(max(slices.Index(layers, d), 0)) * 30 * time.Millisecond)
		return nil
	}
	m := unpackThrough(t, func(sn snapshots.Snapshotter) snapshots.Snapshotter {
		rec = &chainRecorder{Snapshotter: sn}
		return rec
	}, len(layers), ready)
	if want := []int{len(m.Layers) - 1}; !slices.Equal(rec.runs, want) {
		t.Errorf("chains committed: %v, want %v", rec.runs, want)
	}
}
