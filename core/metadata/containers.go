package metadata

import (
	"context"
	"fmt"
	"strings"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/typeurl/v2"

	"github.com/hullrt/hull/core/containers"
	"github.com/hullrt/hull/core/filters"
	"github.com/hullrt/hull/core/labels"
)

// Containers returns the container store.
func (db *DB) Containers() containers.Store { return containerStore{db} }

type containerStore struct{ db *DB }

var _ containers.Store = containerStore{}

// anyRecord keeps a typed Any as its type URL and encoded bytes: the store
// never decodes specs, runtime options or extensions, so it keeps values of
// types it does not know as faithfully as those it does.
type anyRecord struct {
	TypeURL string `json:"type_url"`
	Value   []byte `json:"value,omitempty"`
}

type containerRecord struct {
	Labels         map[string]string    `json:"labels,omitempty"`
	Image          string               `json:"image,omitempty"`
	Runtime        string               `json:"runtime"`
	RuntimeOptions *anyRecord           `json:"runtime_options,omitempty"`
	Spec           *anyRecord           `json:"spec"`
	SnapshotKey    string               `json:"snapshot_key,omitempty"`
	Snapshotter    string               `json:"snapshotter,omitempty"`
	Extensions     map[string]anyRecord `json:"extensions,omitempty"`
	SandboxID      string               `json:"sandbox,omitempty"`
	CreatedAt      time.Time            `json:"created"`
	UpdatedAt      time.Time            `json:"updated"`
}

// missingAny reports whether a is absent: nil, or an Any with no type URL
// (protobuf getters are nil-safe, so a typed nil pointer lands here too).
func missingAny(a typeurl.Any) bool {
	return a == nil || a.GetTypeUrl() == ""
}

func toAnyRecord(a typeurl.Any) *anyRecord {
	if missingAny(a) {
		return nil
	}
	return &anyRecord{TypeURL: a.GetTypeUrl(), Value: append([]byte(nil), a.GetValue()...)}
}

func (r *anyRecord) any() typeurl.Any {
	if r == nil {
		return nil
	}
	return containers.NewAny(r.TypeURL, r.Value)
}

func toExtensionRecords(m map[string]typeurl.Any) map[string]anyRecord {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]anyRecord, len(m))
	for k, v := range m {
		if r := toAnyRecord(v); r != nil {
			out[k] = *r
		}
	}
	return out
}

func (r *containerRecord) container(id string) containers.Container {
	c := containers.Container{
		ID: id, Labels: copyLabels(r.Labels), Image: r.Image,
		Runtime:     containers.RuntimeInfo{Name: r.Runtime, Options: r.RuntimeOptions.any()},
		Spec:        r.Spec.any(),
		SnapshotKey: r.SnapshotKey, Snapshotter: r.Snapshotter, SandboxID: r.SandboxID,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
	}
	if len(r.Extensions) > 0 {
		c.Extensions = make(map[string]typeurl.Any, len(r.Extensions))
		for k, v := range r.Extensions {
			c.Extensions[k] = v.any()
		}
	}
	return c
}

// setRuntime copies the runtime name and options of c.
func (r *containerRecord) setRuntime(c *containers.Container) {
	r.Runtime = c.Runtime.Name
	r.RuntimeOptions = toAnyRecord(c.Runtime.Options)
}

func validateContainer(c *containers.Container) error {
	if err := containers.ValidateID(c.ID); err != nil {
		return err
	}
	if err := labels.ValidateAll(c.Labels); err != nil {
		return fmt.Errorf("container %q: %w", c.ID, err)
	}
	if c.Runtime.Name == "" {
		return invalid("container %q: runtime name must be set", c.ID)
	}
	if missingAny(c.Spec) {
		return invalid("container %q: spec must be set", c.ID)
	}
	if c.SnapshotKey != "" && c.Snapshotter == "" {
		return invalid("container %q: snapshot key %q names no snapshotter: set the snapshotter too", c.ID, c.SnapshotKey)
	}
	for k, v := range c.Extensions {
		if k == "" {
			return invalid("container %q: extension name must not be empty", c.ID)
		}
		if missingAny(v) {
			return invalid("container %q: extension %q has no value", c.ID, k)
		}
	}
	return nil
}

func (s containerStore) Get(ctx context.Context, id string) (containers.Container, error) {
	var c containers.Container
	err := s.db.view(ctx, func(t *nsTx) error {
		var r containerRecord
		ok, err := getRecord(t.bucket(bucketContainers), id, &r)
		if err != nil {
			return err
		}
		if !ok {
			return notFound("container %q in namespace %q", id, t.ns)
		}
		c = r.container(id)
		return nil
	})
	return c, err
}

// containerAdaptor exposes a container's fields to filters. Empty fields
// count as absent, as in containerd, so "image!=x" selects containers
// without an image too.
func containerAdaptor(c *containers.Container) filters.Adaptor {
	return filters.AdapterFunc(func(fp []string) (string, bool) {
		switch fp[0] {
		case "id":
			return c.ID, c.ID != ""
		case "image":
			return c.Image, c.Image != ""
		case "runtime":
			if len(fp) == 2 && fp[1] == "name" {
				return c.Runtime.Name, c.Runtime.Name != ""
			}
		case "snapshotter":
			return c.Snapshotter, c.Snapshotter != ""
		case "snapshotkey":
			return c.SnapshotKey, c.SnapshotKey != ""
		case "sandbox":
			return c.SandboxID, c.SandboxID != ""
		case "labels":
			return labelField(c.Labels, fp)
		}
		return "", false
	})
}

func (s containerStore) List(ctx context.Context, fs ...string) ([]containers.Container, error) {
	filter, err := filters.ParseAll(fs...)
	if err != nil {
		return nil, err
	}
	var out []containers.Container
	err = s.db.view(ctx, func(t *nsTx) error {
		b := t.bucket(bucketContainers)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var r containerRecord
			if err := decodeAt(string(k), v, &r); err != nil {
				return err
			}
			c := r.container(string(k))
			if filter.Match(containerAdaptor(&c)) {
				out = append(out, c)
			}
			return nil
		})
	})
	return out, err
}

func (s containerStore) Create(ctx context.Context, c containers.Container) (containers.Container, error) {
	if err := validateContainer(&c); err != nil {
		return containers.Container{}, err
	}
	var out containers.Container
	err := s.db.update(ctx, func(t *nsTx) error {
		b, err := t.createBucket(bucketContainers)
		if err != nil {
			return err
		}
		if b.Get([]byte(c.ID)) != nil {
			return alreadyExists("container %q", c.ID)
		}
		now := time.Now().UTC()
		r := containerRecord{
			Labels: copyLabels(c.Labels), Image: c.Image, Spec: toAnyRecord(c.Spec),
			SnapshotKey: c.SnapshotKey, Snapshotter: c.Snapshotter,
			Extensions: toExtensionRecords(c.Extensions), SandboxID: c.SandboxID,
			CreatedAt: now, UpdatedAt: now,
		}
		r.setRuntime(&c)
		if err := putRecord(b, c.ID, &r); err != nil {
			return err
		}
		out = r.container(c.ID)
		t.publish(s.db, "/containers/create", &eventstypes.ContainerCreate{
			ID: c.ID, Image: r.Image,
			Runtime: &eventstypes.ContainerCreate_Runtime{Name: r.Runtime, Options: typeurl.MarshalProto(r.RuntimeOptions.any())},
		})
		return nil
	})
	return out, err
}

// immutableField is the error for an update that would change a field that
// never changes: what the container runs in (snapshotter, sandbox) is fixed
// when it is created, as in containerd.
func immutableField(id, field string) error {
	return invalid("container %q: field %q cannot be changed after creation", id, field)
}

func (s containerStore) Update(ctx context.Context, c containers.Container, fieldpaths ...string) (containers.Container, error) {
	if err := containers.ValidateID(c.ID); err != nil {
		return containers.Container{}, err
	}
	var out containers.Container
	err := s.db.update(ctx, func(t *nsTx) error {
		fieldpaths := fieldpaths // set below for a full replace, on every run
		b := t.bucket(bucketContainers)
		var r containerRecord
		ok, err := getRecord(b, c.ID, &r)
		if err != nil {
			return err
		}
		if !ok {
			return notFound("container %q in namespace %q", c.ID, t.ns)
		}
		if len(fieldpaths) == 0 {
			// A full replace carries every field: the immutable ones
			// must match, so that a client that changed them hears so.
			if c.Snapshotter != r.Snapshotter {
				return immutableField(c.ID, "snapshotter")
			}
			if c.SandboxID != r.SandboxID {
				return immutableField(c.ID, "sandbox")
			}
			fieldpaths = []string{"labels", "spec", "extensions", "image", "snapshotkey", "runtime"}
		}
		for _, p := range fieldpaths {
			switch {
			case applyLabelPaths(&r.Labels, c.Labels, p):
			case p == "spec":
				r.Spec = toAnyRecord(c.Spec)
			case p == "image":
				r.Image = c.Image
			case p == "snapshotkey":
				r.SnapshotKey = c.SnapshotKey
			case p == "runtime":
				r.setRuntime(&c)
			case p == "extensions":
				r.Extensions = toExtensionRecords(c.Extensions)
			case strings.HasPrefix(p, "extensions.") && len(p) > len("extensions."):
				k := p[len("extensions."):]
				if v := toAnyRecord(c.Extensions[k]); v != nil {
					if r.Extensions == nil {
						r.Extensions = map[string]anyRecord{}
					}
					r.Extensions[k] = *v
				} else {
					delete(r.Extensions, k)
				}
			case p == "id":
				return immutableField(c.ID, p)
			case p == "snapshotter" && c.Snapshotter != r.Snapshotter,
				p == "sandbox" && c.SandboxID != r.SandboxID:
				return immutableField(c.ID, p)
			case p == "snapshotter" || p == "sandbox":
				// Naming an immutable field with its current value
				// changes nothing.
			default:
				return invalid("container %q: cannot update field %q: the fields are labels, labels.<key>, spec, image, snapshotkey, runtime, extensions, extensions.<key>", c.ID, p)
			}
		}
		out = r.container(c.ID)
		if err := validateContainer(&out); err != nil {
			return err
		}
		r.UpdatedAt = time.Now().UTC()
		out.UpdatedAt = r.UpdatedAt
		if err := putRecord(b, c.ID, &r); err != nil {
			return err
		}
		t.publish(s.db, "/containers/update", &eventstypes.ContainerUpdate{ID: c.ID, Image: r.Image, Labels: r.Labels, SnapshotKey: r.SnapshotKey})
		return nil
	})
	if err == nil {
		// The update may have dropped a reference (snapshot key, gc
		// labels) that kept something alive.
		s.db.kickGC()
	}
	return out, err
}

func (s containerStore) Delete(ctx context.Context, id string) error {
	err := s.db.updateFreeing(ctx, func(t *nsTx) error {
		b := t.bucket(bucketContainers)
		if b == nil || b.Get([]byte(id)) == nil {
			return notFound("container %q in namespace %q", id, t.ns)
		}
		if err := b.Delete([]byte(id)); err != nil {
			return err
		}
		t.publish(s.db, "/containers/delete", &eventstypes.ContainerDelete{ID: id})
		return nil
	})
	if err != nil {
		return err
	}
	// The container's snapshot is now only as alive as its other
	// references: collect it unless something else holds it.
	return s.db.collectAfterDelete(ctx, false)
}
