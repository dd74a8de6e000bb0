package server

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// names reserves the CRI names of pods and containers, which the kubelet
// makes unique per attempt: a second RunPodSandbox or CreateContainer with a
// name in use is AlreadyExists, naming the holder.
type names struct {
	mu    sync.Mutex
	byKey map[string]string // name -> id
}

func newNames() *names { return &names{byKey: map[string]string{}} }

func (n *names) reserve(name, id string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if holder, ok := n.byKey[name]; ok && holder != id {
		return fmt.Errorf("name %q is reserved for %q: %w", name, holder, errdefs.ErrAlreadyExists)
	}
	n.byKey[name] = id
	return nil
}

func (n *names) release(name, id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.byKey[name] == id {
		delete(n.byKey, name)
	}
}

// index finds objects by full id or unique id prefix, as the kubelet and
// crictl accept truncated ids. It also keeps what lists need: the kubelet
// relists every pod and container every second, and most of them did not
// change since the last time, so the list order is kept until an object
// comes or goes (see sorted) and each object's list item until its state
// changes (see listItem).
type index[T any] struct {
	mu   sync.RWMutex
	byID map[string]*entry[T]
	kind string
	// ordered is every entry in list order (see sorted), shared by the
	// lists made since; nil when an object was added or removed since.
	ordered []*entry[T]
}

// entry is an object of an index and the item that last listed it.
type entry[T any] struct {
	v T
	// item is the last list item made of v (a *runtime.Container or a
	// *runtime.PodSandbox), nil before the first list. It is never
	// modified once stored, since responses that share it may still be
	// being encoded; a changed item is a new one swapped in.
	item atomic.Pointer[cachedItem]
}

// cachedItem is a list item and, once a list was sent encoded, its
// protobuf encoding, which lasts as long as the item.
type cachedItem struct {
	v    any
	wire atomic.Pointer[[]byte]
}

// encoded returns the protobuf encoding of the item m (c's own), made at
// the first call.
func (c *cachedItem) encoded(m proto.Message) ([]byte, error) {
	if p := c.wire.Load(); p != nil {
		return *p, nil
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	c.wire.Store(&b)
	return b, nil
}

func newIndex[T any](kind string) *index[T] {
	return &index[T]{byID: map[string]*entry[T]{}, kind: kind}
}

func (x *index[T]) add(id string, v T) {
	x.mu.Lock()
	x.byID[id] = &entry[T]{v: v}
	x.ordered = nil
	x.mu.Unlock()
}

func (x *index[T]) remove(id string) {
	x.mu.Lock()
	delete(x.byID, id)
	x.ordered = nil
	x.mu.Unlock()
}

// get finds id or a unique prefix of one; NotFound names what was asked for.
func (x *index[T]) get(id string) (T, error) {
	var zero T
	if id == "" {
		return zero, fmt.Errorf("%s id is empty: %w", x.kind, errdefs.ErrInvalidArgument)
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	if e, ok := x.byID[id]; ok {
		return e.v, nil
	}
	var found []string
	for k := range x.byID {
		if strings.HasPrefix(k, id) {
			found = append(found, k)
		}
	}
	switch len(found) {
	case 0:
		return zero, fmt.Errorf("%s %q: %w", x.kind, id, errdefs.ErrNotFound)
	case 1:
		return x.byID[found[0]].v, nil
	}
	sort.Strings(found)
	return zero, fmt.Errorf("%s id prefix %q is ambiguous (%s): %w", x.kind, id, strings.Join(found, ", "), errdefs.ErrInvalidArgument)
}

func (x *index[T]) len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.byID)
}

func (x *index[T]) list() []T {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make([]T, 0, len(x.byID))
	for _, e := range x.byID {
		out = append(out, e.v)
	}
	return out
}

// sorted returns every entry ordered by cmp, which must order by what is
// fixed when an object is made and be the same at every call: the order is
// kept until an object is added or removed, so that a relist sorts nothing.
// The slice is shared and must not be modified.
func (x *index[T]) sorted(cmp func(a, b T) int) []*entry[T] {
	x.mu.RLock()
	ordered := x.ordered
	x.mu.RUnlock()
	if ordered != nil {
		return ordered
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.ordered == nil {
		ordered := make([]*entry[T], 0, len(x.byID))
		for _, e := range x.byID {
			ordered = append(ordered, e)
		}
		slices.SortFunc(ordered, func(a, b *entry[T]) int { return cmp(a.v, b.v) })
		x.ordered = ordered
	}
	return x.ordered
}

// stated is a list item that shows the state of its object, the one part
// of it that changes after the object is made.
type stated[S comparable] interface{ GetState() S }

// listItem returns the item that lists e's object in state: the last one
// made, when it shows that state, else a new one from build, which then
// replaces it. The caller reads state afresh for every list, so an item is
// never shown after its object's state changed: what build reads of the
// object besides state must be fixed when the object is made.
func listItem[T any, S comparable, V stated[S]](e *entry[T], state S, build func(T, S) V) (V, *cachedItem) {
	if c := e.item.Load(); c != nil {
		if v, ok := c.v.(V); ok && v.GetState() == state {
			return v, c
		}
	}
	v := build(e.v, state)
	c := &cachedItem{v: v}
	e.item.Store(c)
	return v, c
}

// listEncoding gathers the encodings of a list's items and lays them out
// as the encoding of the list response, whose repeated field 1
// (containers, items) they are: each item is encoded once, and a relist
// of items that did not change only copies bytes, into one buffer of the
// right size.
type listEncoding struct {
	items   []*cachedItem
	wires   [][]byte
	size    int
	encoded []byte // the list's encoding, once built
}

func (l *listEncoding) add(m proto.Message, c *cachedItem) error {
	wire, err := c.encoded(m)
	if err != nil {
		return err
	}
	l.items = append(l.items, c)
	l.wires = append(l.wires, wire)
	l.size += protowire.SizeTag(1) + protowire.SizeBytes(len(wire))
	return nil
}

// bytesSince returns the encoded list. When last, an earlier list's
// encoding, has the very same items, which never change, it is the answer
// again: a relist where nothing changed builds nothing.
func (l *listEncoding) bytesSince(last *atomic.Pointer[listEncoding]) []byte {
	if prev := last.Load(); prev != nil && slices.Equal(prev.items, l.items) {
		return prev.encoded
	}
	b := l.bytes()
	last.Store(l)
	return b
}

func (l *listEncoding) bytes() []byte {
	b := make([]byte, 0, l.size)
	for _, w := range l.wires {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, w)
	}
	l.encoded = b
	return b
}

// collect returns the items list passes to its fn, in order; an empty
// list is an empty slice, as a decoded response's would be nil.
func collect[M any](list func(fn func(M, *cachedItem) error) error) []M {
	out := []M{}
	list(func(m M, _ *cachedItem) error {
		out = append(out, m)
		return nil
	})
	return out
}

// encodeList encodes the list response of the n or fewer items list
// passes to its fn. An unfiltered list (the kubelet's relist, every
// second) is answered with last's bytes again when its items are the same.
func encodeList[M proto.Message](n int, filter proto.Message, last *atomic.Pointer[listEncoding], list func(fn func(M, *cachedItem) error) error) ([]byte, error) {
	l := &listEncoding{items: make([]*cachedItem, 0, n), wires: make([][]byte, 0, n)}
	if err := list(func(m M, c *cachedItem) error { return l.add(m, c) }); err != nil {
		return nil, err
	}
	if proto.Size(filter) == 0 {
		return l.bytesSince(last), nil
	}
	return l.bytes(), nil
}
