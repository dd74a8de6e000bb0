package daemon

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/plugin"
)

// needs says, for each plugin type, which enabled plugins require it by
// name in their Requires. A plugin of such a type that fails leaves those
// plugins without what they were built on: hulld would serve an API whose
// every call fails, so it stops instead. A "*" requirement (every other
// type, for plugins that report on the rest) makes nothing essential.
type needs map[plugin.Type][]string

func newNeeds(regs []*plugin.Registration) needs {
	n := needs{}
	for _, r := range regs {
		for _, t := range r.Requires {
			if t != "*" && t != r.Type {
				n[t] = append(n[t], r.URI())
			}
		}
	}
	for t := range n {
		sort.Strings(n[t])
	}
	return n
}

// fatal decides whether the failure of plugin p stops hulld: it does when
// p is in required_plugins or another enabled plugin needs its type. A
// plugin that skips itself (plugin.ErrSkip: its host lacks what it needs,
// or its config turns it off) is never fatal, whoever needs it; those who
// do need it fail on their own, and are fatal in turn when needed.
//
// Plugins are initialised in dependency order and hulld stops at the
// first fatal failure, so the plugin reported is the root cause, not one
// of the plugins that would have failed because of it.
func (n needs) fatal(p *plugin.Plugin, required map[string]bool) error {
	if p.Err == nil || errors.Is(p.Err, plugin.ErrSkip) {
		return nil
	}
	uri := p.Registration.URI()
	if required[uri] {
		return fmt.Errorf("required plugin %s failed to start: %w", uri, p.Err)
	}
	by := n[p.Registration.Type]
	if len(by) == 0 {
		return nil
	}
	return fmt.Errorf("plugin %s failed to start (needed by %s): %w", uri, listPlugins(by), p.Err)
}

// listPlugins names up to three plugins and counts the rest.
func listPlugins(uris []string) string {
	const shown = 3
	if len(uris) <= shown {
		return strings.Join(uris, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(uris[:shown], ", "), len(uris)-shown)
}

// missingRequired is the error for a required plugin that never ran:
// not registered, or disabled.
func missingRequired(uri string) error {
	return fmt.Errorf("required plugin %s is not registered or is disabled: %w", uri, errdefs.ErrNotFound)
}
