package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	eventsapi "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/internal/hulltest"
)

func newClient(t *testing.T, d *hulltest.Daemon, opts ...client.Opt) *client.Client {
	t.Helper()
	c, err := client.New(d.Address, append([]client.Opt{client.WithTimeout(10 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return client.WithNamespace(ctx, "test")
}

func randBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func wantErr(t *testing.T, err error, is func(error) bool, class string, contains ...string) {
	t.Helper()
	if err == nil || !is(err) {
		t.Fatalf("got error %v, want %s", err, class)
	}
	for _, s := range contains {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("error %q does not mention %q", err, s)
		}
	}
}

func readAll(t *testing.T, ctx context.Context, cs content.Store, d digest.Digest) []byte {
	t.Helper()
	b, err := client.ReadBlob(ctx, cs, ocispec.Descriptor{Digest: d})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func listDigests(t *testing.T, ctx context.Context, cs content.Store, filters ...string) []digest.Digest {
	t.Helper()
	var out []digest.Digest
	if err := cs.Walk(ctx, func(i content.Info) error { out = append(out, i.Digest); return nil }, filters...); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestContentRoundTrip writes a blob larger than one message through the
// streaming writer and reads it back whole and in pieces.
func TestContentRoundTrip(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	c := newClient(t, d)
	ctx := testCtx(t)
	cs := c.ContentStore()

	data := randBytes(3<<20+12345, 1)
	dgst := digest.FromBytes(data)
	w, err := cs.Writer(ctx, content.WithRef("round-trip"), content.WithDescriptor(ocispec.Descriptor{Size: int64(len(data)), Digest: dgst}))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := w.Write(data); err != nil || n != len(data) {
		t.Fatalf("write: %d, %v", n, err)
	}
	st, err := w.Status()
	if err != nil || st.Offset != int64(len(data)) || st.Ref != "round-trip" {
		t.Fatalf("status %+v, %v", st, err)
	}
	if w.Digest() != dgst {
		t.Fatalf("writer digest %s, want %s", w.Digest(), dgst)
	}
	if err := w.Commit(ctx, int64(len(data)), dgst, content.WithLabels(map[string]string{"containerd.io/gc.root": "x", "a": "1"})); err != nil {
		t.Fatal(err)
	}

	info, err := cs.Info(ctx, dgst)
	if err != nil || info.Size != int64(len(data)) || info.Labels["a"] != "1" {
		t.Fatalf("info %+v, %v", info, err)
	}
	if got := readAll(t, ctx, cs, dgst); !bytes.Equal(got, data) {
		t.Fatal("read back different bytes")
	}
	ra, err := cs.ReaderAt(ctx, ocispec.Descriptor{Digest: dgst})
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	if ra.Size() != int64(len(data)) {
		t.Fatalf("size %d", ra.Size())
	}
	p := make([]byte, 100)
	if n, err := ra.ReadAt(p, 2<<20-50); err != nil || n != 100 || !bytes.Equal(p, data[2<<20-50:2<<20+50]) {
		t.Fatalf("ReadAt middle: %d, %v", n, err)
	}
	if n, err := ra.ReadAt(p, int64(len(data))-10); !errors.Is(err, io.EOF) || n != 10 || !bytes.Equal(p[:10], data[len(data)-10:]) {
		t.Fatalf("ReadAt tail: %d, %v", n, err)
	}
	if n, err := ra.ReadAt(p, int64(len(data))); !errors.Is(err, io.EOF) || n != 0 {
		t.Fatalf("ReadAt end: %d, %v", n, err)
	}

	if got := listDigests(t, ctx, cs); !slices.Equal(got, []digest.Digest{dgst}) {
		t.Fatalf("listed %v", got)
	}
	if got := listDigests(t, ctx, cs, "labels.a==2"); len(got) != 0 {
		t.Fatalf("filter labels.a==2 listed %v", got)
	}
	info, err = cs.Update(ctx, content.Info{Digest: dgst, Labels: map[string]string{"a": "2"}}, "labels.a")
	if err != nil || info.Labels["a"] != "2" || info.Labels["containerd.io/gc.root"] != "x" {
		t.Fatalf("update: %+v, %v", info, err)
	}
	if got := listDigests(t, ctx, cs, "labels.a==2"); !slices.Equal(got, []digest.Digest{dgst}) {
		t.Fatalf("filter labels.a==2 listed %v", got)
	}

	// WriteBlob of a blob that exists is a success.
	if err := client.WriteBlob(ctx, cs, "again", bytes.NewReader(data), ocispec.Descriptor{Size: int64(len(data)), Digest: dgst}); err != nil {
		t.Fatalf("WriteBlob of existing blob: %v", err)
	}

	if err := cs.Delete(ctx, dgst); err != nil {
		t.Fatal(err)
	}
	_, err = cs.Info(ctx, dgst)
	wantErr(t, err, errdefs.IsNotFound, "NotFound", dgst.String())
	_, err = cs.ReaderAt(ctx, ocispec.Descriptor{Digest: dgst})
	wantErr(t, err, errdefs.IsNotFound, "NotFound")
}

// onlyReader hides Seek and ReadAt so that WriteBlob must resume by
// discarding, as it does for a pipe.
type onlyReader struct{ r io.Reader }

func (o *onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func TestContentResumeAfterClose(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	c := newClient(t, d)
	ctx := testCtx(t)
	cs := c.ContentStore()

	data := randBytes(2<<20+7, 2)
	desc := ocispec.Descriptor{Size: int64(len(data)), Digest: digest.FromBytes(data)}
	for _, tc := range []struct {
		name string
		r    func([]byte) io.Reader
	}{
		{"seek", func(b []byte) io.Reader { return bytes.NewReader(b) }},
		{"discard", func(b []byte) io.Reader { return &onlyReader{bytes.NewReader(b)} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := "resume-" + tc.name
			w, err := cs.Writer(ctx, content.WithRef(ref), content.WithDescriptor(desc))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(data[:1<<20+3]); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			st, err := cs.Status(ctx, ref)
			if err != nil || st.Offset != 1<<20+3 || st.Total != desc.Size || st.Expected != desc.Digest {
				t.Fatalf("status after close: %+v, %v", st, err)
			}
			sts, err := cs.ListStatuses(ctx)
			if err != nil || !slices.ContainsFunc(sts, func(s content.Status) bool { return s.Ref == ref }) {
				t.Fatalf("ListStatuses: %+v, %v", sts, err)
			}
			// Close has returned, so the ref is free at once.
			w, err = cs.Writer(ctx, content.WithRef(ref), content.WithDescriptor(desc))
			if err != nil {
				t.Fatal(err)
			}
			if st, err := w.Status(); err != nil || st.Offset != 1<<20+3 {
				t.Fatalf("resumed writer status %+v, %v", st, err)
			}
			// A root label keeps the blob from the collection the other
			// subtest's delete starts.
			if err := client.Copy(ctx, w, tc.r(data), desc.Size, desc.Digest, content.WithLabels(map[string]string{"containerd.io/gc.root": "t"})); err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, ctx, cs, desc.Digest); !bytes.Equal(got, data) {
				t.Fatal("resumed blob differs")
			}
			if _, err := cs.Status(ctx, ref); !errdefs.IsNotFound(err) {
				t.Fatalf("status after commit: %v, want NotFound", err)
			}
			if err := cs.Delete(ctx, desc.Digest); err != nil {
				t.Fatal(err)
			}
		})
	}

	// Truncate(0) restarts the ingest; Abort drops it.
	w, err := cs.Writer(ctx, content.WithRef("trunc"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("garbage")); err != nil {
		t.Fatal(err)
	}
	if err := w.Truncate(0); err != nil {
		t.Fatal(err)
	}
	if st, err := w.Status(); err != nil || st.Offset != 0 {
		t.Fatalf("after truncate: %+v, %v", st, err)
	}
	w.Close()
	if err := cs.Abort(ctx, "trunc"); err != nil {
		t.Fatal(err)
	}
	_, err = cs.Status(ctx, "trunc")
	wantErr(t, err, errdefs.IsNotFound, "NotFound", "trunc")
}

// TestContentResumeAfterRestart leaves ingests half written across hulld
// restarts, a clean one (writer closed, SIGTERM) and a crash (writer still
// open, SIGKILL), and finishes them against new hullds over the same state.
func TestContentResumeAfterRestart(t *testing.T) {
	dir := t.TempDir()
	d := hulltest.Start(t, hulltest.Options{Dir: dir})
	c := newClient(t, d)
	ctx := testCtx(t)

	data := randBytes(3<<20, 3)
	desc := ocispec.Descriptor{Size: int64(len(data)), Digest: digest.FromBytes(data)}
	other := randBytes(1<<20+5, 4)
	otherDesc := ocispec.Descriptor{Size: int64(len(other)), Digest: digest.FromBytes(other)}

	w, err := c.ContentStore().Writer(ctx, content.WithRef("clean"), content.WithDescriptor(otherDesc))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(other[:1<<20]); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w, err = c.ContentStore().Writer(ctx, content.WithRef("crash"), content.WithDescriptor(desc))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data[:2<<20]); err != nil {
		t.Fatal(err)
	}
	d.Kill()
	// The stream is gone: the writer says so rather than hanging.
	if _, err := w.Write(data[2<<20:]); err == nil {
		t.Fatal("write after the daemon died succeeded")
	}
	w.Close()

	d = hulltest.Start(t, hulltest.Options{Dir: dir})
	d.Stop()
	d = hulltest.Start(t, hulltest.Options{Dir: dir})
	c = newClient(t, d)
	cs := c.ContentStore()
	for _, tc := range []struct {
		ref    string
		offset int64
		data   []byte
		desc   ocispec.Descriptor
	}{
		{"clean", 1 << 20, other, otherDesc},
		{"crash", 2 << 20, data, desc},
	} {
		st, err := cs.Status(ctx, tc.ref)
		if err != nil || st.Offset != tc.offset {
			t.Fatalf("%s: status after restart: %+v, %v", tc.ref, st, err)
		}
		r := &countingReader{r: &onlyReader{bytes.NewReader(tc.data)}}
		// The root label keeps the blob from the start-up collection.
		if err := client.WriteBlob(ctx, cs, tc.ref, r, tc.desc, content.WithLabels(map[string]string{"containerd.io/gc.root": "t"})); err != nil {
			t.Fatalf("%s: %v", tc.ref, err)
		}
		if got := readAll(t, ctx, cs, tc.desc.Digest); !bytes.Equal(got, tc.data) {
			t.Fatalf("%s: resumed blob differs", tc.ref)
		}
		if r.n != int64(len(tc.data)) {
			t.Fatalf("%s: read %d bytes of input, want %d", tc.ref, r.n, len(tc.data))
		}
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func TestContentConcurrentWriter(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	c := newClient(t, d)
	ctx := testCtx(t)
	cs := c.ContentStore()

	w, err := cs.Writer(ctx, content.WithRef("busy"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = cs.Writer(ctx, content.WithRef("busy"))
	wantErr(t, err, errdefs.IsUnavailable, "Unavailable", "busy")

	// OpenWriter waits for the ref instead.
	done := make(chan error, 1)
	go func() {
		w2, err := client.OpenWriter(ctx, cs, content.WithRef("busy"))
		if err == nil {
			w2.Close()
		}
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	w.Close()
	if err := <-done; err != nil {
		t.Fatalf("OpenWriter after release: %v", err)
	}
}

func TestContentCommitWrongDigest(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	c := newClient(t, d)
	ctx := testCtx(t)
	cs := c.ContentStore()

	data := []byte("hello, hull")
	wrong := digest.FromString("something else")
	w, err := cs.Writer(ctx, content.WithRef("wrong"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	err = w.Commit(ctx, int64(len(data)), wrong)
	wantErr(t, err, errdefs.IsFailedPrecondition, "FailedPrecondition", wrong.String())
	if got := listDigests(t, ctx, cs); len(got) != 0 {
		t.Fatalf("listed %v after failed commit", got)
	}
	_, err = cs.Info(ctx, digest.FromBytes(data))
	wantErr(t, err, errdefs.IsNotFound, "NotFound")

	err = client.WriteBlob(ctx, cs, "wrong-size", bytes.NewReader(data), ocispec.Descriptor{Size: int64(len(data)) + 1})
	wantErr(t, err, errdefs.IsFailedPrecondition, "FailedPrecondition")
}

func TestImages(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	c := newClient(t, d)
	ctx := testCtx(t)
	is := c.ImageService()

	target := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("m1"), Size: 10}
	created, err := is.Create(ctx, images.Image{Name: "example.com/a:1", Target: target, Labels: map[string]string{"tier": "gold"}})
	if err != nil {
		t.Fatal(err)
	}
	if created.CreatedAt.IsZero() || created.Target.Digest != target.Digest {
		t.Fatalf("created %+v", created)
	}
	_, err = is.Create(ctx, images.Image{Name: "example.com/a:1", Target: target})
	wantErr(t, err, errdefs.IsAlreadyExists, "AlreadyExists", "example.com/a:1")
	other := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("i1"), Size: 20}
	if _, err := is.Create(ctx, images.Image{Name: "example.com/b:1", Target: other}); err != nil {
		t.Fatal(err)
	}

	names := func(filters ...string) []string {
		t.Helper()
		imgs, err := is.List(ctx, filters...)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, i := range imgs {
			out = append(out, i.Name)
		}
		slices.Sort(out)
		return out
	}
	if got := names(); !slices.Equal(got, []string{"example.com/a:1", "example.com/b:1"}) {
		t.Fatalf("list: %v", got)
	}
	if got := names("labels.tier==gold"); !slices.Equal(got, []string{"example.com/a:1"}) {
		t.Fatalf("label filter: %v", got)
	}
	if got := names("target.mediatype==" + ocispec.MediaTypeImageIndex); !slices.Equal(got, []string{"example.com/b:1"}) {
		t.Fatalf("mediatype filter: %v", got)
	}
	if got := names(`name~="a:"`, "labels.none==x"); !slices.Equal(got, []string{"example.com/a:1"}) {
		t.Fatalf("any-of filters: %v", got)
	}

	upd, err := is.Update(ctx, images.Image{Name: "example.com/a:1", Labels: map[string]string{"tier": "silver"}}, "labels.tier")
	if err != nil || upd.Labels["tier"] != "silver" || upd.Target.Digest != target.Digest {
		t.Fatalf("update: %+v, %v", upd, err)
	}
	got, err := is.Get(ctx, "example.com/a:1")
	if err != nil || got.Labels["tier"] != "silver" {
		t.Fatalf("get: %+v, %v", got, err)
	}

	err = is.Delete(ctx, "example.com/a:1", images.DeleteTarget(&other))
	if err == nil {
		t.Fatal("delete with a stale target succeeded")
	}
	if err := is.Delete(ctx, "example.com/a:1", images.DeleteTarget(&target), images.SynchronousDelete()); err != nil {
		t.Fatal(err)
	}
	_, err = is.Get(ctx, "example.com/a:1")
	wantErr(t, err, errdefs.IsNotFound, "NotFound", "example.com/a:1")
	err = is.Delete(ctx, "example.com/a:1")
	wantErr(t, err, errdefs.IsNotFound, "NotFound")
}

func TestLeases(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	c := newClient(t, d, client.WithDefaultNamespace("leasetest"))
	ctx := context.Background()
	lm := c.LeasesService()

	lctx, done, err := c.WithLease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id, ok := leases.FromContext(lctx)
	if !ok {
		t.Fatal("WithLease returned a context without a lease")
	}
	ls, err := lm.List(ctx, "id=="+id)
	if err != nil || len(ls) != 1 {
		t.Fatalf("list: %+v, %v", ls, err)
	}
	exp, err := time.Parse(time.RFC3339, ls[0].Labels[leases.ExpireLabel])
	if err != nil || exp.Before(time.Now().Add(23*time.Hour)) || exp.After(time.Now().Add(25*time.Hour)) {
		t.Fatalf("expiry label %q: %v", ls[0].Labels[leases.ExpireLabel], err)
	}
	// A nested WithLease reuses the outer lease.
	if inner, innerDone, err := c.WithLease(lctx); err != nil || inner != lctx || innerDone(ctx) != nil {
		t.Fatalf("nested WithLease: %v", err)
	}

	data := []byte("leased blob")
	desc := ocispec.Descriptor{Size: int64(len(data)), Digest: digest.FromBytes(data)}
	if err := client.WriteBlob(lctx, c.ContentStore(), "leased", bytes.NewReader(data), desc); err != nil {
		t.Fatal(err)
	}
	rs, err := lm.ListResources(ctx, id)
	if err != nil || !slices.Contains(rs, leases.Resource{Type: "content", ID: desc.Digest.String()}) {
		t.Fatalf("resources %+v, %v", rs, err)
	}

	// done works with a context that carries no namespace of its own,
	// even on a client whose default differs.
	if err := done(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ls, err := lm.List(ctx); err != nil || len(ls) != 0 {
		t.Fatalf("leases after done: %+v, %v", ls, err)
	}

	l, err := lm.Create(ctx, "mine", map[string]string{"k": "v"})
	if err != nil || l.ID != "mine" || l.Labels["k"] != "v" || l.CreatedAt.IsZero() {
		t.Fatalf("create: %+v, %v", l, err)
	}
	_, err = lm.Create(ctx, "mine", nil)
	wantErr(t, err, errdefs.IsAlreadyExists, "AlreadyExists", "mine")
	r := leases.Resource{Type: "content", ID: desc.Digest.String()}
	if err := lm.AddResource(ctx, "mine", r); err != nil {
		t.Fatal(err)
	}
	if err := lm.DeleteResource(ctx, "mine", r); err != nil {
		t.Fatal(err)
	}
	if err := lm.Delete(ctx, "mine", true); err != nil {
		t.Fatal(err)
	}
	err = lm.Delete(ctx, "mine", false)
	wantErr(t, err, errdefs.IsNotFound, "NotFound", "mine")

	lctx, done, err = c.WithLease(ctx, client.WithLeaseID("named"), client.WithLeaseExpiration(0), client.WithLeaseLabels(map[string]string{"x": "y"}))
	if err != nil {
		t.Fatal(err)
	}
	ls, err = lm.List(ctx, "id==named")
	if err != nil || len(ls) != 1 || ls[0].Labels["x"] != "y" || ls[0].Labels[leases.ExpireLabel] != "" {
		t.Fatalf("named lease: %+v, %v", ls, err)
	}
	if err := done(lctx); err != nil {
		t.Fatal(err)
	}
}

func TestEvents(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	c := newClient(t, d)
	ctx := testCtx(t)
	es := c.EventService()

	sctx, cancel := context.WithCancel(ctx)
	ch, errs := es.Subscribe(sctx, `topic=="/test/hello"`)
	// The subscription starts asynchronously: publish until it sees one.
	var env *gotEvent
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for env == nil {
		select {
		case <-tick.C:
			if err := es.Publish(ctx, "/test/other", &eventsapi.NamespaceCreate{Name: "nope"}); err != nil {
				t.Fatal(err)
			}
			if err := es.Publish(ctx, "/test/hello", &eventsapi.NamespaceCreate{Name: "hello"}); err != nil {
				t.Fatal(err)
			}
		case e := <-ch:
			env = &gotEvent{e.Timestamp, e.Namespace, e.Topic, e.Event}
		case err := <-errs:
			t.Fatalf("subscription failed: %v", err)
		}
	}
	if env.ns != "test" || env.topic != "/test/hello" || env.ts.IsZero() {
		t.Fatalf("envelope %+v", env)
	}
	v, err := typeurl.UnmarshalAny(env.event)
	if err != nil {
		t.Fatal(err)
	}
	if nc, ok := v.(*eventsapi.NamespaceCreate); !ok || nc.Name != "hello" {
		t.Fatalf("event %#v", v)
	}

	cancel()
	for range ch {
	}
	if err, ok := <-errs; ok && err != nil {
		t.Fatalf("error after cancel: %v", err)
	}

	// A bad filter ends the subscription with an error, and both channels
	// close. The daemon's Subscribe races its bus's closed event channel
	// against the error (plugins/services/events/service.go), so the error may come
	// as the end of the stream rather than InvalidArgument.
	ch, errs = es.Subscribe(ctx, "topic==")
	if err := <-errs; err == nil || !(errdefs.IsInvalidArgument(err) || errors.Is(err, io.EOF)) {
		t.Fatalf("bad filter: %v", err)
	}
	if _, ok := <-ch; ok {
		t.Fatal("event channel not closed")
	}

	err = es.Publish(ctx, "/test", "not an event")
	wantErr(t, err, errdefs.IsInvalidArgument, "InvalidArgument")
}

type gotEvent struct {
	ts        time.Time
	ns, topic string
	event     typeurl.Any
}

func TestErrorsAndNamespaces(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	ctx := context.Background()

	// No default namespace and none in the context.
	bare := newClient(t, d)
	_, err := bare.ImageService().List(ctx)
	wantErr(t, err, errdefs.IsFailedPrecondition, "FailedPrecondition", "namespace")
	err = bare.ContentStore().Walk(ctx, func(content.Info) error { return nil })
	wantErr(t, err, errdefs.IsFailedPrecondition, "FailedPrecondition", "namespace")
	_, err = bare.ContentStore().Writer(ctx, content.WithRef("x"))
	wantErr(t, err, errdefs.IsFailedPrecondition, "FailedPrecondition", "namespace")

	_, err = bare.ImageService().List(client.WithNamespace(ctx, "bad name!"))
	wantErr(t, err, errdefs.IsInvalidArgument, "InvalidArgument", "bad name!")
	if _, err := client.New(d.Address, client.WithDefaultNamespace("bad name!")); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("New with bad default namespace: %v", err)
	}

	c := newClient(t, d, client.WithDefaultNamespace("one"))
	// The context's namespace beats the default.
	if _, err := c.ImageService().Create(client.WithNamespace(ctx, "two"), images.Image{Name: "x", Target: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("x"), Size: 1}}); err != nil {
		t.Fatal(err)
	}
	if imgs, err := c.ImageService().List(ctx); err != nil || len(imgs) != 0 {
		t.Fatalf("default namespace sees %v, %v", imgs, err)
	}
	_, err = c.ImageService().Get(ctx, "x")
	wantErr(t, err, errdefs.IsNotFound, "NotFound", "x")

	ns := c.NamespaceService()
	names, err := ns.List(ctx)
	if err != nil || !slices.Contains(names, "two") {
		t.Fatalf("namespaces %v, %v", names, err)
	}
	if err := ns.Create(ctx, "three", map[string]string{"a": "1"}); err != nil {
		t.Fatal(err)
	}
	wantErr(t, ns.Create(ctx, "three", nil), errdefs.IsAlreadyExists, "AlreadyExists", "three")
	wantErr(t, ns.Create(ctx, "Bad Name", nil), errdefs.IsInvalidArgument, "InvalidArgument", "Bad Name")
	if err := ns.SetLabel(ctx, "three", "b", "2"); err != nil {
		t.Fatal(err)
	}
	if err := ns.SetLabel(ctx, "three", "a", ""); err != nil {
		t.Fatal(err)
	}
	if l, err := ns.Labels(ctx, "three"); err != nil || len(l) != 1 || l["b"] != "2" {
		t.Fatalf("labels %v, %v", l, err)
	}
	_, err = ns.Labels(ctx, "four")
	wantErr(t, err, errdefs.IsNotFound, "NotFound", "four")
	wantErr(t, ns.Delete(ctx, "two"), errdefs.IsFailedPrecondition, "FailedPrecondition", "two")
	if err := ns.Delete(ctx, "three"); err != nil {
		t.Fatal(err)
	}

	// A dead address fails New when asked to wait.
	if _, err := client.New(t.TempDir()+"/none.sock", client.WithTimeout(200*time.Millisecond)); !errdefs.IsUnavailable(err) {
		t.Fatalf("New on a missing socket: %v", err)
	}
}

func TestIntrospection(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	c := newClient(t, d)
	ctx := context.Background()

	v, err := c.Version(ctx)
	if err != nil || v.Version == "" {
		t.Fatalf("version %+v, %v", v, err)
	}
	si, err := c.Server(ctx)
	if err != nil || si.UUID == "" || si.Pid != uint64(d.PID()) {
		t.Fatalf("server %+v, %v (pid %d)", si, err, d.PID())
	}
	ps, err := c.Plugins(ctx)
	if err != nil || len(ps) == 0 {
		t.Fatalf("plugins %+v, %v", ps, err)
	}
	ps, err = c.Plugins(ctx, "id==content")
	if err != nil || len(ps) == 0 {
		t.Fatalf("plugins id==content: %+v, %v", ps, err)
	}
	for _, p := range ps {
		if p.ID != "content" {
			t.Fatalf("filter let through %+v", p)
		}
	}
}

// TestReadBlobOneCall: ReadBlob of a blob whose descriptor has its size is
// one Read call to the daemon (no Info first), and still tells a missing
// blob (NotFound) and a descriptor of the wrong size (FailedPrecondition)
// apart from success.
func TestReadBlobOneCall(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	var mu sync.Mutex
	var calls []string
	count := grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		mu.Lock()
		calls = append(calls, method)
		mu.Unlock()
		return streamer(ctx, desc, cc, method, opts...)
	})
	countUnary := grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		mu.Lock()
		calls = append(calls, method)
		mu.Unlock()
		return invoker(ctx, method, req, reply, cc, opts...)
	})
	c, err := client.New(d.Address, client.WithDialOpts(count, countUnary))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testCtx(t)
	cs := c.ContentStore()
	data := randBytes(40<<10, 7)
	desc := ocispec.Descriptor{Digest: digest.FromBytes(data), Size: int64(len(data))}
	if err := client.WriteBlob(ctx, cs, "one-call", bytes.NewReader(data), desc, content.WithLabels(map[string]string{"containerd.io/gc.root": "x"})); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	calls = nil
	mu.Unlock()
	got, err := client.ReadBlob(ctx, cs, desc)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadBlob: %d bytes, %v", len(got), err)
	}
	mu.Lock()
	if len(calls) != 1 || !strings.HasSuffix(calls[0], "/Read") {
		t.Errorf("ReadBlob made calls %v, want one Read", calls)
	}
	mu.Unlock()

	missing := ocispec.Descriptor{Digest: digest.FromString("missing"), Size: 7}
	if _, err := client.ReadBlob(ctx, cs, missing); !errdefs.IsNotFound(err) {
		t.Errorf("ReadBlob of a missing blob: %v, want NotFound", err)
	}
	for _, size := range []int64{desc.Size - 1, desc.Size + 1} {
		wrong := desc
		wrong.Size = size
		if _, err := client.ReadBlob(ctx, cs, wrong); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), desc.Digest.String()) {
			t.Errorf("ReadBlob with size %d of a %d-byte blob: %v, want FailedPrecondition naming it", size, desc.Size, err)
		}
	}
}

// TestOpenWriterGivesUpOnADeadDaemon: OpenWriter waits for a locked ref,
// not for a daemon that is gone; with the connect timeout spent it returns
// the error that names the socket instead of retrying for ever.
func TestOpenWriterGivesUpOnADeadDaemon(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	c, err := client.New(d.Address, client.WithDefaultNamespace("test"), client.WithConnectTimeout(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	d.Kill()
	ctx, cancel := context.WithTimeout(testCtx(t), time.Minute)
	defer cancel()
	_, err = client.OpenWriter(ctx, c.ContentStore(), content.WithRef("any"))
	var unreachable *client.UnreachableError
	if !errors.As(err, &unreachable) || ctx.Err() != nil {
		t.Fatalf("OpenWriter with the daemon gone: %v (context: %v); want an UnreachableError at once", err, ctx.Err())
	}
}
