package manager

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestExpand(t *testing.T) {
	active := []ActiveMount{{MountPoint: "/m0"}, {MountPoint: "/m1"}, {MountPoint: "/m2"}}
	active[1].Source, active[1].Target = "/src1", "t1"
	for in, want := range map[string]string{
		"plain":                         "plain",
		"lowerdir={{ overlay 2 0 }}":    "lowerdir=/m2:/m1:/m0",
		"lowerdir={{overlay 0 1}},x":    "lowerdir=/m0:/m1,x",
		"{{ mount 1 }}/{{ source 1 }}":  "/m1//src1",
		"{{ target 1 }}{{ mount 0 }}{{": "",
		"{{ mount 3 }}":                 "",
		"{{ overlay 0 3 }}":             "",
		"{{ }}":                         "",
		"{{ mount -1 }}":                "",
		"{{ mount 0 1 }}":               "",
		"{{ exec 0 }}":                  "",
		"a{{ overlay 1 1 }}b":           "a/m1b",
	} {
		got, err := expand(in, active)
		if want == "" {
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("expand(%q) = %q, %v: want InvalidArgument", in, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("expand(%q) = %q, %v: want %q", in, got, err, want)
		}
	}
}

func FuzzExpand(f *testing.F) {
	for _, s := range []string{"lowerdir={{ overlay 2 0 }}", "{{ mount 1 }}", "{{", "}}{{ source 0 }}", "{{ overlay 0 9999999999999999999 }}", "{{ target -1 }}"} {
		f.Add(s)
	}
	active := []ActiveMount{{MountPoint: "/a"}, {MountPoint: "/b"}, {MountPoint: "/c"}}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := expand(s, active)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("expand(%q): error of another class: %v", s, err)
			}
			return
		}
		if !strings.Contains(s, "{{") && got != s {
			t.Fatalf("expand(%q) changed text without templates: %q", s, got)
		}
	})
}

func TestParseBlockOptions(t *testing.T) {
	o, err := parseBlockOptions([]string{"ro", "loop", "noexec", "exec", "X-containerd.mkdir.path=/x", "errors=remount-ro", "defaults"})
	if err != nil || o.flags != flagRdonly || !o.loop || len(o.data) != 1 || o.data[0] != "errors=remount-ro" {
		t.Errorf("parse: %+v %v", o, err)
	}
	if _, err := parseBlockOptions([]string{"a,b"}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("option with a comma: %v", err)
	}
}

func FuzzParseBlockOptions(f *testing.F) {
	f.Add("ro,loop,noatime,data=ordered")
	f.Add("rw\x00x,suid")
	f.Fuzz(func(t *testing.T, s string) {
		o, err := parseBlockOptions(strings.Split(s, ";"))
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("error of another class: %v", err)
			}
			return
		}
		for _, d := range o.data {
			if strings.ContainsAny(d, ",\x00") {
				t.Fatalf("data %q would be split by the kernel", d)
			}
		}
	})
}

func TestParseMkdir(t *testing.T) {
	s, err := parseMkdir("/a/b:0755:1:2")
	if err != nil || s.dir != "/a/b" || s.mode != 0o755 || s.uid != 1 || s.gid != 2 {
		t.Errorf("parse: %+v %v", s, err)
	}
	for _, bad := range []string{"rel", "/a:9", "/a:0755:1", "/a:01777", "/a:0755:x:1", "/a:0755:1:-2"} {
		if _, err := parseMkdir(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("parseMkdir(%q): %v", bad, err)
		}
	}
}

func FuzzParseMkdir(f *testing.F) {
	for _, s := range []string{"/a/b", "/a:0700", "/a:0755:0:0", "x:y:z:w", "/a:1777"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		s, err := parseMkdir(v)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("error of another class: %v", err)
			}
			return
		}
		if !strings.HasPrefix(s.dir, "/") || s.mode&^0o777 != 0 || s.uid < 0 || s.gid < 0 {
			t.Fatalf("parseMkdir(%q) accepted %+v", v, s)
		}
	})
}
