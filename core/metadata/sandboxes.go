package metadata

import (
	"context"
	"fmt"
	"strings"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/typeurl/v2"

	"github.com/hullrt/hull/core/filters"
	"github.com/hullrt/hull/core/labels"
	"github.com/hullrt/hull/core/sandboxes"
)

// bucketSandboxes holds a namespace's sandbox records. Garbage collection
// does not read it: a sandbox is no gc root in hull yet, so its gc.ref
// labels keep nothing alive, and collection never removes a sandbox
// record (only Delete does).
var bucketSandboxes = []byte("sandboxes")

// Sandboxes returns the sandbox store.
func (db *DB) Sandboxes() sandboxes.Store { return sandboxStore{db} }

type sandboxStore struct{ db *DB }

var _ sandboxes.Store = sandboxStore{}

// sandboxRecord is a sandbox as stored; typed Any values keep their type
// URL and bytes undecoded (see anyRecord).
type sandboxRecord struct {
	Labels         map[string]string    `json:"labels,omitempty"`
	Runtime        string               `json:"runtime,omitempty"`
	RuntimeOptions *anyRecord           `json:"runtime_options,omitempty"`
	Spec           *anyRecord           `json:"spec,omitempty"`
	Extensions     map[string]anyRecord `json:"extensions,omitempty"`
	Sandboxer      string               `json:"sandboxer,omitempty"`
	CreatedAt      time.Time            `json:"created"`
	UpdatedAt      time.Time            `json:"updated"`
}

func (r *sandboxRecord) sandbox(id string) sandboxes.Sandbox {
	s := sandboxes.Sandbox{
		ID: id, Labels: copyLabels(r.Labels),
		Runtime:   sandboxes.RuntimeInfo{Name: r.Runtime, Options: r.RuntimeOptions.any()},
		Spec:      r.Spec.any(),
		Sandboxer: r.Sandboxer,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
	}
	if len(r.Extensions) > 0 {
		s.Extensions = make(map[string]typeurl.Any, len(r.Extensions))
		for k, v := range r.Extensions {
			s.Extensions[k] = v.any()
		}
	}
	return s
}

// validateSandbox checks what containerd checks (the id) and what every
// hull record must satisfy (labels, extensions). Runtime and spec are
// optional, as in containerd: the sandboxer decides what it needs.
func validateSandbox(s *sandboxes.Sandbox) error {
	if err := sandboxes.ValidateID(s.ID); err != nil {
		return err
	}
	if err := labels.ValidateAll(s.Labels); err != nil {
		return fmt.Errorf("sandbox %q: %w", s.ID, err)
	}
	for k, v := range s.Extensions {
		if k == "" {
			return invalid("sandbox %q: extension name must not be empty", s.ID)
		}
		if missingAny(v) {
			return invalid("sandbox %q: extension %q has no value", s.ID, k)
		}
	}
	return nil
}

func (s sandboxStore) Create(ctx context.Context, sb sandboxes.Sandbox) (sandboxes.Sandbox, error) {
	if err := validateSandbox(&sb); err != nil {
		return sandboxes.Sandbox{}, err
	}
	var out sandboxes.Sandbox
	err := s.db.update(ctx, func(t *nsTx) error {
		b, err := t.createBucket(bucketSandboxes)
		if err != nil {
			return err
		}
		if b.Get([]byte(sb.ID)) != nil {
			return alreadyExists("sandbox %q", sb.ID)
		}
		now := time.Now().UTC()
		r := sandboxRecord{
			Labels: copyLabels(sb.Labels), Runtime: sb.Runtime.Name, RuntimeOptions: toAnyRecord(sb.Runtime.Options),
			Spec: toAnyRecord(sb.Spec), Extensions: toExtensionRecords(sb.Extensions), Sandboxer: sb.Sandboxer,
			CreatedAt: now, UpdatedAt: now,
		}
		if err := putRecord(b, sb.ID, &r); err != nil {
			return err
		}
		out = r.sandbox(sb.ID)
		t.publish(s.db, "/sandboxes/create", &eventstypes.SandboxCreate{SandboxID: sb.ID})
		return nil
	})
	return out, err
}

// immutableSandboxField is the error for an update that would change what
// a sandbox was created with.
func immutableSandboxField(id, field string) error {
	return invalid("sandbox %q: field %q cannot be changed after creation", id, field)
}

func (s sandboxStore) Update(ctx context.Context, sb sandboxes.Sandbox, fieldpaths ...string) (sandboxes.Sandbox, error) {
	if err := sandboxes.ValidateID(sb.ID); err != nil {
		return sandboxes.Sandbox{}, err
	}
	var out sandboxes.Sandbox
	err := s.db.update(ctx, func(t *nsTx) error {
		fieldpaths := fieldpaths // set below for a full replace, on every run
		b := t.bucket(bucketSandboxes)
		var r sandboxRecord
		ok, err := getRecord(b, sb.ID, &r)
		if err != nil {
			return err
		}
		if !ok {
			return notFound("sandbox %q", sb.ID)
		}
		if len(fieldpaths) == 0 {
			// A full replace carries every field. containerd refuses
			// one that changes the runtime name; hull refuses one that
			// changes the sandboxer too, rather than ignore it, so that
			// the client hears its change was not made.
			if sb.Runtime.Name != r.Runtime {
				return immutableSandboxField(sb.ID, "runtime.name")
			}
			if sb.Sandboxer != r.Sandboxer {
				return immutableSandboxField(sb.ID, "sandboxer")
			}
			fieldpaths = []string{"labels", "extensions", "spec", "runtime"}
		}
		for _, p := range fieldpaths {
			switch {
			case applyLabelPaths(&r.Labels, sb.Labels, p):
			case p == "spec":
				r.Spec = toAnyRecord(sb.Spec)
			case p == "runtime":
				r.Runtime, r.RuntimeOptions = sb.Runtime.Name, toAnyRecord(sb.Runtime.Options)
			case p == "extensions":
				r.Extensions = toExtensionRecords(sb.Extensions)
			case strings.HasPrefix(p, "extensions.") && len(p) > len("extensions."):
				k := p[len("extensions."):]
				if v := toAnyRecord(sb.Extensions[k]); v != nil {
					if r.Extensions == nil {
						r.Extensions = map[string]anyRecord{}
					}
					r.Extensions[k] = *v
				} else {
					delete(r.Extensions, k)
				}
			case p == "id" || p == "sandboxer":
				return immutableSandboxField(sb.ID, p)
			default:
				return invalid("sandbox %q: cannot update field %q: the fields are labels, labels.<key>, extensions, extensions.<key>, spec, runtime", sb.ID, p)
			}
		}
		out = r.sandbox(sb.ID)
		if err := validateSandbox(&out); err != nil {
			return err
		}
		r.UpdatedAt = time.Now().UTC()
		out.UpdatedAt = r.UpdatedAt
		if err := putRecord(b, sb.ID, &r); err != nil {
			return err
		}
		// containerd's API has no update event type: the record itself,
		// without its spec (as container updates leave theirs out),
		// says what changed.
		ev := sandboxes.ToProto(out)
		ev.Spec, ev.Extensions = nil, nil
		t.publish(s.db, "/sandboxes/update", ev)
		return nil
	})
	return out, err
}

func (s sandboxStore) Get(ctx context.Context, id string) (sandboxes.Sandbox, error) {
	var out sandboxes.Sandbox
	err := s.db.view(ctx, func(t *nsTx) error {
		var r sandboxRecord
		ok, err := getRecord(t.bucket(bucketSandboxes), id, &r)
		if err != nil {
			return err
		}
		if !ok {
			return notFound("sandbox %q", id)
		}
		out = r.sandbox(id)
		return nil
	})
	return out, err
}

// sandboxAdaptor exposes a sandbox's fields to filters. Empty fields count
// as absent, as they do for containers.
func sandboxAdaptor(s *sandboxes.Sandbox) filters.Adaptor {
	return filters.AdapterFunc(func(fp []string) (string, bool) {
		switch fp[0] {
		case "id":
			return s.ID, s.ID != ""
		case "runtime":
			if len(fp) == 2 && fp[1] == "name" {
				return s.Runtime.Name, s.Runtime.Name != ""
			}
		case "sandboxer":
			return s.Sandboxer, s.Sandboxer != ""
		case "labels":
			return labelField(s.Labels, fp)
		}
		return "", false
	})
}

func (s sandboxStore) List(ctx context.Context, fs ...string) ([]sandboxes.Sandbox, error) {
	filter, err := filters.ParseAll(fs...)
	if err != nil {
		return nil, err
	}
	var out []sandboxes.Sandbox
	err = s.db.view(ctx, func(t *nsTx) error {
		return forEachRecord(t.bucket(bucketSandboxes), func(id string, r *sandboxRecord) error {
			sb := r.sandbox(id)
			if filter.Match(sandboxAdaptor(&sb)) {
				out = append(out, sb)
			}
			return nil
		})
	})
	return out, err
}

func (s sandboxStore) Delete(ctx context.Context, id string) error {
	return s.db.updateFreeing(ctx, func(t *nsTx) error {
		b := t.bucket(bucketSandboxes)
		if b == nil || b.Get([]byte(id)) == nil {
			return notFound("sandbox %q", id)
		}
		if err := b.Delete([]byte(id)); err != nil {
			return err
		}
		t.publish(s.db, "/sandboxes/delete", &types.Sandbox{SandboxID: id})
		return nil
	})
}
