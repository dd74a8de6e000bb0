package daemon

import (
	"bytes"
	"os"
	"testing"

	"github.com/hullrt/hull/config"
)

// The configuration reference is generated from the code; this keeps the
// committed copy from drifting (run `make docs` after changing a config).
func TestConfigurationReferenceIsCurrent(t *testing.T) {
	var buf bytes.Buffer
	if err := config.GenerateReference(&buf, PluginSections(Registry())); err != nil {
		t.Fatal(err)
	}
	have, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, buf.Bytes()) {
		t.Fatal("docs/configuration.md is out of date: run `make docs`")
	}
}

// Every plugin config field is documented, since the reference is made of
// the doc tags.
func TestPluginConfigsDocumented(t *testing.T) {
	for _, s := range PluginSections(Registry()) {
		if s.Config == nil {
			continue
		}
		if missing := config.MissingDocs(s.Config); len(missing) > 0 {
			t.Errorf("plugin %s: fields without a doc tag: %v", s.URI, missing)
		}
	}
}
