package integration

import (
	"os/exec"
	"strings"
	"testing"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/hullrt/hull/internal/hulltest"
)

// errCtr runs containerd 2.4.2's ctr against address and returns its output
// without the cgroup v1 deprecation notice it prints on this host.
func errCtr(t *testing.T, address string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(hulltest.Containerd2Bin(t, "ctr"), append([]string{"--address", address, "--timeout", "60s"}, args...)...).CombinedOutput()
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if !strings.Contains(l, "DEPRECATION") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n"), err
}

const noDigest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"

// containerd 2.x's ctr prints the server's message as it is, so hulld's
// messages must say their class as containerd's do. The same commands run
// against containerd 2.4.2 and hulld; where hull's words for the object are
// containerd's, the whole line must be the same, and every line ends with
// the class once.
func TestErrors2CtrMessages(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	c := hulltest.StartContainerdWith(t, "", hulltest.ContainerdOptions{Binary: hulltest.Containerd2Bin(t, "containerd")})
	for _, tc := range []struct {
		args []string
		// same: hulld's line is containerd's; otherwise it must name
		// what and end with the class.
		same bool
		what string
	}{
		{[]string{"containers", "info", "nosuch"}, false, `container "nosuch"`},
		{[]string{"leases", "rm", "nosuch"}, true, `lease "nosuch"`},
		{[]string{"content", "get", noDigest}, false, noDigest},
		{[]string{"snapshots", "info", "nosuch"}, false, "nosuch"},
		{[]string{"images", "label", "nosuch", "a=b"}, true, `image "nosuch"`},
		{[]string{"-n", "nosuch", "images", "check"}, true, ""},
	} {
		name := strings.Join(tc.args, " ")
		want, werr := errCtr(t, c.Address, tc.args...)
		got, gerr := errCtr(t, d.Address, tc.args...)
		if (werr == nil) != (gerr == nil) {
			t.Errorf("%s: hulld's error %v, containerd's %v\nhulld: %s\ncontainerd: %s", name, gerr, werr, got, want)
			continue
		}
		if werr == nil {
			continue
		}
		if tc.same && got != want {
			t.Errorf("%s:\nhulld:      %s\ncontainerd: %s", name, got, want)
		}
		if !strings.HasSuffix(got, ": not found") || strings.Contains(got, "not found: not found") || !strings.Contains(got, tc.what) {
			t.Errorf("%s: hulld's message %q does not name %s and end with the class once (containerd: %q)", name, got, tc.what, want)
		}
	}
}

// containerd 2.4.2's ctr sees namespaces as containerd 2.x answers them:
// label creates a missing namespace, an invalid name is refused naming
// it, and rm takes a namespace holding only a lease, refusing one that
// holds a container with containerd's words.
func TestErrors2CtrNamespaces(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	run := func(args ...string) string {
		t.Helper()
		out, err := errCtr(t, d.Address, args...)
		if err != nil {
			t.Fatalf("ctr %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	run("namespaces", "create", "made", "a=1")
	run("namespaces", "label", "fresh", "b=2")
	if out := run("namespaces", "ls"); !strings.Contains(out, "made") || !strings.Contains(out, "a=1") ||
		!strings.Contains(out, "fresh") || !strings.Contains(out, "b=2") {
		t.Fatalf("namespaces:\n%s", out)
	}
	out, err := errCtr(t, d.Address, "namespaces", "label", "bad/name", "b=2")
	if err == nil || !strings.Contains(out, `"bad/name"`) || !strings.HasSuffix(out, ": invalid argument") {
		t.Fatalf("label of an invalid name: %v\n%s", err, out)
	}
	run("-n", "fresh", "leases", "create", "l1")
	run("namespaces", "rm", "fresh")
	if out := run("namespaces", "ls"); strings.Contains(out, "fresh") {
		t.Fatalf("fresh outlived rm:\n%s", out)
	}
	cs := containersapi.NewContainersClient(dial(t, d))
	spec := &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec", Value: []byte(`{}`)}
	if _, err := cs.Create(nsCtx("made"), &containersapi.CreateContainerRequest{Container: &containersapi.Container{ID: "c1", Spec: spec,
		Runtime: &containersapi.Container_Runtime{Name: "io.containerd.runc.v2"}}}); err != nil {
		t.Fatal(err)
	}
	out, err = errCtr(t, d.Address, "namespaces", "rm", "made")
	if want := `namespace "made" must be empty, but it still has containers: failed precondition`; !strings.Contains(out, want) {
		t.Fatalf("rm of a namespace with a container: %v\n%s\nwant %s", err, out, want)
	}
	if _, err := cs.Delete(nsCtx("made"), &containersapi.DeleteContainerRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	run("namespaces", "rm", "made")
}
