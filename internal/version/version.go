// Package version holds hull's version, set at build time with
// -ldflags "-X github.com/hullrt/hull/internal/version.Version=...".
package version

var (
	// Version is the release, or "dev" for a local build.
	Version = "dev"
	// Revision is the git commit the binary was built from.
	Revision = "unknown"
)

// Package is what `ctr version` and introspection show as the server's package.
const Package = "github.com/hullrt/hull"
