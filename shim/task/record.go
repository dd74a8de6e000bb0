package task

import (
	"encoding/json"
	"os"
	"path/filepath"
)

// recordFile is the bundle file that says which runtime binary and state
// root a container was created with: the delete subcommand, run after the
// shim died, has no request options to find them in.
const recordFile = "hull-runc.json"

// RuntimeRecord is the content of recordFile.
type RuntimeRecord struct {
	Binary        string `json:"binary"`
	Root          string `json:"root"`
	SystemdCgroup bool   `json:"systemdCgroup,omitempty"`
}

func saveRecord(bundle string, r RuntimeRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(bundle, recordFile), b, 0o600)
}

// LoadRecord reads the runtime record of bundle; without one (the shim
// died before Create) it returns the defaults for the bundle.
func LoadRecord(bundle, namespace string) RuntimeRecord {
	r := RuntimeRecord{Root: DefaultRuncRoot(bundle, namespace)}
	if b, err := os.ReadFile(filepath.Join(bundle, recordFile)); err == nil {
		json.Unmarshal(b, &r)
	}
	return r
}
