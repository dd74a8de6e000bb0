package client_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	introspectionapi "github.com/containerd/containerd/api/services/introspection/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/core/containers"
	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/core/sandboxes"
	"github.com/hullrt/hull/internal/hulltest"
)

// TestSandboxStore drives hulld's sandbox store through the client: the
// records round-trip with every field, errors come back as errdefs classes
// naming the sandbox, namespaces are apart, and the changes are published
// as events.
func TestSandboxStore(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	c := newClient(t, d)
	ctx := testCtx(t)
	s := c.SandboxStore()

	// Subscribe first; the subscription starts asynchronously, so create
	// throwaway sandboxes until one is seen.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	evs, errs := c.EventService().Subscribe(sctx, `topic~="^/sandboxes/"`)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for warm, seen := 0, false; !seen; {
		select {
		case <-tick.C:
			if _, err := s.Create(ctx, sandboxes.Sandbox{ID: fmt.Sprintf("warm-%d", warm)}); err != nil {
				t.Fatal(err)
			}
			warm++
		case <-evs:
			seen = true
		case err := <-errs:
			t.Fatalf("subscription failed: %v", err)
		}
	}

	in := sandboxes.Sandbox{
		ID: "pod-1", Labels: map[string]string{"io.kubernetes.pod.name": "web"},
		Runtime:    sandboxes.RuntimeInfo{Name: "io.containerd.runc.v2", Options: containers.NewAny("example/opts", []byte("o"))},
		Spec:       containers.NewAny(containers.SpecTypeURL, []byte(`{"ociVersion":"1.2.0"}`)),
		Extensions: map[string]typeurl.Any{"ext": containers.NewAny("example/ext", []byte("x"))},
		Sandboxer:  "podsandbox",
	}
	created, err := s.Create(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if created.CreatedAt.IsZero() || !created.UpdatedAt.Equal(created.CreatedAt) {
		t.Fatalf("created %+v: times not set", created)
	}
	got, err := s.Get(ctx, "pod-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Labels["io.kubernetes.pod.name"] != "web" || got.Runtime.Name != "io.containerd.runc.v2" ||
		string(got.Runtime.Options.GetValue()) != "o" || got.Spec.GetTypeUrl() != containers.SpecTypeURL ||
		string(got.Spec.GetValue()) != `{"ociVersion":"1.2.0"}` || string(got.Extensions["ext"].GetValue()) != "x" ||
		got.Sandboxer != "podsandbox" || !got.CreatedAt.Equal(created.CreatedAt) {
		t.Fatalf("got %+v", got)
	}
	_, err = s.Create(ctx, in)
	wantErr(t, err, errdefs.IsAlreadyExists, "AlreadyExists", `"pod-1"`)
	_, err = s.Create(ctx, sandboxes.Sandbox{ID: "a/b"})
	wantErr(t, err, errdefs.IsInvalidArgument, "InvalidArgument", `"a/b"`)
	_, err = s.Get(client.WithNamespace(ctx, "other"), "pod-1")
	wantErr(t, err, errdefs.IsNotFound, "NotFound", `"pod-1"`)

	list, err := s.List(ctx, "sandboxer==podsandbox", "labels.io.kubernetes.pod.name==web")
	if err != nil || len(list) != 1 || list[0].ID != "pod-1" {
		t.Fatalf("List by sandboxer and label: %+v %v", list, err)
	}
	_, err = s.List(ctx, "id==")
	wantErr(t, err, errdefs.IsInvalidArgument, "InvalidArgument", "id==")

	up, err := s.Update(ctx, sandboxes.Sandbox{ID: "pod-1", Labels: map[string]string{"state": "ready"}}, "labels.state")
	if err != nil {
		t.Fatal(err)
	}
	if up.Labels["state"] != "ready" || up.Labels["io.kubernetes.pod.name"] != "web" || up.Spec == nil || up.UpdatedAt.Before(created.UpdatedAt) {
		t.Fatalf("after update: %+v", up)
	}
	_, err = s.Update(ctx, sandboxes.Sandbox{ID: "pod-9"}, "labels")
	wantErr(t, err, errdefs.IsNotFound, "NotFound", `"pod-9"`)

	if err := s.Delete(ctx, "pod-1"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, s.Delete(ctx, "pod-1"), errdefs.IsNotFound, "NotFound", `"pod-1"`)

	// The events of pod-1, in order, in the client's namespace.
	var topics []string
	for len(topics) < 3 {
		select {
		case e := <-evs:
			v, err := typeurl.UnmarshalAny(e.Event)
			if err != nil {
				t.Fatalf("event %s: %v", e.Topic, err)
			}
			var id string
			if v, ok := v.(interface{ GetSandboxID() string }); ok {
				id = v.GetSandboxID()
			}
			if strings.HasPrefix(id, "warm-") {
				continue
			}
			if id != "pod-1" || e.Namespace != "test" {
				t.Fatalf("event %s in %q for %q (%T)", e.Topic, e.Namespace, id, v)
			}
			if e.Topic == "/sandboxes/update" {
				if u, ok := v.(*types.Sandbox); !ok || u.Labels["state"] != "ready" {
					t.Fatalf("update event %#v", v)
				}
			}
			topics = append(topics, e.Topic)
		case err := <-errs:
			t.Fatalf("subscription failed: %v", err)
		case <-ctx.Done():
			t.Fatalf("events so far %v: %v", topics, ctx.Err())
		}
	}
	if want := "/sandboxes/create /sandboxes/update /sandboxes/delete"; strings.Join(topics, " ") != want {
		t.Fatalf("events %v, want %s", topics, want)
	}
}

// The some* types stand in for a service the test never calls.
type (
	someContent       struct{ content.Store }
	someImages        struct{ images.Store }
	someContainers    struct{ containers.Store }
	someNamespaces    struct{ namespaces.Store }
	someLeases        struct{ leases.Manager }
	someSnapshots     struct{ client.SnapshotterSource }
	someDiff          struct{ client.DiffService }
	someEvents        struct{ client.EventService }
	someTasks         struct{ tasksapi.TasksClient }
	someIntrospection struct {
		introspectionapi.IntrospectionClient
	}
)

// TestSandboxStoreWithoutService: a client whose services were put
// together without a sandbox store answers NotImplemented, naming the
// sandbox, instead of failing on a nil store.
func TestSandboxStoreWithoutService(t *testing.T) {
	c, err := client.NewWithServices(client.Services{
		Content: someContent{}, Images: someImages{}, Containers: someContainers{}, Namespaces: someNamespaces{},
		Leases: someLeases{}, Snapshotters: someSnapshots{}, Diff: someDiff{}, Events: someEvents{},
		Tasks: someTasks{}, Introspection: someIntrospection{},
	})
	if err == nil {
		_, err = c.SandboxStore().Get(testCtx(t), "pod-1")
	}
	wantErr(t, err, errdefs.IsNotImplemented, "NotImplemented", `"pod-1"`)
}
