package server

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
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
// crictl accept truncated ids.
type index[T any] struct {
	mu   sync.RWMutex
	byID map[string]T
	kind string
}

func newIndex[T any](kind string) *index[T] { return &index[T]{byID: map[string]T{}, kind: kind} }

func (x *index[T]) add(id string, v T) {
	x.mu.Lock()
	x.byID[id] = v
	x.mu.Unlock()
}

func (x *index[T]) remove(id string) {
	x.mu.Lock()
	delete(x.byID, id)
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
	if v, ok := x.byID[id]; ok {
		return v, nil
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
		return x.byID[found[0]], nil
	}
	sort.Strings(found)
	return zero, fmt.Errorf("%s id prefix %q is ambiguous (%s): %w", x.kind, id, strings.Join(found, ", "), errdefs.ErrInvalidArgument)
}

func (x *index[T]) list() []T {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make([]T, 0, len(x.byID))
	for _, v := range x.byID {
		out = append(out, v)
	}
	return out
}
