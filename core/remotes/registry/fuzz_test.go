package registry

import (
	"strings"
	"testing"
)

// FuzzParseChallenges feeds arbitrary WWW-Authenticate headers to the
// challenge parser: it must never panic, and every challenge it returns has
// a scheme.
func FuzzParseChallenges(f *testing.F) {
	for _, s := range []string{
		`Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"`,
		`Basic realm="registry"`,
		`Bearer realm="x", Basic realm="y"`,
		`Bearer realm="a\"b",service=unquoted`,
		`,,,`, `Bearer`, `Bearer realm=`, `="x"`, "Bearer realm=\"\x00\"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		for _, ch := range parseChallenges(strings.Split(h, "\n")) {
			if ch.scheme == "" {
				t.Fatalf("challenge without a scheme from %q", h)
			}
		}
	})
}
