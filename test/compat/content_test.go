package compat

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	leasesapi "github.com/containerd/containerd/api/services/leases/v1"
	ctrcontent "github.com/containerd/containerd/v2/core/content"
	contentproxy "github.com/containerd/containerd/v2/core/content/proxy"
	"github.com/containerd/containerd/v2/core/content/testsuite"
	"github.com/containerd/containerd/v2/core/leases"
	leasesproxy "github.com/containerd/containerd/v2/core/leases/proxy"
	"github.com/containerd/containerd/v2/pkg/filters"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/content/local"
)

// TestContentLocal runs containerd's content suite against hull's local
// blob store. That store keeps no labels (hull's metadata layer does), so,
// as containerd tests its own local store with an in-memory label store,
// labelledLocal adds labels and their update times in memory; everything
// else (ingests, resumes, locking of refs, commits, the errors) is the local
// store's own.
func TestContentLocal(t *testing.T) {
	testsuite.ContentSuite(t, "hull-local", func(ctx context.Context, root string) (context.Context, ctrcontent.Store, func() error, error) {
		s, err := local.NewStore(root)
		if err != nil {
			return nil, nil, nil, err
		}
		return ctx, &labelledLocal{s: s, labels: map[digest.Digest]labelRecord{}}, func() error { return nil }, nil
	})
}

// TestContentGRPC runs containerd's content suite against hulld's content
// service through containerd's proxy content store, as containerd's client
// tests do against containerd: one daemon, each case in namespaces of its
// own and under a lease, so that hulld's collector leaves the blobs alone.
// hull's content policy is containerd's "isolated" one (a namespace sees a
// blob only after writing it itself), so the cross-namespace suite for that
// policy runs too; the "shared" policy's suite does not apply.
//
// containerd's ContentSharedNSIsolatedSuite is not run: it tests
// namespaces labelled containerd.io/namespace.shareable, whose blobs every
// namespace may read, a containerd feature hull does not have.
func TestContentGRPC(t *testing.T) {
	d := startHulld(t)
	conn := dial(t, d.Address)
	storeFn := grpcContentStore(conn)
	testsuite.ContentSuite(t, "ContentGRPC", storeFn)
	testsuite.ContentCrossNSIsolatedSuite(t, "ContentGRPC", storeFn)
}

// grpcContentStore is the suite's store factory over conn: its context
// wrapper gives each context it derives a new namespace and a lease there,
// and the cleanup aborts the ingests and deletes the blobs left in every
// namespace it made.
func grpcContentStore(conn *grpc.ClientConn) testsuite.StoreInitFn {
	var count atomic.Uint64
	cs := contentproxy.NewContentStore(contentapi.NewContentClient(conn))
	lm := leasesproxy.NewLeaseManager(leasesapi.NewLeasesClient(conn))
	return func(ctx context.Context, root string) (context.Context, ctrcontent.Store, func() error, error) {
		var (
			mu   sync.Mutex
			made []string
			// Named from the store's context: the cross-namespace case
			// derives its second context from context.Background().
			name = testsuite.Name(ctx)
		)
		wrap := func(ctx context.Context, sharedNS bool) (context.Context, func(context.Context) error, error) {
			if sharedNS {
				return nil, nil, fmt.Errorf("shareable namespaces: %w", errdefs.ErrNotImplemented)
			}
			ns := fmt.Sprintf("%s-n%d", name, count.Add(1))
			mu.Lock()
			made = append(made, ns)
			mu.Unlock()
			ctx = namespaces.WithNamespace(ctx, ns)
			l, err := lm.Create(ctx, leases.WithRandomID(), leases.WithExpiration(time.Hour))
			if err != nil {
				return nil, nil, err
			}
			return leases.WithLease(ctx, l.ID), func(ctx context.Context) error {
				return lm.Delete(ctx, l)
			}, nil
		}
		ctx = testsuite.SetContextWrapper(ctx, wrap)
		cleanup := func() error {
			mu.Lock()
			defer mu.Unlock()
			var errs []error
			for _, ns := range made {
				ctx := namespaces.WithNamespace(context.Background(), ns)
				statuses, err := cs.ListStatuses(ctx)
				if err != nil {
					errs = append(errs, err)
				}
				for _, st := range statuses {
					if err := cs.Abort(ctx, st.Ref); err != nil && !errdefs.IsNotFound(err) {
						errs = append(errs, fmt.Errorf("abort %s in %s: %w", st.Ref, ns, err))
					}
				}
				errs = append(errs, cs.Walk(ctx, func(info ctrcontent.Info) error {
					if err := cs.Delete(ctx, info.Digest); err != nil && !errdefs.IsNotFound(err) {
						return fmt.Errorf("delete %s in %s: %w", info.Digest, ns, err)
					}
					return nil
				}))
			}
			return errors.Join(errs...)
		}
		return ctx, cs, cleanup, nil
	}
}

// labelRecord is what labelledLocal keeps of a blob beside the local
// store: its labels and when they last changed.
type labelRecord struct {
	labels  map[string]string
	updated time.Time
}

// labelledLocal presents hull's local store as containerd's content.Store,
// with labels kept in memory (see TestContentLocal).
type labelledLocal struct {
	s *local.Store

	mu     sync.Mutex
	labels map[digest.Digest]labelRecord
}

var _ ctrcontent.Store = (*labelledLocal)(nil)

func (l *labelledLocal) withLabels(info content.Info) ctrcontent.Info {
	out := ctrcontent.Info{Digest: info.Digest, Size: info.Size, CreatedAt: info.CreatedAt, UpdatedAt: info.UpdatedAt}
	l.mu.Lock()
	defer l.mu.Unlock()
	if r, ok := l.labels[info.Digest]; ok {
		out.Labels = copyMap(r.labels)
		out.UpdatedAt = r.updated
	}
	return out
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (l *labelledLocal) setLabels(d digest.Digest, labels map[string]string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.labels[d] = labelRecord{labels: copyMap(labels), updated: now}
}

func (l *labelledLocal) Info(ctx context.Context, d digest.Digest) (ctrcontent.Info, error) {
	info, err := l.s.Info(ctx, d)
	if err != nil {
		return ctrcontent.Info{}, err
	}
	return l.withLabels(info), nil
}

// Update follows containerd's field paths: none or "labels" replace every
// label, "labels.<key>" sets or (empty value) removes one.
func (l *labelledLocal) Update(ctx context.Context, info ctrcontent.Info, fieldpaths ...string) (ctrcontent.Info, error) {
	cur, err := l.Info(ctx, info.Digest)
	if err != nil {
		return ctrcontent.Info{}, err
	}
	labels := cur.Labels
	if len(fieldpaths) == 0 {
		labels = info.Labels
	}
	for _, p := range fieldpaths {
		switch {
		case p == "labels":
			labels = info.Labels
		case len(p) > len("labels.") && p[:len("labels.")] == "labels.":
			k := p[len("labels."):]
			if labels == nil {
				labels = map[string]string{}
			}
			if v := info.Labels[k]; v != "" {
				labels[k] = v
			} else {
				delete(labels, k)
			}
		default:
			return ctrcontent.Info{}, fmt.Errorf("cannot update %q of content %s: %w", p, info.Digest, errdefs.ErrInvalidArgument)
		}
	}
	l.setLabels(info.Digest, labels, time.Now())
	return l.Info(ctx, info.Digest)
}

func (l *labelledLocal) Walk(ctx context.Context, fn ctrcontent.WalkFunc, fs ...string) error {
	filter, err := filters.ParseAll(fs...)
	if err != nil {
		return err
	}
	return l.s.Walk(ctx, func(info content.Info) error {
		ci := l.withLabels(info)
		if !filter.Match(filters.AdapterFunc(func(fieldpath []string) (string, bool) {
			switch {
			case len(fieldpath) == 1 && fieldpath[0] == "digest":
				return ci.Digest.String(), true
			case len(fieldpath) > 1 && fieldpath[0] == "labels":
				v, ok := ci.Labels[fieldpath[1]]
				return v, ok
			}
			return "", false
		})) {
			return nil
		}
		return fn(ci)
	})
}

func (l *labelledLocal) Delete(ctx context.Context, d digest.Digest) error {
	if err := l.s.Delete(ctx, d); err != nil {
		return err
	}
	l.mu.Lock()
	delete(l.labels, d)
	l.mu.Unlock()
	return nil
}

func (l *labelledLocal) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (ctrcontent.ReaderAt, error) {
	return l.s.ReaderAt(ctx, desc)
}

func toCtrStatus(st content.Status) ctrcontent.Status {
	return ctrcontent.Status{Ref: st.Ref, Offset: st.Offset, Total: st.Total, Expected: st.Expected, StartedAt: st.StartedAt, UpdatedAt: st.UpdatedAt}
}

func (l *labelledLocal) Status(ctx context.Context, ref string) (ctrcontent.Status, error) {
	st, err := l.s.Status(ctx, ref)
	if err != nil {
		return ctrcontent.Status{}, err
	}
	return toCtrStatus(st), nil
}

func (l *labelledLocal) ListStatuses(ctx context.Context, fs ...string) ([]ctrcontent.Status, error) {
	sts, err := l.s.ListStatuses(ctx, fs...)
	if err != nil {
		return nil, err
	}
	out := make([]ctrcontent.Status, len(sts))
	for i, st := range sts {
		out[i] = toCtrStatus(st)
	}
	return out, nil
}

func (l *labelledLocal) Abort(ctx context.Context, ref string) error { return l.s.Abort(ctx, ref) }

func (l *labelledLocal) Writer(ctx context.Context, opts ...ctrcontent.WriterOpt) (ctrcontent.Writer, error) {
	var wo ctrcontent.WriterOpts
	for _, o := range opts {
		if err := o(&wo); err != nil {
			return nil, err
		}
	}
	w, err := l.s.Writer(ctx, content.WithRef(wo.Ref), content.WithDescriptor(wo.Desc))
	if err != nil {
		return nil, err
	}
	return &labelledWriter{w: w, l: l}, nil
}

// labelledWriter is a local store writer whose Commit records the labels
// containerd's commit options give.
type labelledWriter struct {
	w content.Writer
	l *labelledLocal
}

func (w *labelledWriter) Write(p []byte) (int, error) { return w.w.Write(p) }
func (w *labelledWriter) Close() error                { return w.w.Close() }
func (w *labelledWriter) Digest() digest.Digest       { return w.w.Digest() }
func (w *labelledWriter) Truncate(size int64) error   { return w.w.Truncate(size) }

func (w *labelledWriter) Status() (ctrcontent.Status, error) {
	st, err := w.w.Status()
	if err != nil {
		return ctrcontent.Status{}, err
	}
	return toCtrStatus(st), nil
}

func (w *labelledWriter) Commit(ctx context.Context, size int64, expected digest.Digest, opts ...ctrcontent.Opt) error {
	var info ctrcontent.Info
	for _, o := range opts {
		if err := o(&info); err != nil {
			return err
		}
	}
	// The digest is only known for sure once the commit has checked it.
	if err := w.w.Commit(ctx, size, expected, content.WithLabels(info.Labels)); err != nil {
		return err
	}
	d := expected
	if d == "" {
		d = w.w.Digest()
	}
	if info.Labels != nil {
		bi, err := w.l.s.Info(ctx, d)
		if err != nil {
			return err
		}
		w.l.setLabels(d, info.Labels, bi.UpdatedAt)
	}
	return nil
}
