package oci

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestParsePasswd(t *testing.T) {
	in := strings.Join([]string{
		"root:x:0:0:root:/root:/bin/sh",
		"# comment",
		"",
		"app:x:1000:1000::/home/app:/bin/sh\r",
		"emptyuid:x::0::/:/bin/sh",         // empty uid: must not become root
		"wordsuid:x:abc:0::/:/bin/sh",      // non-numeric uid
		"spaceuid:x: 0:0::/:/bin/sh",       // padded uid
		"neguid:x:-1:0::/:/bin/sh",         // negative
		"biguid:x:4294967295:0::/:/bin/sh", // above 2^31-1
		"badgid:x:5:zz::/:/bin/sh",
		"short:x:7",
		":x:8:8::/:/bin/sh",
		"+nis::0:0:::",
		"min:x:2147483647:2147483647",
	}, "\n")
	got, err := parsePasswd(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []passwdEntry{{"root", 0, 0}, {"app", 1000, 1000}, {"min", 2147483647, 2147483647}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestParseGroup(t *testing.T) {
	in := "root:x:0:\napp:x:1000:\nextra:x:2000:app, other\nempty:x::app\nbad:x:x1:app\nthird:x:3000:other,app\nnomembers:x:4000\n"
	got, err := parseGroup(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []groupEntry{
		{Name: "root", GID: 0}, {Name: "app", GID: 1000},
		{Name: "extra", GID: 2000, Members: []string{"app", "other"}},
		{Name: "third", GID: 3000, Members: []string{"other", "app"}},
		{Name: "nomembers", GID: 4000},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestParseTooLarge(t *testing.T) {
	big := strings.Repeat("a", maxUserFileSize+10)
	if _, err := parsePasswd(strings.NewReader(big)); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("got %v, want InvalidArgument", err)
	}
}

func TestParseUserSpec(t *testing.T) {
	good := map[string]userSpec{
		"app":        {User: idOrName{Name: "app"}},
		"0":          {User: idOrName{Numeric: true}},
		"1000":       {User: idOrName{ID: 1000, Numeric: true}},
		"1000:2000":  {User: idOrName{ID: 1000, Numeric: true}, Group: idOrName{ID: 2000, Numeric: true}, HasGroup: true},
		"app:staff":  {User: idOrName{Name: "app"}, Group: idOrName{Name: "staff"}, HasGroup: true},
		"1000:staff": {User: idOrName{ID: 1000, Numeric: true}, Group: idOrName{Name: "staff"}, HasGroup: true},
		"app:50":     {User: idOrName{Name: "app"}, Group: idOrName{ID: 50, Numeric: true}, HasGroup: true},
		"2147483647": {User: idOrName{ID: 2147483647, Numeric: true}},
		"1e3":        {User: idOrName{Name: "1e3"}},
	}
	for in, want := range good {
		got, err := parseUserSpec(in)
		if err != nil || got != want {
			t.Errorf("parseUserSpec(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", ":", "app:", ":app", "-1", "+5", "1000:-1", "2147483648", "4294967295", "4294967296",
		"99999999999999999999", "a:b:c", "0:4294967296"} {
		_, err := parseUserSpec(in)
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("parseUserSpec(%q): got %v, want InvalidArgument", in, err)
			continue
		}
		if in != "" && !strings.Contains(err.Error(), fmt.Sprintf("%q", in)) {
			t.Errorf("parseUserSpec(%q): error %q does not name the value", in, err)
		}
	}
}

// checkPasswdInvariants holds for any parse result: no entry comes from a
// line whose uid field is not literally a valid number.
func checkPasswdInvariants(t *testing.T, data string, entries []passwdEntry) {
	t.Helper()
	lines := map[string][]string{}
	for _, l := range strings.Split(data, "\n") {
		f := strings.Split(strings.TrimRight(l, "\r"), ":")
		if len(f) >= 4 {
			lines[f[0]] = append(lines[f[0]], f[2]+":"+f[3])
		}
	}
	for _, e := range entries {
		if e.UID > maxID || e.GID > maxID || e.Name == "" {
			t.Fatalf("entry %+v out of range", e)
		}
		ok := false
		for _, ids := range lines[e.Name] {
			u, g, _ := strings.Cut(ids, ":")
			if pu, okU := parseID(u); okU && pu == e.UID {
				if pg, okG := parseID(g); okG && pg == e.GID {
					ok = true
				}
			}
		}
		if !ok {
			t.Fatalf("entry %+v does not come from a well-formed line of %q", e, data)
		}
	}
}

func FuzzParsePasswd(f *testing.F) {
	f.Add("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
	f.Add("bad:x::0::/:\n")
	f.Add("x:x:4294967296:1\n#c\n\r\n")
	f.Fuzz(func(t *testing.T, data string) {
		entries, err := parsePasswd(strings.NewReader(data))
		if err != nil {
			return
		}
		checkPasswdInvariants(t, data, entries)
	})
}

func FuzzParseGroup(f *testing.F) {
	f.Add("root:x:0:\nextra:x:2000:app,other\n")
	f.Add("bad:x::app\n")
	f.Fuzz(func(t *testing.T, data string) {
		groups, err := parseGroup(strings.NewReader(data))
		if err != nil {
			return
		}
		for _, g := range groups {
			if g.GID > maxID || g.Name == "" || strings.ContainsAny(g.Name, ":\n") {
				t.Fatalf("bad entry %+v", g)
			}
			for _, m := range g.Members {
				if m == "" || strings.ContainsAny(m, ",:\n") {
					t.Fatalf("bad member %q in %+v", m, g)
				}
			}
		}
	})
}

func FuzzParseUserSpec(f *testing.F) {
	for _, s := range []string{"app", "0", "1000:1000", "app:grp", "-1", "4294967296", ":", "a:b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		us, err := parseUserSpec(s)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("%q: error %v is not InvalidArgument", s, err)
			}
			return
		}
		check := func(v idOrName) {
			if v.Numeric {
				if v.ID > maxID || v.Name != "" {
					t.Fatalf("%q: bad numeric part %+v", s, v)
				}
			} else if v.Name == "" || looksNumeric(v.Name) || strings.Contains(v.Name, ":") {
				t.Fatalf("%q: bad name part %+v", s, v)
			}
		}
		check(us.User)
		if us.HasGroup {
			check(us.Group)
		}
		// A spec that resolves to uid 0 must say so literally.
		if us.User.Numeric && us.User.ID == 0 {
			u, _, _ := strings.Cut(s, ":")
			if strings.Trim(u, "0") != "" {
				t.Fatalf("%q parsed to uid 0", s)
			}
		}
	})
}
