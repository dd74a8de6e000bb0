// Package snapshots defines snapshotters: stores of filesystem trees built
// as chains of layers, in containerd's model.
//
// A snapshot is active (writable, made by Prepare), a view (read-only, made
// by View) or committed (read-only and immutable, made by Commit from an
// active snapshot, and usable as the parent of new ones). Prepare(key,
// parent) returns the mounts of a writable tree holding parent's content;
// after changes are made there, Commit(name, key) seals it as name. An
// image's root filesystem is the chain of its layers' committed snapshots,
// each keyed by its chain ID.
//
// A Snapshotter here is a backend: it knows keys but not namespaces. The
// metadata layer gives each namespace its own keys and maps them to backend
// keys, so two namespaces can share a committed layer on disk.
package snapshots

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/core/mount"
)

// Kind is the kind of a snapshot.
type Kind uint8

// The kinds of snapshot.
const (
	KindUnknown Kind = iota
	KindView
	KindActive
	KindCommitted
)

func (k Kind) String() string {
	switch k {
	case KindView:
		return "View"
	case KindActive:
		return "Active"
	case KindCommitted:
		return "Committed"
	}
	return "Unknown"
}

// ParseKind parses the String form of a Kind (case-sensitive, as the API
// sends it).
func ParseKind(s string) (Kind, error) {
	switch s {
	case "View":
		return KindView, nil
	case "Active":
		return KindActive, nil
	case "Committed":
		return KindCommitted, nil
	}
	return KindUnknown, fmt.Errorf("snapshot kind %q: use View, Active or Committed: %w", s, errdefs.ErrInvalidArgument)
}

// Info describes a snapshot.
type Info struct {
	Kind    Kind
	Name    string // the key, or the name given at Commit
	Parent  string // the parent's name; "" for none
	Labels  map[string]string
	Created time.Time
	Updated time.Time
}

// Usage is the disk a snapshot uses by itself (not its parents).
type Usage struct {
	Inodes int64
	Size   int64
}

// Add adds u2 to u.
func (u *Usage) Add(u2 Usage) {
	u.Inodes += u2.Inodes
	u.Size += u2.Size
}

// WalkFunc is called for each snapshot by Walk; an error stops the walk.
type WalkFunc func(context.Context, Info) error

// Opt sets fields of the Info of a new snapshot (labels) or, given to
// Commit, of the committed one (labels, WithParent).
type Opt func(*Info) error

// WithLabels sets the labels of a new snapshot.
func WithLabels(labels map[string]string) Opt {
	return func(i *Info) error {
		if i.Labels == nil {
			i.Labels = map[string]string{}
		}
		for k, v := range labels {
			i.Labels[k] = v
		}
		return nil
	}
}

// WithParent, given to Commit, makes the committed snapshot a child of the
// committed snapshot parent although the active one was prepared without
// parent: a rebase. It is how a layer is applied apart from the layers below
// it and then stacked on them, which lets unpack apply several layers at
// once. The active snapshot must have been prepared without parent and hold
// only the layer's changes the way an overlay upper directory holds them
// (diff.ApplyConfig.Detached); only snapshotters whose committed snapshots
// are such upper directories can honour it (overlayfs). The others refuse
// it with errdefs.ErrNotImplemented rather than commit a tree whose
// whiteouts would mean nothing.
//
// Prepare and View refuse it: their parent is an argument.
func WithParent(parent string) Opt {
	return func(i *Info) error {
		i.Parent = parent
		return nil
	}
}

// LabelCommitParent carries WithParent through the snapshots gRPC API,
// whose CommitSnapshotRequest has no parent field: the client sets it on
// the commit's labels and hulld's snapshots service turns it back into
// WithParent, so it is never stored. Only hull's own service knows it; a
// client asks for it only from a snapshotter whose plugin exports
// ExportParallelUnpack.
const LabelCommitParent = "hull.io/snapshot.commit-parent"

// ExportParallelUnpack is the plugin export of a snapshotter that honours
// WithParent: how many layers an unpack may apply at once, as configured.
const ExportParallelUnpack = "parallel_unpack"

// ParentOf returns the parent opts set (WithParent), or an error from an
// opt.
func ParentOf(opts []Opt) (string, error) {
	var info Info
	for _, o := range opts {
		if err := o(&info); err != nil {
			return "", err
		}
	}
	return info.Parent, nil
}

// LabelsOf returns the labels opts give a new snapshot, for a snapshotter
// that must know them before it records the snapshot.
func LabelsOf(opts []Opt) (map[string]string, error) {
	var info Info
	for _, o := range opts {
		if err := o(&info); err != nil {
			return nil, err
		}
	}
	return info.Labels, nil
}

// Snapshotter is a snapshot store. Errors wrap errdefs: NotFound for an
// unknown key, AlreadyExists for a key in use, FailedPrecondition for an
// operation the snapshot's kind or children forbid, InvalidArgument for a
// bad key or parent.
type Snapshotter interface {
	Stat(ctx context.Context, key string) (Info, error)
	// Update changes labels ("labels", "labels.<key>"); none: all labels.
	Update(ctx context.Context, info Info, fieldpaths ...string) (Info, error)
	Usage(ctx context.Context, key string) (Usage, error)
	// Mounts returns the mounts of an active snapshot or view.
	Mounts(ctx context.Context, key string) ([]mount.Mount, error)
	// Prepare makes an active snapshot key from committed parent ("" for
	// an empty tree) and returns its mounts.
	Prepare(ctx context.Context, key, parent string, opts ...Opt) ([]mount.Mount, error)
	// View makes a read-only snapshot of committed parent.
	View(ctx context.Context, key, parent string, opts ...Opt) ([]mount.Mount, error)
	// Commit seals active snapshot key as committed snapshot name; key
	// is gone afterwards.
	Commit(ctx context.Context, name, key string, opts ...Opt) error
	// Remove removes a snapshot that has no children.
	Remove(ctx context.Context, key string) error
	// Walk calls fn for each snapshot matching any of filters ("name",
	// "parent", "kind", "labels.<key>"; none: all).
	Walk(ctx context.Context, fn WalkFunc, filters ...string) error
	Close() error
}

// CommitLink is one commit of a chain (ChainCommitter): active snapshot Key
// committed as Name, with Opts as Commit takes them.
type CommitLink struct {
	Name, Key string
	Opts      []Opt
}

// ChainCommitter is a Snapshotter that commits a run of snapshots at once,
// each onto the one before it: what an unpack that applied several layers
// apart (WithParent) does with those that are ready, in one transaction of
// its records instead of one per layer. Call it through CommitChain.
type ChainCommitter interface {
	// CommitChain commits links in order, each as Commit(ctx, l.Name,
	// l.Key, l.Opts..., WithParent(p)) would, where p is parent for the
	// first link and the link before it for the others; the first is
	// committed without WithParent when parent is "". It returns how many
	// it committed: when fewer than all, err is why the next one was
	// not, and the ones before it are committed.
	CommitChain(ctx context.Context, parent string, links []CommitLink) (int, error)
}

// CommitChain commits links as ChainCommitter.CommitChain says, through
// sn's own CommitChain when it has one and otherwise one Commit after
// another.
func CommitChain(ctx context.Context, sn Snapshotter, parent string, links []CommitLink) (int, error) {
	if cc, ok := sn.(ChainCommitter); ok {
		return cc.CommitChain(ctx, parent, links)
	}
	return CommitEach(ctx, sn, parent, links)
}

// CommitEach commits links one Commit after another, as CommitChain
// says: for snapshotters that cannot do better, and for those that can
// only in some configurations.
func CommitEach(ctx context.Context, sn Snapshotter, parent string, links []CommitLink) (int, error) {
	for i, l := range links {
		if err := sn.Commit(ctx, l.Name, l.Key, ChainOpts(l, parent)...); err != nil {
			return i, err
		}
		parent = l.Name
	}
	return len(links), nil
}

// ChainOpts returns the options of l's commit onto parent, as
// ChainCommitter.CommitChain says.
func ChainOpts(l CommitLink, parent string) []Opt {
	if parent == "" {
		return l.Opts
	}
	return append(slices.Clip(l.Opts), WithParent(parent))
}

// PrepareRequest is one Prepare of a batch (ManyPreparer): active
// snapshot Key on committed Parent ("" for an empty tree), with Opts as
// Prepare takes them.
type PrepareRequest struct {
	Key, Parent string
	Opts        []Opt
}

// PrepareResult is the outcome of one PrepareRequest: the mounts, or the
// error Prepare would have returned.
type PrepareResult struct {
	Mounts []mount.Mount
	Err    error
}

// ManyPreparer is a Snapshotter that makes many active snapshots at once,
// in one transaction of its records instead of one each: what an unpack
// that applies layers apart does before their blobs arrive, for every
// layer of an image. Call it through PrepareMany.
type ManyPreparer interface {
	// PrepareMany prepares each request as Prepare would and returns one
	// result per request, in order. Requests succeed or fail apart: one
	// refused (an existing key) does not fail the others.
	PrepareMany(ctx context.Context, reqs []PrepareRequest) []PrepareResult
}

// prepareConcurrency bounds the Prepares that PrepareMany runs at once on
// a snapshotter without a PrepareMany of its own: enough that a
// snapshotter with group commit records most of them together, few
// enough to bound the goroutines blocked in its calls.
const prepareConcurrency = 32

// PrepareMany prepares reqs as ManyPreparer.PrepareMany says, through sn's
// own PrepareMany when it has one and otherwise with concurrent Prepares.
func PrepareMany(ctx context.Context, sn Snapshotter, reqs []PrepareRequest) []PrepareResult {
	if mp, ok := sn.(ManyPreparer); ok {
		return mp.PrepareMany(ctx, reqs)
	}
	return PrepareEach(ctx, sn, reqs)
}

// PrepareEach prepares reqs with concurrent Prepares of sn, as
// ManyPreparer.PrepareMany says: for snapshotters that cannot do better,
// and for the requests those that can must make one by one.
func PrepareEach(ctx context.Context, sn Snapshotter, reqs []PrepareRequest) []PrepareResult {
	out := make([]PrepareResult, len(reqs))
	slots := make(chan struct{}, prepareConcurrency)
	var wg sync.WaitGroup
	for i, r := range reqs {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			out[i].Mounts, out[i].Err = sn.Prepare(ctx, r.Key, r.Parent, r.Opts...)
		}()
	}
	wg.Wait()
	return out
}

// Cleaner is a Snapshotter that frees the disk of removed snapshots in a
// separate step, so that Remove stays quick.
type Cleaner interface {
	Cleanup(ctx context.Context) error
}

// LabelUIDMapping and LabelGIDMapping, given when a snapshot is made, ask
// for a tree whose owners are those of a user namespace: ranges of
// "<container>:<host>:<size>", comma-separated (containerd's labels, with
// which its CRI asks for the root filesystems of pods in user namespaces).
// A snapshotter that honours them shows the image's root-owned files as
// owned by the namespace's root, by idmapping its mounts or by changing the
// owners in the snapshot.
const (
	LabelUIDMapping = "containerd.io/snapshot/uidmapping"
	LabelGIDMapping = "containerd.io/snapshot/gidmapping"
)

// IDMapping reads LabelUIDMapping and LabelGIDMapping from labels; ok is
// false if neither is set. Setting one without the other, or a malformed
// one, is InvalidArgument.
func IDMapping(labels map[string]string) (uids, gids []mount.IDMap, ok bool, err error) {
	u, hasU := labels[LabelUIDMapping]
	g, hasG := labels[LabelGIDMapping]
	if !hasU && !hasG {
		return nil, nil, false, nil
	}
	if !hasU || !hasG {
		return nil, nil, false, fmt.Errorf("labels %s and %s go together (got %q and %q): %w", LabelUIDMapping, LabelGIDMapping, u, g, errdefs.ErrInvalidArgument)
	}
	if uids, err = mount.ParseIDMaps(u); err != nil {
		return nil, nil, false, fmt.Errorf("label %s: %w", LabelUIDMapping, err)
	}
	if gids, err = mount.ParseIDMaps(g); err != nil {
		return nil, nil, false, fmt.Errorf("label %s: %w", LabelGIDMapping, err)
	}
	return uids, gids, true, nil
}
