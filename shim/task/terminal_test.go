package task

import (
	"encoding/json"
	"testing"

	"github.com/containerd/errdefs"
)

func TestWithTerminal(t *testing.T) {
	for _, c := range []struct {
		spec     string
		terminal bool
		want     map[string]any
	}{
		{`{"args":["tty"],"terminal":false}`, true, map[string]any{"args": []any{"tty"}, "terminal": true}},
		{`{"args":["tty"],"terminal":true}`, false, map[string]any{"args": []any{"tty"}, "terminal": false}},
		{`{"args":["tty"]}`, true, map[string]any{"args": []any{"tty"}, "terminal": true}},
		{`{"args":["tty"],"x-unknown":{"a":1}}`, true, map[string]any{"args": []any{"tty"}, "x-unknown": map[string]any{"a": 1.0}, "terminal": true}},
	} {
		out, err := withTerminal([]byte(c.spec), c.terminal)
		if err != nil {
			t.Fatalf("%s: %v", c.spec, err)
		}
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatal(err)
		}
		if gb, _ := json.Marshal(got); string(gb) != mustJSON(t, c.want) {
			t.Errorf("%s with terminal %v: %s", c.spec, c.terminal, out)
		}
	}
	// runc's decoder ignores the case of keys: so does the rewrite.
	if out, _ := withTerminal([]byte(`{"Terminal":true,"TERMINAL":true}`), false); string(out) != `{"terminal":false}` {
		t.Errorf("other spellings of terminal kept: %s", out)
	}
	for _, bad := range []string{``, `null`, `[]`, `{`} {
		if _, err := withTerminal([]byte(bad), true); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%q: %v, want InvalidArgument", bad, err)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func FuzzWithTerminal(f *testing.F) {
	for _, s := range []string{`{"args":["sh"],"terminal":false}`, `{"terminal":true}`, `{}`, `null`, `{"terminal":1}`} {
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, spec []byte, terminal bool) {
		out, err := withTerminal(spec, terminal)
		if err != nil {
			return
		}
		var p struct {
			Terminal bool `json:"terminal"`
		}
		if err := json.Unmarshal(out, &p); err != nil || p.Terminal != terminal {
			t.Fatalf("%q gave %q (%v)", spec, out, err)
		}
	})
}
