package metadata

import (
	"context"
	"fmt"
	"strings"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"

	"github.com/hullrt/hull/core/labels"
	"github.com/hullrt/hull/core/namespaces"
)

// Namespaces returns the namespace store. Its methods take the namespace by
// name, not from the context.
func (db *DB) Namespaces() namespaces.Store { return nsStore{db} }

type nsStore struct{ db *DB }

var _ namespaces.Store = nsStore{}

// update runs fn in a read-write transaction of namespace name.
func (s nsStore) update(ctx context.Context, name string, fn func(*nsTx) error) error {
	if err := namespaces.Validate(name); err != nil {
		return err
	}
	return s.db.update(namespaces.WithNamespace(ctx, name), fn)
}

func (s nsStore) Create(ctx context.Context, name string, lbls map[string]string) error {
	if err := labels.ValidateAll(lbls); err != nil {
		return err
	}
	return s.update(ctx, name, func(t *nsTx) error {
		if t.tx.Bucket(bucketV1).Bucket([]byte(name)) != nil {
			return alreadyExists("namespace %q", name)
		}
		lb, err := t.createBucket(bucketLabels)
		if err != nil {
			return err
		}
		for k, v := range lbls {
			if err := lb.Put([]byte(k), []byte(v)); err != nil {
				return err
			}
		}
		t.publish(s.db, "/namespaces/create", &eventstypes.NamespaceCreate{Name: name, Labels: copyLabels(lbls)})
		return nil
	})
}

func (s nsStore) Labels(ctx context.Context, name string) (map[string]string, error) {
	if err := namespaces.Validate(name); err != nil {
		return nil, err
	}
	var out map[string]string
	err := s.db.view(namespaces.WithNamespace(ctx, name), func(t *nsTx) error {
		nsb := t.tx.Bucket(bucketV1).Bucket([]byte(name))
		if nsb == nil {
			return notFound("namespace %q", name)
		}
		out = map[string]string{}
		if lb := nsb.Bucket(bucketLabels); lb != nil {
			return lb.ForEach(func(k, v []byte) error { out[string(k)] = string(v); return nil })
		}
		return nil
	})
	return out, err
}

func (s nsStore) SetLabel(ctx context.Context, name, key, value string) error {
	if err := labels.Validate(key, value); err != nil {
		return err
	}
	return s.update(ctx, name, func(t *nsTx) error {
		if t.tx.Bucket(bucketV1).Bucket([]byte(name)) == nil {
			return notFound("namespace %q", name)
		}
		lb, err := t.createBucket(bucketLabels)
		if err != nil {
			return err
		}
		if value == "" {
			err = lb.Delete([]byte(key))
		} else {
			err = lb.Put([]byte(key), []byte(value))
		}
		if err != nil {
			return err
		}
		all := map[string]string{}
		lb.ForEach(func(k, v []byte) error { all[string(k)] = string(v); return nil })
		t.publish(s.db, "/namespaces/update", &eventstypes.NamespaceUpdate{Name: name, Labels: all})
		return nil
	})
}

func (s nsStore) List(ctx context.Context) ([]string, error) {
	var out []string
	err := s.db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketV1).ForEachBucket(func(k []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	return out, err
}

// Delete removes namespace name with its leases, ingests, sandboxes and
// labels, as containerd 2.x does. It refuses, with FailedPrecondition naming
// what is left, while the namespace holds images, blobs, containers or
// snapshots: those are what someone made on purpose, and removing them is
// the caller's decision. A lease or an ingest is bookkeeping of work in
// flight in the namespace; the ingests' data goes with the collection the
// delete schedules.
func (s nsStore) Delete(ctx context.Context, name string) error {
	// Blobs whose records are written behind them are blobs it holds.
	if err := s.db.writePendingIn(ctx, name); err != nil {
		return err
	}
	hadIngests := false
	err := s.update(ctx, name, func(t *nsTx) error {
		v1 := t.tx.Bucket(bucketV1)
		nsb := v1.Bucket([]byte(name))
		if nsb == nil {
			return notFound("namespace %q", name)
		}
		if remain := nsHolds(nsb); len(remain) > 0 {
			return fmt.Errorf("namespace %q must be empty, but it still has %s: %w", name, strings.Join(remain, ", "), errdefs.ErrFailedPrecondition)
		}
		hadIngests = !bucketEmpty(nsb.Bucket(bucketIngests))
		if err := v1.DeleteBucket([]byte(name)); err != nil {
			return err
		}
		t.publish(s.db, "/namespaces/delete", &eventstypes.NamespaceDelete{Name: name})
		return nil
	})
	if err == nil && hadIngests {
		// Their data in the backend is recorded by no namespace now.
		s.db.kickGC()
	}
	return err
}

// nsHolds names what keeps namespace bucket nsb from being deleted, in
// containerd's words, so that a message reads the same from either daemon.
func nsHolds(nsb *bolt.Bucket) []string {
	var out []string
	for _, k := range []struct {
		bucket []byte
		what   string
	}{{bucketImages, "images"}, {bucketContent, "blobs"}, {bucketContainers, "containers"}} {
		if !bucketEmpty(nsb.Bucket(k.bucket)) {
			out = append(out, k.what)
		}
	}
	if sb := nsb.Bucket(bucketSnapshots); sb != nil {
		sb.ForEachBucket(func(sn []byte) error {
			if !bucketEmpty(sb.Bucket(sn)) {
				out = append(out, fmt.Sprintf("snapshots on %q snapshotter", sn))
			}
			return nil
		})
	}
	return out
}

// bucketEmpty reports whether b is missing or holds no key.
func bucketEmpty(b *bolt.Bucket) bool {
	if b == nil {
		return true
	}
	k, _ := b.Cursor().First()
	return k == nil
}
