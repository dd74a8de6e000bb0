package content

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/hullrt/hull/internal/servicetest"
	"io"
	"maps"
	"slices"
	"testing"
	"time"

	api "github.com/containerd/containerd/api/services/content/v1"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	corecontent "github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/plugin"
)

// newClient serves the content adapter, built by its registrations over
// a metadata store, and returns a client and the store.
func newClient(t *testing.T) (api.ContentClient, corecontent.Store) {
	t.Helper()
	db := servicetest.OpenDB(t)
	svc := servicetest.Adapter(t, Register, servicetest.Dep(plugin.MetadataPlugin, "bolt", db))
	return api.NewContentClient(servicetest.Serve(t, svc)), db.Content()
}

// writeStream opens a Write stream and returns a function that sends one
// message and returns the answer.
func writeStream(t *testing.T, ctx context.Context, c api.ContentClient) (api.Content_WriteClient, func(*api.WriteContentRequest) (*api.WriteContentResponse, error)) {
	t.Helper()
	ws, err := c.Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ws, func(req *api.WriteContentRequest) (*api.WriteContentResponse, error) {
		if err := ws.Send(req); err != nil {
			return nil, err
		}
		return ws.Recv()
	}
}

// must returns v, and fails the test binary at once on an error no test
// expects (it takes the call's two results as they are, hence no t).
func must[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprintf("unexpected error: %v", err))
	}
	return v
}

func TestWriteProtocol(t *testing.T) {
	c, _ := newClient(t)
	ctx := servicetest.ClientCtx(t, "ns1")
	data := []byte("hello world")
	dgst := digest.FromBytes(data)

	ws, send := writeStream(t, ctx, c)
	resp := must(send(&api.WriteContentRequest{Action: api.WriteAction_STAT, Ref: "r1", Total: int64(len(data)), Expected: dgst.String()}))
	if resp.Action != api.WriteAction_STAT || resp.Offset != 0 || resp.Total != 11 || resp.StartedAt == nil {
		t.Errorf("stat of a new ingest: %v", resp)
	}
	resp = must(send(&api.WriteContentRequest{Action: api.WriteAction_WRITE, Offset: 0, Data: data[:6]}))
	if resp.Action != api.WriteAction_WRITE || resp.Offset != 6 || resp.Digest != digest.FromBytes(data[:6]).String() {
		t.Errorf("first write: %v", resp)
	}
	// The next write continues at the current offset (a write beyond it
	// is refused: TestWriteErrors).
	resp = must(send(&api.WriteContentRequest{Action: api.WriteAction_WRITE, Offset: 6, Data: []byte("wXrld")}))
	if resp.Offset != 11 {
		t.Errorf("second write: offset %d, want 11", resp.Offset)
	}
	// A write at a lower offset truncates there first.
	resp = must(send(&api.WriteContentRequest{Action: api.WriteAction_WRITE, Offset: 6, Data: []byte("world")}))
	if resp.Offset != 11 || resp.Digest != dgst.String() {
		t.Errorf("rewrite at 6: %v, want offset 11 and the full digest", resp)
	}

	// While the stream holds the ingest, Status and ListStatuses see it.
	st := must(c.Status(ctx, &api.StatusRequest{Ref: "r1"})).Status
	if st.Ref != "r1" || st.Offset != 11 || st.Total != 11 || st.Expected != dgst.String() || st.StartedAt == nil || st.UpdatedAt == nil {
		t.Errorf("status: %v", st)
	}
	sts := must(c.ListStatuses(ctx, &api.ListStatusesRequest{Filters: []string{"ref==r1"}})).Statuses
	if len(sts) != 1 || sts[0].Ref != "r1" {
		t.Errorf("statuses: %v", sts)
	}
	if sts := must(c.ListStatuses(servicetest.ClientCtx(t, "ns2"), &api.ListStatusesRequest{})).Statuses; len(sts) != 0 {
		t.Errorf("another namespace sees ingests %v", sts)
	}

	resp = must(send(&api.WriteContentRequest{Action: api.WriteAction_COMMIT, Offset: 11, Labels: map[string]string{"k": "v"}}))
	if resp.Action != api.WriteAction_COMMIT || resp.Offset != 11 || resp.Total != 11 || resp.Digest != dgst.String() {
		t.Errorf("commit: %v", resp)
	}
	// The server ends the stream after the commit.
	if _, err := ws.Recv(); err != io.EOF {
		t.Errorf("after commit: %v, want the end of the stream", err)
	}

	info := must(c.Info(ctx, &api.InfoRequest{Digest: dgst.String()})).Info
	if info.Digest != dgst.String() || info.Size != 11 || info.Labels["k"] != "v" || info.CreatedAt == nil || info.UpdatedAt == nil {
		t.Errorf("info: %v", info)
	}
	_, err := c.Status(ctx, &api.StatusRequest{Ref: "r1"})
	servicetest.WantCode(t, err, codes.NotFound, "r1")
}

func TestWriteResumeAndCommitInOneMessage(t *testing.T) {
	c, _ := newClient(t)
	ctx := servicetest.ClientCtx(t, "ns1")
	data := []byte("resumable")
	dgst := digest.FromBytes(data)

	// A stream that ends before the commit leaves the ingest to resume.
	ws, send := writeStream(t, ctx, c)
	must(send(&api.WriteContentRequest{Action: api.WriteAction_WRITE, Ref: "r2", Data: data[:4]}))
	if err := ws.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := ws.Recv(); err != io.EOF {
		t.Fatalf("closing the stream: %v", err)
	}
	_, send = writeStream(t, ctx, c)
	resp := must(send(&api.WriteContentRequest{Action: api.WriteAction_STAT, Ref: "r2"}))
	if resp.Offset != 4 {
		t.Fatalf("resumed ingest at %d, want 4", resp.Offset)
	}
	// Data, total and expected digest may come with the commit itself.
	resp = must(send(&api.WriteContentRequest{Action: api.WriteAction_COMMIT, Ref: "r2", Offset: 4, Data: data[4:], Total: int64(len(data)), Expected: dgst.String()}))
	if resp.Digest != dgst.String() || resp.Offset != int64(len(data)) || resp.Total != int64(len(data)) {
		t.Errorf("commit: %v", resp)
	}
	r := must(c.Read(ctx, &api.ReadContentRequest{Digest: dgst.String()}))
	if got := readAll(t, r); !bytes.Equal(got, data) {
		t.Errorf("read %q, want %q", got, data)
	}
}

func TestWriteErrors(t *testing.T) {
	c, _ := newClient(t)
	ctx := servicetest.ClientCtx(t, "ns1")
	data := []byte("some data")

	for _, tc := range []struct {
		name  string
		msgs  []*api.WriteContentRequest
		code  codes.Code
		names []string
	}{
		{"no ref", []*api.WriteContentRequest{{Action: api.WriteAction_STAT}}, codes.InvalidArgument, []string{"ref"}},
		{"ref changes", []*api.WriteContentRequest{
			{Action: api.WriteAction_STAT, Ref: "a1"}, {Action: api.WriteAction_STAT, Ref: "b1"},
		}, codes.InvalidArgument, []string{`"a1"`, `"b1"`}},
		{"unknown action", []*api.WriteContentRequest{{Action: api.WriteAction(42), Ref: "a2"}}, codes.InvalidArgument, []string{`"a2"`, "42"}},
		{"offset beyond", []*api.WriteContentRequest{{Action: api.WriteAction_WRITE, Ref: "a3", Offset: 5, Data: data}}, codes.OutOfRange, []string{`"a3"`, "5"}},
		// A size or digest that does not match the data fails the commit
		// as a precondition, as containerd's content store does. (The
		// message names the backend's ref, "ns1/a4", hence the suffix.)
		{"size mismatch", []*api.WriteContentRequest{
			{Action: api.WriteAction_COMMIT, Ref: "a4", Data: data, Total: int64(len(data)) + 1},
		}, codes.FailedPrecondition, []string{`a4"`, "size"}},
		{"digest mismatch", []*api.WriteContentRequest{
			{Action: api.WriteAction_COMMIT, Ref: "a5", Data: data, Expected: digest.FromString("other").String()},
		}, codes.FailedPrecondition, []string{`a5"`, digest.FromString("other").String()}},
		{"digest mismatch at commit", []*api.WriteContentRequest{
			{Action: api.WriteAction_WRITE, Ref: "a6", Data: data},
			{Action: api.WriteAction_COMMIT, Offset: int64(len(data)), Expected: digest.FromString("else").String()},
		}, codes.FailedPrecondition, []string{`a6"`, digest.FromString("else").String()}},
		{"bad expected digest", []*api.WriteContentRequest{{Action: api.WriteAction_STAT, Ref: "a7", Expected: "sha256:nothex"}}, codes.InvalidArgument, []string{"sha256:nothex"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws, err := c.Write(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var last error
			for i, m := range tc.msgs {
				if err := ws.Send(m); err != nil {
					t.Fatal(err)
				}
				_, last = ws.Recv()
				if last != nil && i != len(tc.msgs)-1 {
					t.Fatalf("message %d failed early: %v", i, last)
				}
			}
			servicetest.WantCode(t, last, tc.code, tc.names...)
		})
	}
	// The failed commits left their ingests, with what was written.
	st := must(c.Status(ctx, &api.StatusRequest{Ref: "a4"})).Status
	if st.Offset != int64(len(data)) {
		t.Errorf("ingest a4 after a failed commit: %v", st)
	}
}

func TestWriteExistingContent(t *testing.T) {
	c, _ := newClient(t)
	ctx := servicetest.ClientCtx(t, "ns1")
	data := []byte("twice")
	dgst := digest.FromBytes(data)
	_, send := writeStream(t, ctx, c)
	must(send(&api.WriteContentRequest{Action: api.WriteAction_COMMIT, Ref: "w1", Data: data, Expected: dgst.String()}))
	_, send = writeStream(t, ctx, c)
	_, err := send(&api.WriteContentRequest{Action: api.WriteAction_STAT, Ref: "w2", Expected: dgst.String()})
	servicetest.WantCode(t, err, codes.AlreadyExists, dgst.String())
}

func readAll(t *testing.T, r api.Content_ReadClient) []byte {
	t.Helper()
	var out []byte
	for {
		m, err := r.Recv()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if m.Offset != int64(len(out)) && len(out) > 0 {
			t.Fatalf("chunk at offset %d after %d bytes", m.Offset, len(out))
		}
		out = append(out, m.Data...)
	}
}

// readRange reads with offset and size and returns the data and the offset
// of the first message.
func readRange(t *testing.T, c api.ContentClient, ctx context.Context, d digest.Digest, off, size int64) ([]byte, int64, error) {
	t.Helper()
	r, err := c.Read(ctx, &api.ReadContentRequest{Digest: d.String(), Offset: off, Size: size})
	if err != nil {
		return nil, 0, err
	}
	var out []byte
	first := int64(-1)
	next := off
	if next < 0 {
		next = 0
	}
	for {
		m, err := r.Recv()
		if err == io.EOF {
			return out, first, nil
		}
		if err != nil {
			return out, first, err
		}
		if first < 0 {
			first = m.Offset
		}
		if m.Offset != next {
			t.Fatalf("message at offset %d, want %d", m.Offset, next)
		}
		next += int64(len(m.Data))
		out = append(out, m.Data...)
	}
}

func putBlob(t *testing.T, s corecontent.Store, ctx context.Context, data []byte) digest.Digest {
	t.Helper()
	w := must(s.Writer(ctx, corecontent.WithRef(fmt.Sprint("put-", len(data)))))
	defer w.Close()
	must(w.Write(data))
	dgst := digest.FromBytes(data)
	if err := w.Commit(ctx, int64(len(data)), dgst); err != nil {
		t.Fatal(err)
	}
	return dgst
}

func TestRead(t *testing.T) {
	c, store := newClient(t)
	ctx := servicetest.ClientCtx(t, "ns1")
	small := []byte("0123456789")
	large := make([]byte, 2*readChunk+12345)
	for i := range large {
		large[i] = byte(i * 7)
	}
	sctx := namespaces.WithNamespace(t.Context(), "ns1")
	ds, dl := putBlob(t, store, sctx, small), putBlob(t, store, sctx, large)

	for _, tc := range []struct {
		name      string
		d         digest.Digest
		off, size int64
		want      []byte
	}{
		{"whole", ds, 0, 0, small},
		{"offset", ds, 4, 0, small[4:]},
		{"offset and size", ds, 2, 3, small[2:5]},
		{"size past the end", ds, 8, 100, small[8:]},
		{"negative offset reads from the start", ds, -5, 2, small[:2]},
		{"at the end", ds, 10, 0, nil},
		{"large whole", dl, 0, 0, large},
		{"large range across chunks", dl, 100, readChunk + 50, large[100 : 100+readChunk+50]},
		{"large tail", dl, 2 * readChunk, 0, large[2*readChunk:]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, first, err := readRange(t, c, ctx, tc.d, tc.off, tc.size)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Errorf("read %d bytes, want %d (%q... vs %q...)", len(got), len(tc.want), head(got), head(tc.want))
			}
			if len(tc.want) > 0 && first != max(tc.off, 0) {
				t.Errorf("first message at offset %d, want %d", first, max(tc.off, 0))
			}
		})
	}

	_, _, err := readRange(t, c, ctx, ds, 11, 0)
	servicetest.WantCode(t, err, codes.OutOfRange, ds.String(), "11")
	// A negative size reads to the end, as with containerd.
	if data, off, err := readRange(t, c, ctx, ds, 3, -1); err != nil || off != 3 || !bytes.Equal(data, small[3:]) {
		t.Errorf("read from 3 with size -1: offset %d, %q, %v; want the rest of the blob", off, data, err)
	}
	_, _, err = readRange(t, c, ctx, digest.FromString("absent"), 0, 0)
	servicetest.WantCode(t, err, codes.NotFound, digest.FromString("absent").String())
	// Content is per namespace.
	_, _, err = readRange(t, c, servicetest.ClientCtx(t, "ns2"), ds, 0, 0)
	servicetest.WantCode(t, err, codes.NotFound, ds.String())
}

func head(b []byte) []byte { return b[:min(len(b), 8)] }

func TestInfoUpdateListDelete(t *testing.T) {
	c, store := newClient(t)
	ctx := servicetest.ClientCtx(t, "ns1")
	sctx := namespaces.WithNamespace(t.Context(), "ns1")
	d1 := putBlob(t, store, sctx, []byte("one"))
	d2 := putBlob(t, store, sctx, []byte("second"))

	upd := must(c.Update(ctx, &api.UpdateRequest{
		Info:       &api.Info{Digest: d1.String(), Labels: map[string]string{"a": "1", "b": "2"}, Size: 999},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels.a"}},
	})).Info
	// Only the masked label changes; the size is not the client's to set.
	if upd.Digest != d1.String() || upd.Size != 3 || !maps.Equal(upd.Labels, map[string]string{"a": "1"}) {
		t.Errorf("update: %v", upd)
	}
	_, err := c.Update(ctx, &api.UpdateRequest{Info: &api.Info{Digest: d1.String()}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"size"}}})
	servicetest.WantCode(t, err, codes.InvalidArgument, "size")

	list := func(filters ...string) []string {
		l, err := c.List(ctx, &api.ListContentRequest{Filters: filters})
		if err != nil {
			t.Fatal(err)
		}
		var ds []string
		for {
			m, err := l.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, i := range m.Info {
				ds = append(ds, i.Digest)
			}
		}
		slices.Sort(ds)
		return ds
	}
	if got, want := list(), slices.Sorted(slices.Values([]string{d1.String(), d2.String()})); !slices.Equal(got, want) {
		t.Errorf("list: %v, want %v", got, want)
	}
	if got := list("labels.a==1"); !slices.Equal(got, []string{d1.String()}) {
		t.Errorf("list labels.a==1: %v", got)
	}
	l := must(c.List(ctx, &api.ListContentRequest{Filters: []string{"labels.a~=["}}))
	_, err = l.Recv()
	servicetest.WantCode(t, err, codes.InvalidArgument)

	must(c.Delete(ctx, &api.DeleteContentRequest{Digest: d1.String()}))
	_, err = c.Info(ctx, &api.InfoRequest{Digest: d1.String()})
	servicetest.WantCode(t, err, codes.NotFound, d1.String())
	_, err = c.Delete(ctx, &api.DeleteContentRequest{Digest: d1.String()})
	servicetest.WantCode(t, err, codes.NotFound, d1.String())
	_, err = c.Info(ctx, &api.InfoRequest{Digest: "sha256:short"})
	servicetest.WantCode(t, err, codes.InvalidArgument, "sha256:short")
	// Without the namespace header the store refuses.
	_, err = c.Info(t.Context(), &api.InfoRequest{Digest: d2.String()})
	servicetest.WantCode(t, err, codes.FailedPrecondition, "namespace")
}

func TestAbort(t *testing.T) {
	c, _ := newClient(t)
	ctx := servicetest.ClientCtx(t, "ns1")
	ws, send := writeStream(t, ctx, c)
	must(send(&api.WriteContentRequest{Action: api.WriteAction_WRITE, Ref: "ab", Data: []byte("partial")}))
	ws.CloseSend()
	if _, err := ws.Recv(); err != io.EOF {
		t.Fatal(err)
	}
	must(c.Abort(ctx, &api.AbortRequest{Ref: "ab"}))
	_, err := c.Status(ctx, &api.StatusRequest{Ref: "ab"})
	servicetest.WantCode(t, err, codes.NotFound, "ab")
	_, err = c.Abort(ctx, &api.AbortRequest{Ref: "ab"})
	servicetest.WantCode(t, err, codes.NotFound, "ab")
}

// fakeStore is a content.Store whose every method fails with err, naming
// its argument, except Walk, which yields infos, and ReaderAt, which
// returns reader when it is set.
type fakeStore struct {
	err    error
	infos  []corecontent.Info
	reader corecontent.ReaderAt
}

func (f *fakeStore) Info(ctx context.Context, d digest.Digest) (corecontent.Info, error) {
	return corecontent.Info{}, fmt.Errorf("info of %s: %w", d, f.err)
}
func (f *fakeStore) Update(ctx context.Context, i corecontent.Info, _ ...string) (corecontent.Info, error) {
	return corecontent.Info{}, fmt.Errorf("update of %s: %w", i.Digest, f.err)
}
func (f *fakeStore) Walk(ctx context.Context, fn corecontent.WalkFunc, filters ...string) error {
	for _, i := range f.infos {
		if err := fn(i); err != nil {
			return err
		}
	}
	if f.infos == nil {
		return fmt.Errorf("walk %v: %w", filters, f.err)
	}
	return nil
}
func (f *fakeStore) Delete(ctx context.Context, d digest.Digest) error {
	return fmt.Errorf("delete of %s: %w", d, f.err)
}
func (f *fakeStore) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (corecontent.ReaderAt, error) {
	if f.reader != nil {
		return f.reader, nil
	}
	return nil, fmt.Errorf("read of %s: %w", desc.Digest, f.err)
}
func (f *fakeStore) Status(ctx context.Context, ref string) (corecontent.Status, error) {
	return corecontent.Status{}, fmt.Errorf("status of %q: %w", ref, f.err)
}
func (f *fakeStore) ListStatuses(ctx context.Context, filters ...string) ([]corecontent.Status, error) {
	return nil, fmt.Errorf("statuses %v: %w", filters, f.err)
}
func (f *fakeStore) Abort(ctx context.Context, ref string) error {
	return fmt.Errorf("abort of %q: %w", ref, f.err)
}
func (f *fakeStore) Writer(ctx context.Context, opts ...corecontent.WriterOpt) (corecontent.Writer, error) {
	var o corecontent.WriterOpts
	for _, opt := range opts {
		opt(&o)
	}
	return nil, fmt.Errorf("writer of %q: %w", o.Ref, f.err)
}

func TestErrorCodes(t *testing.T) {
	for _, tc := range servicetest.ErrorClasses {
		t.Run(tc.Code.String(), func(t *testing.T) {
			c := api.NewContentClient(servicetest.Serve(t, NewServer(&fakeStore{err: tc.Class})))
			ctx := servicetest.ClientCtx(t, "ns1")
			d := digest.FromString("x").String()
			_, err := c.Info(ctx, &api.InfoRequest{Digest: d})
			servicetest.WantCode(t, err, tc.Code, d)
			_, err = c.Update(ctx, &api.UpdateRequest{Info: &api.Info{Digest: d}})
			servicetest.WantCode(t, err, tc.Code, d)
			_, err = c.Delete(ctx, &api.DeleteContentRequest{Digest: d})
			servicetest.WantCode(t, err, tc.Code, d)
			_, err = c.Status(ctx, &api.StatusRequest{Ref: "ref1"})
			servicetest.WantCode(t, err, tc.Code, `"ref1"`)
			_, err = c.ListStatuses(ctx, &api.ListStatusesRequest{Filters: []string{"ref==f1"}})
			servicetest.WantCode(t, err, tc.Code, "ref==f1")
			_, err = c.Abort(ctx, &api.AbortRequest{Ref: "ref2"})
			servicetest.WantCode(t, err, tc.Code, `"ref2"`)
			_, _, err = readRange(t, c, ctx, digest.Digest(d), 0, 0)
			servicetest.WantCode(t, err, tc.Code, d)
			l := must(c.List(ctx, &api.ListContentRequest{Filters: []string{"labels.z==1"}}))
			_, err = l.Recv()
			servicetest.WantCode(t, err, tc.Code, "labels.z==1")
			_, send := writeStream(t, ctx, c)
			_, err = send(&api.WriteContentRequest{Action: api.WriteAction_STAT, Ref: "ref3"})
			servicetest.WantCode(t, err, tc.Code, `"ref3"`)
		})
	}
}

func TestListBatches(t *testing.T) {
	// More infos than one message holds: every one arrives, in batches of
	// at most 100, with its fields.
	var infos []corecontent.Info
	at := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range 250 {
		infos = append(infos, corecontent.Info{Digest: digest.FromString(fmt.Sprint(i)), Size: int64(i), CreatedAt: at, UpdatedAt: at.Add(time.Second), Labels: map[string]string{"i": fmt.Sprint(i)}})
	}
	c := api.NewContentClient(servicetest.Serve(t, NewServer(&fakeStore{infos: infos})))
	l := must(c.List(servicetest.ClientCtx(t, "ns1"), &api.ListContentRequest{}))
	var got []*api.Info
	var sizes []int
	for {
		m, err := l.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(m.Info))
		got = append(got, m.Info...)
	}
	if !slices.Equal(sizes, []int{100, 100, 50}) {
		t.Errorf("batches of %v, want 100, 100, 50", sizes)
	}
	for i, g := range got {
		w := infos[i]
		if g.Digest != w.Digest.String() || g.Size != w.Size || g.Labels["i"] != w.Labels["i"] ||
			!g.CreatedAt.AsTime().Equal(w.CreatedAt) || !g.UpdatedAt.AsTime().Equal(w.UpdatedAt) {
			t.Fatalf("info %d: %v, want %v", i, g, w)
		}
	}
}

// shortReader claims size bytes but holds only data: the blob shrank
// under the reader.
type shortReader struct {
	data []byte
	size int64
	err  error
}

func (r shortReader) ReadAt(p []byte, off int64) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if off >= int64(len(r.data)) {
		return 0, io.EOF
	}
	n := copy(p, r.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
func (r shortReader) Close() error { return nil }
func (r shortReader) Size() int64  { return r.size }

func TestReadShortAndFailingBlob(t *testing.T) {
	d := digest.FromString("short")
	c := api.NewContentClient(servicetest.Serve(t, NewServer(&fakeStore{reader: shortReader{data: []byte("12345"), size: 10}})))
	got, _, err := readRange(t, c, servicetest.ClientCtx(t, "ns1"), d, 0, 0)
	servicetest.WantCode(t, err, codes.OutOfRange, d.String(), "5")
	if string(got) != "12345" {
		t.Errorf("read %q before the error, want what the blob held", got)
	}
	c = api.NewContentClient(servicetest.Serve(t, NewServer(&fakeStore{reader: shortReader{size: 10, err: fmt.Errorf("disk of %s: %w", d, errdefs.ErrUnavailable)}})))
	_, _, err = readRange(t, c, servicetest.ClientCtx(t, "ns1"), d, 0, 0)
	servicetest.WantCode(t, err, codes.Unavailable, d.String())
	if errors.Is(err, io.EOF) {
		t.Error("unexpected EOF")
	}
}
