package daemon

import (
	"os/exec"
	"strings"
	"testing"
)

// inProcessClients are the daemon packages allowed to import the client
// library: consumers of the service layer that build the client over
// in-process services (client.NewInProcess): the CRI plugin and its
// packages, which build specs with client/oci and stdio with client/cio,
// and the restart monitor, which restarts tasks as a client would.
var inProcessClients = map[string]bool{
	"github.com/hullrt/hull/plugins/cri":     true,
	"github.com/hullrt/hull/cri/server":      true,
	"github.com/hullrt/hull/cri/images":      true,
	"github.com/hullrt/hull/cri/spec":        true,
	"github.com/hullrt/hull/cri/containerio": true,
	"github.com/hullrt/hull/plugins/restart": true,
}

// TestHulldDoesNotLinkTheClient keeps the client library (and with it the
// registry client, credential helpers and CLI-side code) out of hulld:
// daemon code reaches other processes through internal/proxy and its own
// services in process, never through client/.
func TestHulldDoesNotLinkTheClient(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "github.com/hullrt/hull/cmd/hulld").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/hulld: %v\n%s", err, out)
	}
	const clientPkg = "github.com/hullrt/hull/client"
	var seen int
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		seen++
		pkg := fields[0]
		if inProcessClients[pkg] || pkg == clientPkg || strings.HasPrefix(pkg, clientPkg+"/") {
			continue
		}
		for _, imp := range fields[1:] {
			if imp == clientPkg || strings.HasPrefix(imp, clientPkg+"/") {
				t.Errorf("%s imports %s: daemon code must not link the client library", pkg, imp)
			}
		}
	}
	if seen < 20 {
		t.Fatalf("go list -deps listed only %d packages: %s", seen, out)
	}
}
