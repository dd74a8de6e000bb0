package server

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// listFixture is a Service with only the two indexes the lists read.
func listFixture() *Service {
	return &Service{sandboxes: newIndex[*sandbox]("pod sandbox"), containers: newIndex[*container]("container")}
}

func addTestSandbox(s *Service, id string, created int64, labels map[string]string) *sandbox {
	sb := &sandbox{
		rec:    sandboxRecord{ID: id, CreatedAt: created, RuntimeHandler: "runc"},
		config: &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: "pod-" + id}, Labels: labels},
		ready:  true, exited: make(chan struct{}),
	}
	s.sandboxes.add(id, sb)
	return sb
}

func addTestContainer(t *testing.T, s *Service, id, sandboxID string, created int64, labels map[string]string) *container {
	c := &container{
		dir: t.TempDir(),
		rec: containerRecord{ID: id, SandboxID: sandboxID, CreatedAt: created, ImageName: "busybox", ImageRef: "sha256:1"},
		config: &runtime.ContainerConfig{
			Metadata: &runtime.ContainerMetadata{Name: "c-" + id}, Labels: labels,
			Image: &runtime.ImageSpec{UserSpecifiedImage: "docker.io/busybox"},
		},
	}
	s.containers.add(id, c)
	return c
}

// listContainers lists with ListContainers and, to check that both answer
// alike, with ListContainersEncoded: every list test covers both.
func listContainers(t *testing.T, s *Service, f *runtime.ContainerFilter) []*runtime.Container {
	t.Helper()
	req := &runtime.ListContainersRequest{Filter: f}
	resp, err := s.ListContainers(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	wire, err := s.ListContainersEncoded(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	sameAnswer(t, resp, wire, new(runtime.ListContainersResponse))
	return resp.Containers
}

// listContainersEncoded lists with ListContainersEncoded alone, for lists
// that race state changes: what it decodes to is the list.
func listContainersEncoded(t *testing.T, s *Service, f *runtime.ContainerFilter) []*runtime.Container {
	t.Helper()
	wire, err := s.ListContainersEncoded(context.Background(), &runtime.ListContainersRequest{Filter: f})
	if err != nil {
		t.Fatal(err)
	}
	var resp runtime.ListContainersResponse
	if err := proto.Unmarshal(wire, &resp); err != nil {
		t.Fatal(err)
	}
	return resp.Containers
}

func listSandboxes(t *testing.T, s *Service, f *runtime.PodSandboxFilter) []*runtime.PodSandbox {
	t.Helper()
	req := &runtime.ListPodSandboxRequest{Filter: f}
	resp, err := s.ListPodSandbox(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	wire, err := s.ListPodSandboxEncoded(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	sameAnswer(t, resp, wire, new(runtime.ListPodSandboxResponse))
	return resp.Items
}

// sameAnswer fails unless wire, the encoded answer, decodes into decoded
// as resp, and is what encoding resp gives.
func sameAnswer(t *testing.T, resp proto.Message, wire []byte, decoded proto.Message) {
	t.Helper()
	if err := proto.Unmarshal(wire, decoded); err != nil {
		t.Fatalf("encoded answer: %v", err)
	}
	if !proto.Equal(decoded, resp) {
		t.Fatalf("encoded answer %v, answer %v", decoded, resp)
	}
	want, err := proto.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(wire, want) {
		t.Fatalf("encoded answer differs from the answer's encoding:\n%x\n%x", wire, want)
	}
}

func containerIDs(items []*runtime.Container) string {
	var out []string
	for _, c := range items {
		out = append(out, fmt.Sprintf("%s:%s", c.Id, c.State))
	}
	return fmt.Sprint(out)
}

func TestRelistSeesAContainerStateChangedJustBefore(t *testing.T) {
	s := listFixture()
	c := addTestContainer(t, s, "c1", "p1", 1, nil)
	first := listContainers(t, s, nil)
	if len(first) != 1 || first[0].State != runtime.ContainerState_CONTAINER_CREATED {
		t.Fatalf("created: %s", containerIDs(first))
	}
	for _, step := range []struct {
		change func(*containerStatus)
		want   runtime.ContainerState
	}{
		{func(st *containerStatus) { st.Starting = true }, runtime.ContainerState_CONTAINER_UNKNOWN},
		{func(st *containerStatus) { st.StartedAt, st.Starting = 10, false }, runtime.ContainerState_CONTAINER_RUNNING},
		{func(st *containerStatus) { st.FinishedAt = 20 }, runtime.ContainerState_CONTAINER_EXITED},
	} {
		before := listContainers(t, s, nil)[0]
		if err := c.update(step.change); err != nil {
			t.Fatal(err)
		}
		got := listContainers(t, s, nil)
		if len(got) != 1 || got[0].State != step.want {
			t.Fatalf("after the change to %s the list shows %s", step.want, containerIDs(got))
		}
		if before.State == step.want {
			t.Fatalf("the step to %s changed nothing", step.want)
		}
		// What was handed out before is not changed under its holder.
		if before.State == got[0].State || before == got[0] {
			t.Fatalf("the earlier item was modified in place: %v", before)
		}
	}
	// With nothing changed, the item is the one already made, whole.
	a, b := listContainers(t, s, nil)[0], listContainers(t, s, nil)[0]
	if a != b {
		t.Error("an unchanged container's item was made again")
	}
	if a.Id != "c1" || a.PodSandboxId != "p1" || a.GetMetadata().GetName() != "c-c1" || a.GetImage().GetImage() != "busybox" ||
		a.GetImage().GetUserSpecifiedImage() != "docker.io/busybox" || a.ImageRef != "sha256:1" || a.ImageId != "sha256:1" || a.CreatedAt != 1 {
		t.Errorf("item: %v", a)
	}
}

func TestRelistSeesASandboxStoppedJustBefore(t *testing.T) {
	s := listFixture()
	sb := addTestSandbox(s, "p1", 1, map[string]string{"app": "web"})
	ready := listSandboxes(t, s, nil)
	if len(ready) != 1 || ready[0].State != runtime.PodSandboxState_SANDBOX_READY {
		t.Fatalf("ready pod listed as %v", ready)
	}
	if again := listSandboxes(t, s, nil); again[0] != ready[0] {
		t.Error("an unchanged pod's item was made again")
	}
	sb.markExited()
	got := listSandboxes(t, s, nil)
	if len(got) != 1 || got[0].State != runtime.PodSandboxState_SANDBOX_NOTREADY {
		t.Fatalf("stopped pod listed as %v", got)
	}
	if ready[0].State != runtime.PodSandboxState_SANDBOX_READY {
		t.Error("the earlier item was modified in place")
	}
	if got[0].Id != "p1" || got[0].GetMetadata().GetName() != "pod-p1" || got[0].RuntimeHandler != "runc" || got[0].Labels["app"] != "web" {
		t.Errorf("item: %v", got[0])
	}
	notReady := &runtime.PodSandboxStateValue{State: runtime.PodSandboxState_SANDBOX_NOTREADY}
	if got := listSandboxes(t, s, &runtime.PodSandboxFilter{State: notReady}); len(got) != 1 {
		t.Errorf("state filter: %v", got)
	}
}

func TestListsAreNewestFirstAsObjectsComeAndGo(t *testing.T) {
	s := listFixture()
	addTestSandbox(s, "p-old", 1, nil)
	addTestSandbox(s, "p-new", 3, nil)
	addTestContainer(t, s, "c-b", "p-old", 2, nil)
	addTestContainer(t, s, "c-a", "p-old", 2, nil) // same time: by id
	addTestContainer(t, s, "c-new", "p-new", 5, nil)
	if got, want := containerIDs(listContainers(t, s, nil)), "[c-new:CONTAINER_CREATED c-a:CONTAINER_CREATED c-b:CONTAINER_CREATED]"; got != want {
		t.Fatalf("order %s, want %s", got, want)
	}
	// A list right after an add or a remove shows it, in its place.
	addTestContainer(t, s, "c-mid", "p-new", 3, nil)
	if got, want := containerIDs(listContainers(t, s, nil)), "[c-new:CONTAINER_CREATED c-mid:CONTAINER_CREATED c-a:CONTAINER_CREATED c-b:CONTAINER_CREATED]"; got != want {
		t.Fatalf("after an add: %s, want %s", got, want)
	}
	s.containers.remove("c-a")
	if got, want := containerIDs(listContainers(t, s, nil)), "[c-new:CONTAINER_CREATED c-mid:CONTAINER_CREATED c-b:CONTAINER_CREATED]"; got != want {
		t.Fatalf("after a remove: %s, want %s", got, want)
	}
	addTestSandbox(s, "p-newest", 9, nil)
	pods := listSandboxes(t, s, nil)
	if len(pods) != 3 || pods[0].Id != "p-newest" || pods[1].Id != "p-new" || pods[2].Id != "p-old" {
		t.Fatalf("pods: %v", pods)
	}
	s.sandboxes.remove("p-new")
	if pods := listSandboxes(t, s, nil); len(pods) != 2 || pods[1].Id != "p-old" {
		t.Fatalf("pods after a remove: %v", pods)
	}
}

func TestListContainersFilters(t *testing.T) {
	s := listFixture()
	web := map[string]string{"app": "web"}
	addTestContainer(t, s, "aaa1", "pod1", 1, web)
	running := addTestContainer(t, s, "aab2", "pod2", 2, web)
	addTestContainer(t, s, "bbb3", "pod1", 3, map[string]string{"app": "db"})
	if err := running.update(func(st *containerStatus) { st.StartedAt = 1 }); err != nil {
		t.Fatal(err)
	}
	isRunning := &runtime.ContainerStateValue{State: runtime.ContainerState_CONTAINER_RUNNING}
	for _, tc := range []struct {
		f    *runtime.ContainerFilter
		want string
	}{
		{&runtime.ContainerFilter{Id: "aa"}, "[aab2:CONTAINER_RUNNING aaa1:CONTAINER_CREATED]"},
		{&runtime.ContainerFilter{PodSandboxId: "pod1"}, "[bbb3:CONTAINER_CREATED aaa1:CONTAINER_CREATED]"},
		{&runtime.ContainerFilter{State: isRunning}, "[aab2:CONTAINER_RUNNING]"},
		{&runtime.ContainerFilter{LabelSelector: web}, "[aab2:CONTAINER_RUNNING aaa1:CONTAINER_CREATED]"},
		{&runtime.ContainerFilter{PodSandboxId: "pod1", LabelSelector: web}, "[aaa1:CONTAINER_CREATED]"},
		{&runtime.ContainerFilter{Id: "zz"}, "[]"},
	} {
		if got := containerIDs(listContainers(t, s, tc.f)); got != tc.want {
			t.Errorf("filter %v: %s, want %s", tc.f, got, tc.want)
		}
	}
}

// Lists racing state changes and adds: every list made after a change
// returned shows it (run with -race for the sharing itself).
func TestRelistsRacingChanges(t *testing.T) {
	s := listFixture()
	var cs []*container
	for i := range 8 {
		cs = append(cs, addTestContainer(t, s, fmt.Sprintf("c%d", i), "p", int64(i), nil))
	}
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := range 50 {
				c := cs[w*4+i%4] // each worker changes its own
				if err := c.update(func(st *containerStatus) { st.StartedAt, st.FinishedAt = int64(i+1), int64(i%2) }); err != nil {
					t.Error(err)
					return
				}
				want := c.state()
				for _, item := range append(listContainers(t, s, &runtime.ContainerFilter{Id: c.rec.ID}),
					listContainersEncoded(t, s, &runtime.ContainerFilter{Id: c.rec.ID})...) {
					if item.State != want {
						t.Errorf("%s listed as %s just after it became %s", c.rec.ID, item.State, want)
						return
					}
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 20 {
			addTestContainer(t, s, fmt.Sprintf("extra%d", i), "p", int64(100+i), nil)
			if n := len(listContainersEncoded(t, s, nil)); n != 8+i+1 {
				t.Errorf("after adding %d: %d listed encoded", i+1, n)
				return
			}
			if n := len(listContainers(t, s, &runtime.ContainerFilter{Id: fmt.Sprintf("extra%d", i)})); n != 1 {
				t.Errorf("after adding extra%d: %d listed", i, n)
				return
			}
		}
	})
	wg.Wait()
}

// TestUnchangedRelistIsNotEncodedAgain: an unfiltered encoded list whose
// items did not change is the last one's bytes, and one change makes it
// new bytes showing the change.
func TestUnchangedRelistIsNotEncodedAgain(t *testing.T) {
	s := listFixture()
	c := addTestContainer(t, s, "c1", "p1", 1, nil)
	addTestContainer(t, s, "c2", "p1", 2, nil)
	ctx := context.Background()
	list := func() []byte {
		b, err := s.ListContainersEncoded(ctx, &runtime.ListContainersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, b := list(), list()
	if &a[0] != &b[0] {
		t.Error("an unchanged relist was encoded again")
	}
	before := append([]byte(nil), a...)
	if err := c.update(func(st *containerStatus) { st.StartedAt = 10 }); err != nil {
		t.Fatal(err)
	}
	after := list()
	if &after[0] == &a[0] || !bytes.Equal(a, before) {
		t.Fatal("a changed relist reused or rewrote the last answer")
	}
	listContainers(t, s, nil) // checks it against ListContainers
	// A filtered list neither uses nor replaces the unfiltered answer.
	if _, err := s.ListContainersEncoded(ctx, &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{Id: "c2"}}); err != nil {
		t.Fatal(err)
	}
	if again := list(); &again[0] != &after[0] {
		t.Error("a filtered list displaced the unfiltered answer")
	}
}
