// Package plugin is hull's plugin registry: every service and implementation
// in hulld is a plugin with a type, an ID, the plugin types it requires and an
// init function, and hulld initialises them in dependency order.
//
// The registry is a value, not a global: hulld's main builds one and each
// plugins/... package adds its registrations with a Register function. Type
// names are containerd's, so that containerd config files and `ctr plugins ls`
// read naturally.
package plugin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"

	"github.com/containerd/errdefs"
)

// Type is the kind of a plugin, such as "io.containerd.grpc.v1".
type Type string

// The plugin types hull uses; the names are containerd's.
const (
	ContentPlugin      Type = "io.containerd.content.v1"
	MetadataPlugin     Type = "io.containerd.metadata.v1"
	GCPlugin           Type = "io.containerd.gc.v1"
	EventPlugin        Type = "io.containerd.event.v1"
	LeasePlugin        Type = "io.containerd.lease.v1"
	ServicePlugin      Type = "io.containerd.service.v1"
	GRPCPlugin         Type = "io.containerd.grpc.v1"
	TTRPCPlugin        Type = "io.containerd.ttrpc.v1"
	SnapshotPlugin     Type = "io.containerd.snapshotter.v1"
	DiffPlugin         Type = "io.containerd.differ.v1"
	RuntimePluginV2    Type = "io.containerd.runtime.v2"
	InternalPlugin     Type = "io.containerd.internal.v1"
	TransferPlugin     Type = "io.containerd.transfer.v1"
	IntrospectPlugin   Type = "io.containerd.introspection.v1"
	WarningPlugin      Type = "io.containerd.warning.v1"
	StreamingPlugin    Type = "io.containerd.streaming.v1"
	SandboxStorePlugin Type = "io.containerd.sandbox.store.v1"
	CRIPlugin          Type = "io.containerd.cri.v1"
	// ContainerMonitorPlugin watches containers, as the restart monitor.
	ContainerMonitorPlugin Type = "io.containerd.monitor.container.v1"
)

// ErrSkip is returned by an Init function that decides, from its config or
// its host, not to run; the plugin is reported as skipped, not failed.
var ErrSkip = errors.New("skip plugin")

// Registration describes one plugin.
type Registration struct {
	Type Type
	ID   string
	// Requires lists the plugin types this plugin needs initialised first;
	// "*" means every other plugin type.
	Requires []Type
	// Config is a pointer to the plugin's default configuration: a struct
	// with `toml` tags and a `doc` tag on each field, which the config
	// reference is generated from. The [plugins."<type>.<id>"] section of
	// the config file is decoded over it before Init runs. Nil: no config.
	Config any
	// Init creates the plugin's instance.
	Init func(*InitContext) (any, error)
}

// URI is the plugin's full name, "<type>.<id>", as used in config sections.
func (r *Registration) URI() string { return string(r.Type) + "." + r.ID }

// InitContext is what an Init function receives.
type InitContext struct {
	Context context.Context
	// Root and State are the plugin's own directories under hulld's root
	// and state ("<root>/<type>.<id>").
	Root, State string
	// Properties holds daemon-wide values such as the gRPC address.
	Properties map[string]string
	// Config is the Registration's Config with the file's section decoded
	// over it.
	Config any
	// Meta is where the plugin records exports and capabilities.
	Meta *Meta
	// Log is hulld's logger with the plugin's URI as a field; nil in
	// tests that build an InitContext by hand means slog.Default().
	Log *slog.Logger

	plugins *Set
}

// GetSingle returns the instance of the only initialised plugin of type t.
func (ic *InitContext) GetSingle(t Type) (any, error) { return ic.plugins.GetSingle(t) }

// GetByID returns the instance of plugin t.id.
func (ic *InitContext) GetByID(t Type, id string) (any, error) { return ic.plugins.GetByID(t, id) }

// GetByType returns the instances of all initialised plugins of type t, by ID.
func (ic *InitContext) GetByType(t Type) map[string]any { return ic.plugins.GetByType(t) }

// Plugins returns the set being initialised, for plugins (introspection)
// that report on the others.
func (ic *InitContext) Plugins() *Set { return ic.plugins }

// Meta is what a plugin tells the introspection service about itself.
type Meta struct {
	Exports      map[string]string
	Capabilities []string
}

// Plugin is one plugin after its init ran.
type Plugin struct {
	Registration *Registration
	Meta         Meta
	Instance     any
	// Err is the init error; nil when the plugin runs.
	Err error
}

// Registry holds registrations until they are initialised.
type Registry struct {
	regs []*Registration
}

// Register adds r. Registering the same type and ID twice, or a registration
// without a type, ID or Init, is a programming error and panics.
func (reg *Registry) Register(r *Registration) {
	if r.Type == "" || r.ID == "" || r.Init == nil {
		panic(fmt.Sprintf("plugin: incomplete registration %q", r.URI()))
	}
	for _, e := range reg.regs {
		if e.Type == r.Type && e.ID == r.ID {
			panic(fmt.Sprintf("plugin: %s registered twice", r.URI()))
		}
	}
	reg.regs = append(reg.regs, r)
}

// Graph returns the registrations in an order where each comes after every
// plugin of the types it requires, leaving out those disabled reports true
// for. Within those constraints the order of registration is kept.
func (reg *Registry) Graph(disabled func(*Registration) bool) []*Registration {
	var (
		out     []*Registration
		added   = map[*Registration]bool{}
		visited = map[*Registration]bool{}
		enabled []*Registration
	)
	for _, r := range reg.regs {
		if disabled == nil || !disabled(r) {
			enabled = append(enabled, r)
		}
	}
	var add func(r *Registration)
	add = func(r *Registration) {
		if added[r] || visited[r] {
			return // visited but not added: a cycle; break it here
		}
		visited[r] = true
		for _, t := range r.Requires {
			for _, dep := range enabled {
				if dep != r && (t == "*" || dep.Type == t) {
					if t == "*" && contains(dep.Requires, "*") {
						continue
					}
					add(dep)
				}
			}
		}
		added[r] = true
		out = append(out, r)
	}
	for _, r := range enabled {
		add(r)
	}
	return out
}

func contains(ts []Type, t Type) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}

// Set holds the plugins initialised so far, in order.
type Set struct {
	mu      sync.RWMutex
	ordered []*Plugin
}

// Add records p.
func (s *Set) Add(p *Plugin) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ordered = append(s.ordered, p)
}

// All returns every plugin, failed ones included, in init order.
func (s *Set) All() []*Plugin {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]*Plugin(nil), s.ordered...)
}

// GetSingle returns the instance of the only running plugin of type t.
func (s *Set) GetSingle(t Type) (any, error) {
	m := s.GetByType(t)
	switch len(m) {
	case 0:
		return nil, fmt.Errorf("no plugin of type %s is running: %w", t, errdefs.ErrNotFound)
	case 1:
		for _, v := range m {
			return v, nil
		}
	}
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return nil, fmt.Errorf("more than one plugin of type %s is running (%v): %w", t, ids, errdefs.ErrFailedPrecondition)
}

// GetByID returns the instance of the running plugin t.id.
func (s *Set) GetByID(t Type, id string) (any, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, p := range s.ordered {
		if p.Registration.Type == t && p.Registration.ID == id {
			if p.Err != nil {
				return nil, fmt.Errorf("plugin %s failed to start: %v: %w", p.Registration.URI(), p.Err, errdefs.ErrFailedPrecondition)
			}
			return p.Instance, nil
		}
	}
	return nil, fmt.Errorf("plugin %s.%s is not running: %w", t, id, errdefs.ErrNotFound)
}

// GetByType returns the running plugins of type t by ID.
func (s *Set) GetByType(t Type) map[string]any {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m := map[string]any{}
	for _, p := range s.ordered {
		if p.Registration.Type == t && p.Err == nil {
			m[p.Registration.ID] = p.Instance
		}
	}
	return m
}

// Init runs r's Init with ic (filled in here with the set and meta) and
// records the result in s. It returns the plugin, whose Err says whether it
// runs.
func (s *Set) Init(r *Registration, ic *InitContext) *Plugin {
	ic.plugins = s
	if ic.Meta == nil {
		ic.Meta = &Meta{Exports: map[string]string{}}
	}
	p := &Plugin{Registration: r}
	inst, err := r.Init(ic)
	p.Instance, p.Err, p.Meta = inst, err, *ic.Meta
	s.Add(p)
	return p
}

// Instance returns the instance of the running plugin t.id as a T, the
// interface the caller needs of it. Plugins meet through such interfaces,
// never through another plugin's concrete type, so any implementation that
// satisfies T can take the plugin's place.
func Instance[T any](ic *InitContext, t Type, id string) (T, error) {
	var zero T
	inst, err := ic.GetByID(t, id)
	if err != nil {
		return zero, err
	}
	return as[T](inst, string(t)+"."+id)
}

// Single is Instance for the only running plugin of type t.
func Single[T any](ic *InitContext, t Type) (T, error) {
	var zero T
	inst, err := ic.GetSingle(t)
	if err != nil {
		return zero, err
	}
	return as[T](inst, string(t))
}

func as[T any](inst any, name string) (T, error) {
	v, ok := inst.(T)
	if !ok {
		var zero T
		return zero, fmt.Errorf("plugin %s is a %T, which does not provide %T: %w", name, inst, &zero, errdefs.ErrFailedPrecondition)
	}
	return v, nil
}
