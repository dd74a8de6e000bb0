package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/testimage"
)

// ctrRunner is a daemon ctr can talk to: hulld or Debian's containerd.
type ctrRunner interface {
	Ctr(t testing.TB, stdin []byte, args ...string) string
}

// busyboxImage builds the busybox test image (Debian's busybox-static).
func busyboxImage(t *testing.T) *testimage.Image {
	t.Helper()
	files, err := testimage.BusyboxFiles()
	if err != nil {
		t.Fatalf("busybox test image (make test installs busybox-static): %v", err)
	}
	return testimage.New([]string{"/bin/sh"}, files)
}

// importWithCtr imports img as ref into namespace ns of d with ctr, which
// also unpacks it into ctr's default snapshotter (overlayfs).
func importWithCtr(t *testing.T, d ctrRunner, ns, ref string, img *testimage.Image) {
	t.Helper()
	var archive bytes.Buffer
	if err := testimage.WriteOCIArchive(&archive, ref, img); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "image.tar")
	if err := os.WriteFile(path, archive.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	d.Ctr(t, nil, "-n", ns, "images", "import", path)
}

// TestContainersCtr drives hulld's containers service with Debian's ctr:
// create (which prepares the root filesystem snapshot client-side), ls,
// info, label, rm; and checks that the container keeps its snapshot when its
// image is deleted.
func TestContainersCtr(t *testing.T) {
	hulltest.RequireCtr(t)
	d := hulltest.Start(t, hulltest.Options{})
	c, ctx := newClient(t, d, "ctrs")
	ref := "example.test/busybox:1"
	importWithCtr(t, d, "ctrs", ref, busyboxImage(t))

	// Subscribed before the first create, and only once the daemon
	// delivers to the subscription, so that no event is missed.
	evs, errs := hulltest.SubscribeReady(t, ctx, c.EventService(), `topic~="^/containers/"`)
	d.Ctr(t, nil, "-n", "ctrs", "containers", "create", "--label", "tier=web", ref, "c1")
	d.Ctr(t, nil, "-n", "ctrs", "containers", "create", ref, "c2")
	out := d.Ctr(t, nil, "-n", "ctrs", "containers", "ls")
	for _, want := range []string{"c1", "c2", ref, "io.containerd.runc.v2"} {
		if !strings.Contains(out, want) {
			t.Fatalf("containers ls lacks %q:\n%s", want, out)
		}
	}
	if out := d.Ctr(t, nil, "-n", "ctrs", "containers", "ls", "-q", "labels.tier==web"); strings.TrimSpace(out) != "c1" {
		t.Fatalf("containers ls labels.tier==web:\n%s", out)
	}
	var info struct {
		ID          string
		Labels      map[string]string
		Image       string
		Runtime     struct{ Name string }
		SnapshotKey string
		Snapshotter string
		Spec        json.RawMessage
	}
	raw := d.Ctr(t, nil, "-n", "ctrs", "containers", "info", "c1")
	if err := json.Unmarshal([]byte(raw), &info); err != nil {
		t.Fatalf("containers info is not JSON: %v\n%s", err, raw)
	}
	if info.ID != "c1" || info.Image != ref || info.Labels["tier"] != "web" || info.Runtime.Name != "io.containerd.runc.v2" ||
		info.SnapshotKey != "c1" || info.Snapshotter == "" || !bytes.Contains(info.Spec, []byte(`"/bin/sh"`)) {
		t.Fatalf("containers info:\n%s", raw)
	}
	d.Ctr(t, nil, "-n", "ctrs", "containers", "label", "c1", "stage=test", "tier=")
	raw = d.Ctr(t, nil, "-n", "ctrs", "containers", "info", "c1")
	info.Labels = nil
	if err := json.Unmarshal([]byte(raw), &info); err != nil {
		t.Fatalf("containers info after label is not JSON: %v\n%s", err, raw)
	}
	if info.Labels["stage"] != "test" || info.Labels["tier"] != "" {
		t.Fatalf("labels after containers label: %v", info.Labels)
	}
	if out := d.Ctr(t, nil, "-n", "ctrs", "containers", "ls", "-q", "labels.stage==test"); strings.TrimSpace(out) != "c1" {
		t.Fatalf("containers ls labels.stage==test:\n%s", out)
	}

	// ctr prepares the snapshot under a lease it drops once the container
	// exists; the container alone must keep it, also without its image.
	for _, id := range strings.Fields(d.Ctr(t, nil, "-n", "ctrs", "leases", "ls", "-q")) {
		d.Ctr(t, nil, "-n", "ctrs", "leases", "rm", id)
	}
	d.Ctr(t, nil, "-n", "ctrs", "images", "rm", "--sync", ref)
	snaps := d.Ctr(t, nil, "-n", "ctrs", "snapshots", "--snapshotter", info.Snapshotter, "ls")
	if !strings.Contains(snaps, "c1 ") || !strings.Contains(snaps, "c2 ") || !strings.Contains(snaps, "Committed") {
		t.Fatalf("snapshots after the image was deleted:\n%s", snaps)
	}

	d.Ctr(t, nil, "-n", "ctrs", "containers", "rm", "c1", "c2")
	if out := d.Ctr(t, nil, "-n", "ctrs", "containers", "ls", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("containers left after rm:\n%s", out)
	}
	// gc runs shortly after the deletes: every snapshot goes.
	hulltest.Eventually(t, 10*time.Second, "gc to remove the snapshots of the removed containers", func() error {
		snaps := d.Ctr(t, nil, "-n", "ctrs", "snapshots", "--snapshotter", info.Snapshotter, "ls")
		if len(strings.Split(strings.TrimSpace(snaps), "\n")) != 1 {
			return fmt.Errorf("snapshots left:\n%s", snaps)
		}
		return nil
	})
	if out, err := d.CtrErr(nil, "-n", "ctrs", "containers", "info", "c1"); err == nil || !strings.Contains(out, "not found") {
		t.Fatalf("containers info of a removed container: %v\n%s", err, out)
	}

	want := []string{"/containers/create", "/containers/create", "/containers/update", "/containers/delete", "/containers/delete"}
	var got []string
	timeout := time.After(10 * time.Second)
	for len(got) < len(want) {
		select {
		case env := <-evs:
			got = append(got, env.Topic)
		case err := <-errs:
			t.Fatalf("event stream: %v", err)
		case <-timeout:
			t.Fatalf("events %v, want %v", got, want)
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("events %v, want %v", got, want)
	}
}

// TestContainersAPIBadInput checks codes and messages of the containers
// service as they travel on the wire.
func TestContainersAPIBadInput(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	cs := containersapi.NewContainersClient(dial(t, d))
	ctx := nsCtx("bad")
	spec := &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec", Value: []byte(`{}`)}
	good := func(id string) *containersapi.Container {
		return &containersapi.Container{ID: id, Spec: spec, Runtime: &containersapi.Container_Runtime{Name: "io.containerd.runc.v2"}, Labels: map[string]string{"app": id}}
	}
	if _, err := cs.Create(ctx, &containersapi.CreateContainerRequest{Container: good("a")}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Create(ctx, &containersapi.CreateContainerRequest{Container: good("b")}); err != nil {
		t.Fatal(err)
	}
	_, err := cs.Create(ctx, &containersapi.CreateContainerRequest{Container: good("a")})
	wantCode(t, "duplicate id", err, codes.AlreadyExists, `"a"`)
	noSpec := good("c")
	noSpec.Spec = nil
	_, err = cs.Create(ctx, &containersapi.CreateContainerRequest{Container: noSpec})
	wantCode(t, "missing spec", err, codes.InvalidArgument, `"c"`, "spec")
	noRuntime := good("c")
	noRuntime.Runtime = nil
	_, err = cs.Create(ctx, &containersapi.CreateContainerRequest{Container: noRuntime})
	wantCode(t, "missing runtime", err, codes.InvalidArgument, `"c"`, "runtime")
	_, err = cs.Create(ctx, &containersapi.CreateContainerRequest{Container: good("bad/id")})
	wantCode(t, "invalid id", err, codes.InvalidArgument, `"bad/id"`)
	_, err = cs.Create(ctx, &containersapi.CreateContainerRequest{})
	wantCode(t, "no container", err, codes.InvalidArgument, "empty")
	_, err = cs.Get(ctx, &containersapi.GetContainerRequest{ID: "nope"})
	wantCode(t, "unknown id", err, codes.NotFound, `"nope"`)
	_, err = cs.Delete(ctx, &containersapi.DeleteContainerRequest{ID: "nope"})
	wantCode(t, "delete of unknown id", err, codes.NotFound, `"nope"`)
	_, err = cs.Update(ctx, &containersapi.UpdateContainerRequest{Container: good("nope")})
	wantCode(t, "update of unknown id", err, codes.NotFound, `"nope"`)
	_, err = cs.Update(ctx, &containersapi.UpdateContainerRequest{Container: &containersapi.Container{ID: "a", Snapshotter: "native"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"snapshotter"}}})
	wantCode(t, "snapshotter change", err, codes.InvalidArgument, "snapshotter", `"a"`)
	_, err = cs.Update(ctx, &containersapi.UpdateContainerRequest{Container: &containersapi.Container{ID: "a"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"owner"}}})
	wantCode(t, "unknown field", err, codes.InvalidArgument, `"owner"`)
	_, err = cs.List(ctx, &containersapi.ListContainersRequest{Filters: []string{"id~=("}})
	wantCode(t, "bad filter", err, codes.InvalidArgument)
	_, err = cs.Get(nsCtx("bad/ns"), &containersapi.GetContainerRequest{ID: "a"})
	wantCode(t, "bad namespace", err, codes.InvalidArgument, "bad/ns")

	// Update through a mask, then List and ListStream with filters.
	up, err := cs.Update(ctx, &containersapi.UpdateContainerRequest{
		Container:  &containersapi.Container{ID: "b", Image: "img:2", Labels: map[string]string{"extra": "x"}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"image", "labels.extra"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if c := up.Container; c.Image != "img:2" || c.Labels["app"] != "b" || c.Labels["extra"] != "x" || c.Spec.GetTypeUrl() != spec.TypeUrl {
		t.Fatalf("after update: %v", c)
	}
	list, err := cs.List(ctx, &containersapi.ListContainersRequest{Filters: []string{"image==img:2", "labels.app==a"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Containers) != 2 {
		t.Fatalf("list with filters: %v", list.Containers)
	}
	stream, err := cs.ListStream(ctx, &containersapi.ListContainersRequest{Filters: []string{"labels.extra"}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for {
		m, err := stream.Recv()
		if err != nil {
			break
		}
		ids = append(ids, m.Container.ID)
	}
	if strings.Join(ids, ",") != "b" {
		t.Fatalf("ListStream labels.extra: %v", ids)
	}
}
