package crashpoint

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]struct {
		name string
		n    int64
		ok   bool
	}{
		"task-recorded":  {"task-recorded", 1, true},
		"unpack-mid@3":   {"unpack-mid", 3, true},
		"":               {"", 1, true},
		"unpack-mid@0":   {ok: false},
		"unpack-mid@x":   {ok: false},
		"unpack-mid@-2":  {ok: false},
		"unpack-mid@1@2": {ok: false},
	} {
		name, n, err := parse(in)
		if (err == nil) != want.ok || (want.ok && (name != want.name || n != want.n)) {
			t.Errorf("parse(%q) = %q, %d, %v; want %q, %d, ok %v", in, name, n, err, want.name, want.n, want.ok)
		}
		if err != nil && !strings.Contains(err.Error(), EnvVar) {
			t.Errorf("parse(%q): %v does not name %s", in, err, EnvVar)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"task-recorded", "unpack-mid@3", "@", "x@0", "@@"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		name, n, err := parse(v)
		if err == nil && (n < 1 || strings.Contains(name, "@") && !strings.Contains(v, "@")) {
			t.Fatalf("parse(%q) = %q, %d without an error", v, name, n)
		}
	})
}
