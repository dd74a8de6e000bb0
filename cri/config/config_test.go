package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestDefaultsValidate(t *testing.T) {
	if err := DefaultRuntime().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := DefaultImages().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := DefaultServer().Validate(); err != nil {
		t.Fatal(err)
	}
	if got := DefaultServer().StreamServerAddress; got != "127.0.0.1" {
		t.Fatalf("stream server address defaults to %q: it must be loopback", got)
	}
}

func TestCNIBinDirs(t *testing.T) {
	c := DefaultRuntime().CNI
	if got := c.CNIBinDirs(); len(got) != 1 || got[0] != "/opt/cni/bin" {
		t.Fatalf("default: %v", got)
	}
	c.BinDir = "/usr/lib/cni" // a containerd 2.0 file
	if got := c.CNIBinDirs(); len(got) != 1 || got[0] != "/usr/lib/cni" {
		t.Fatalf("bin_dir: %v", got)
	}
	c.BinDirs = []string{"/a", "/b"}
	if got := c.CNIBinDirs(); len(got) != 2 || got[0] != "/a" {
		t.Fatalf("bin_dirs wins: %v", got)
	}
}

func TestValidateNamesTheBadValue(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Runtime, *Images, *Server)
		want   string
	}{
		{"default handler", func(r *Runtime, _ *Images, _ *Server) { r.Containerd.DefaultRuntimeName = "kata" }, `"kata"`},
		{"handler type", func(r *Runtime, _ *Images, _ *Server) {
			r.Containerd.Runtimes["runc"] = RuntimeHandler{}
		}, "runtimes.runc.runtime_type"},
		{"relative shim", func(r *Runtime, _ *Images, _ *Server) {
			r.Containerd.Runtimes["runc"] = RuntimeHandler{RuntimeType: "x", RuntimePath: "bin/shim"}
		}, `"bin/shim"`},
		{"cgroup driver", func(r *Runtime, _ *Images, _ *Server) { r.CgroupDriver = "cgroupv3" }, `"cgroupv3"`},
		{"seccomp", func(r *Runtime, _ *Images, _ *Server) { r.UnsetSeccompProfile = "strict" }, `"strict"`},
		{"drain", func(r *Runtime, _ *Images, _ *Server) { r.DrainExecSyncIOTimeout = "soon" }, `"soon"`},
		{"ip pref", func(r *Runtime, _ *Images, _ *Server) { r.CNI.IPPref = "ipv5" }, `"ipv5"`},
		{"exec cap", func(r *Runtime, _ *Images, _ *Server) { r.ExecSyncMaxOutput = -1 }, "-1"},
		{"pull timeout", func(_ *Runtime, i *Images, _ *Server) { i.ImagePullProgressTimeout = "-5s" }, `"-5s"`},
		{"sandbox image", func(_ *Runtime, i *Images, _ *Server) { delete(i.PinnedImages, "sandbox") }, "pinned_images.sandbox"},
		{"stream port", func(_ *Runtime, _ *Images, s *Server) { s.StreamServerPort = "70000" }, `"70000"`},
		{"stream address", func(_ *Runtime, _ *Images, s *Server) { s.StreamServerAddress = "no such host.invalid" }, `"no such host.invalid"`},
		{"half a key pair", func(_ *Runtime, _ *Images, s *Server) {
			s.EnableTLSStreaming, s.X509KeyPairStreaming.TLSCertFile = true, "/etc/cert.pem"
		}, "tls_key_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, i, s := DefaultRuntime(), DefaultImages(), DefaultServer()
			tc.mutate(r, i, s)
			err := errors.Join(r.Validate(), i.Validate(), s.Validate())
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want InvalidArgument naming %s", err, tc.want)
			}
		})
	}
}
