package task

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/core/mount"
)

func TestPrepareIDMappedMounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	bundle, src := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "secret"), []byte("token"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(file, []byte("127.0.0.1 localhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := `{"ociVersion":"1.1.0","x-unknown":{"big":12345678901234567890},"mounts":[
		{"destination":"/proc","type":"proc","source":"proc"},
		{"destination":"/vol","type":"bind","source":"` + src + `","options":["rbind","ro"],
		 "uidMappings":[{"containerID":0,"hostID":100000,"size":65536}],"gidMappings":[{"containerID":0,"hostID":200000,"size":65536}]},
		{"destination":"/etc/hosts","type":"bind","source":"` + file + `","options":["bind"],
		 "uidMappings":[{"containerID":0,"hostID":100000,"size":65536}],"gidMappings":[{"containerID":0,"hostID":200000,"size":65536}]}]}`
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	detach, err := prepareIDMappedMounts(bundle, []byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	if detach == nil {
		t.Fatal("nothing idmapped")
	}
	out, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "uidMappings") || strings.Contains(string(out), "gidMappings") {
		t.Errorf("rewritten spec still has mappings: %s", out)
	}
	if !strings.Contains(string(out), `"big":12345678901234567890`) {
		t.Errorf("rewritten spec lost a field it does not know: %s", out)
	}
	var doc struct {
		Mounts []struct{ Destination, Source string } `json:"mounts"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	for _, m := range doc.Mounts[1:] {
		if filepath.Dir(m.Source) != filepath.Join(bundle, idmapDir) {
			t.Errorf("mount %s now from %s, want a path in the bundle's %s", m.Destination, m.Source, idmapDir)
		}
		var st syscall.Stat_t
		p := m.Source
		if m.Destination == "/vol" {
			p = filepath.Join(p, "secret")
		}
		if err := syscall.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != 100000 || st.Gid != 200000 {
			t.Errorf("%s shows as %d:%d, want 100000:200000", p, st.Uid, st.Gid)
		}
	}
	if doc.Mounts[0].Source != "proc" {
		t.Errorf("a mount without mappings changed: %+v", doc.Mounts[0])
	}
	detach()
	if left, _ := mount.MountedUnder(bundle); len(left) > 0 {
		t.Errorf("mounts left after detach: %v", left)
	}
	if _, err := os.Stat(filepath.Join(bundle, idmapDir)); !os.IsNotExist(err) {
		t.Errorf("%s left after detach: %v", idmapDir, err)
	}
}

func TestPrepareIDMappedMountsRefuses(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	for name, m := range map[string]string{
		"tmpfs":      `{"destination":"/t","type":"tmpfs","source":"tmpfs","uidMappings":[{"containerID":0,"hostID":1,"size":1}],"gidMappings":[{"containerID":0,"hostID":1,"size":1}]}`,
		"uids alone": `{"destination":"/b","type":"bind","source":"/tmp","options":["rbind"],"uidMappings":[{"containerID":0,"hostID":1,"size":1}]}`,
		"zero size":  `{"destination":"/b","type":"bind","source":"/tmp","options":["rbind"],"uidMappings":[{"containerID":0,"hostID":1,"size":0}],"gidMappings":[{"containerID":0,"hostID":1,"size":1}]}`,
		"bad number": `{"destination":"/b","type":"bind","source":"/tmp","options":["rbind"],"uidMappings":[{"containerID":-1,"hostID":1,"size":1}],"gidMappings":[{"containerID":0,"hostID":1,"size":1}]}`,
	} {
		bundle := t.TempDir()
		_, err := prepareIDMappedMounts(bundle, []byte(`{"mounts":[`+m+`]}`))
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: err = %v, want InvalidArgument", name, err)
		}
		if left, _ := mount.MountedUnder(bundle); len(left) > 0 {
			t.Errorf("%s: mounts left: %v", name, left)
		}
	}
}
