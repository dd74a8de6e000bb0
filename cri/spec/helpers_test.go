package spec

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/client/oci"
	"github.com/hullrt/hull/core/containers"
	"github.com/hullrt/hull/core/namespaces"
)

func testCtx() context.Context {
	return namespaces.WithNamespace(context.Background(), "k8s.io")
}

// userRoot makes a root filesystem holding /etc/passwd and /etc/group.
func userRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	passwd := "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"
	group := "root:x:0:\nwheel:x:10:root\napp:x:1000:\naudio:x:29:app\nvideo:x:44:app,root\nnogroup:x:65534:\n"
	if err := os.WriteFile(filepath.Join(root, "etc/passwd"), []byte(passwd), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/group"), []byte(group), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// generate applies opts to the default spec of a container without a
// snapshot whose root is root.
func generate(t *testing.T, root, id string, opts []oci.SpecOpts) (*oci.Spec, error) {
	t.Helper()
	all := append([]oci.SpecOpts{func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		s.Root.Path = root
		return nil
	}}, opts...)
	return oci.GenerateSpec(testCtx(), nil, &containers.Container{ID: id}, all...)
}

func podConfig() *runtime.PodSandboxConfig {
	return &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "uid-1"},
		Hostname:     "web-host",
		LogDirectory: "/var/log/pods/default_web_uid-1",
		Linux: &runtime.LinuxPodSandboxConfig{
			CgroupParent:    "/kubepods/pod-uid-1",
			SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{}},
		},
	}
}

func pauseImage() ocispec.ImageConfig {
	return ocispec.ImageConfig{Entrypoint: []string{"/pause"}, Env: []string{"PATH=/bin"}, User: "65534:65534"}
}

func testSandbox() Sandbox {
	return Sandbox{ID: "sb1", Config: podConfig(), Image: pauseImage(), NetNSPath: "/var/run/netns/cni-1", ShmPath: "/run/hull/sb1/shm"}
}

func ctrConfig() *runtime.ContainerConfig {
	return &runtime.ContainerConfig{
		Metadata: &runtime.ContainerMetadata{Name: "app"},
		Image:    &runtime.ImageSpec{Image: "busybox"},
		Linux: &runtime.LinuxContainerConfig{
			SecurityContext: &runtime.LinuxContainerSecurityContext{NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER}},
			Resources:       &runtime.LinuxContainerResources{},
		},
	}
}

func appImage() ocispec.ImageConfig {
	return ocispec.ImageConfig{Entrypoint: []string{"/bin/sh"}, Cmd: []string{"-c", "true"}, Env: []string{"PATH=/usr/bin", "A=image"}, WorkingDir: "/work"}
}

func testContainer() Container {
	return Container{
		ID: "c1", Config: ctrConfig(), Image: appImage(), ImageName: "docker.io/library/busybox:latest",
		Sandbox: SandboxRef{ID: "sb1", Config: podConfig(), Pid: 4242, NetNSPath: "/var/run/netns/cni-1"},
	}
}

// cgroup1 is a host without the unified hierarchy, hugetlb or swap
// accounting, so that tests do not depend on the machine.
var cgroup1 = host{}

func mustSandbox(t *testing.T, sb Sandbox, o Options) *oci.Spec {
	t.Helper()
	opts, err := SandboxOpts(sb, o)
	if err != nil {
		t.Fatal(err)
	}
	s, err := generate(t, userRoot(t), sb.ID, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func containerSpec(t *testing.T, c Container, o Options, h host) (*oci.Spec, error) {
	t.Helper()
	opts, err := containerOpts(c, o, h)
	if err != nil {
		return nil, err
	}
	return generate(t, userRoot(t), c.ID, opts)
}

func mustContainer(t *testing.T, c Container, o Options) *oci.Spec {
	t.Helper()
	s, err := containerSpec(t, c, o, cgroup1)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// wantErr checks err is of class want and names each of names.
func wantErr(t *testing.T, err, want error, names ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", want)
	}
	if !errors.Is(err, want) {
		t.Fatalf("error %v is not %v", err, want)
	}
	for _, n := range names {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("error %q does not name %q", err, n)
		}
	}
}

var errInvalid = errdefs.ErrInvalidArgument
