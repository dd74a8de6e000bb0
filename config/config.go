// Package config reads hulld's configuration file.
//
// The file format is containerd 2.x's config.toml, version 4 (what
// containerd 2.4's `containerd config default` writes), so that an existing
// containerd configuration can be pointed at hulld unchanged: the same
// top-level keys, the same [plugins."<type>.<id>"] sections, the same
// imports. Version 3 files are read as they are: their listener tables
// ([grpc], [ttrpc], [metrics], debug.address) are moved into version 4's
// server sections ([plugins."io.containerd.server.v1.grpc"] and the rest)
// in memory, as containerd 2.3 does. Version 2 files are migrated in memory
// too, with a warning, and version 1 files are refused with a pointer to
// `hulld config migrate`, because silently reinterpreting them has bitten
// containerd users before.
//
// Nothing in a file is ignored silently: keys hull does not know come back
// as Warnings with a position and, where one is close, the key that was
// probably meant, and settings hull reads but does not act on are Warnings
// naming them, so that --strict-config can turn them into errors.
//
// The package holds no state of its own: everything it knows about plugins
// is passed in as []PluginSection by the caller, except the server
// sections, which hull has no plugins for (the daemon itself listens) and
// which this package therefore reads into Config's GRPC, TTRPC, Debug and
// Metrics.
package config

import (
	"path/filepath"
	"strings"
)

// Defaults for the keys that hull fills in when a file leaves them empty.
// They are hull's own paths rather than containerd's so that both daemons
// can run on one host without fighting over sockets and directories.
const (
	DefaultRoot           = "/var/lib/hull"
	DefaultState          = "/run/hull"
	DefaultAddress        = "/run/hull/hull.sock"
	DefaultMaxMessageSize = 16 << 20
	DefaultDebugLevel     = "info"
	DefaultDebugFormat    = "text"
)

// CurrentVersion is the config format version hull reads natively and
// writes.
const CurrentVersion = 4

// Config is hulld's configuration: the top level of config.toml.
type Config struct {
	Version         int      "toml:\"version\" doc:\"Format version of the file. hull reads 4 and 3 as they are (3's listener tables moved into the server sections in memory), reads 2 by migrating it in memory (with a warning), and refuses 1: run `hulld config migrate` on it. Default: 4.\""
	Root            string   `toml:"root" doc:"Directory for persistent data: content, metadata, snapshots. Each plugin gets <root>/<type>.<id>. Default: /var/lib/hull."`
	State           string   `toml:"state" doc:"Directory for runtime state that does not survive a reboot: sockets, task bundles, FIFOs. Default: /run/hull."`
	Temp            string   `toml:"temp" doc:"containerd's directory for temporary files. Not supported (a warning when set): hull makes its temporary files under its state directory or $TMPDIR. Default: empty."`
	PluginDir       string   `toml:"plugin_dir,omitempty" doc:"Accepted for compatibility with containerd 1.x and 2.0 config files; hull does not load Go plugins, so a value is a warning. Default: empty."`
	DisabledPlugins []string `toml:"disabled_plugins" doc:"Plugins not to start, as URIs \"<type>.<id>\" (e.g. \"io.containerd.grpc.v1.cri\"). Default: none."`
	RequiredPlugins []string `toml:"required_plugins" doc:"Plugins, as URIs \"<type>.<id>\", that must start: hulld exits if one of them fails or is missing. Default: none."`
	OOMScore        int      `toml:"oom_score" doc:"OOM score adjustment for the hulld process (-1000 to 1000); 0 leaves it as inherited. Default: 0."`
	Imports         []string `toml:"imports" doc:"Further config files to merge in, after this one, so that they override it. Relative paths are relative to the importing file's directory; glob patterns are allowed; every file is read once and cycles are an error. After loading, the list holds every imported file's path in load order. Default: none."`

	// GRPC, TTRPC, Debug's address and Metrics are the listeners, read
	// from the server sections ([plugins."io.containerd.server.v1.grpc"]
	// and the rest; see ServerGRPC) or, in version 2 and 3 files, from
	// the top-level tables those sections replaced.
	GRPC             GRPCConfig                 `toml:"-"`
	TTRPC            TTRPCConfig                `toml:"-"`
	Debug            DebugConfig                `toml:"debug" doc:"Logging."`
	Metrics          MetricsConfig              `toml:"-"`
	Cgroup           CgroupConfig               `toml:"cgroup" doc:"The cgroup hulld itself is placed in."`
	Timeouts         map[string]string          `toml:"timeouts" doc:"containerd's timeouts by name (e.g. \"io.containerd.timeout.shim.cleanup\" = \"5s\"), as Go durations. Not supported (a warning for each): hull's plugins keep their own timeouts. Default: empty."`
	StreamProcessors map[string]StreamProcessor `toml:"stream_processors" doc:"External binaries that transform layer streams by media type, such as decryption, keyed by name. Not supported (a warning for each): hull applies only the layer media types it knows. Default: none."`
	ProxyPlugins     map[string]ProxyPlugin     `toml:"proxy_plugins" doc:"Snapshotters, content stores and other plugins served by another process over gRPC, keyed by plugin ID. Default: none."`
	Plugins          map[string]any             `toml:"plugins" doc:"Per-plugin configuration, one table per plugin keyed by its URI: [plugins.\"<type>.<id>\"]. Each plugin's keys are listed in its own section of this reference."`

	// src records where each key came from, so that problems found after
	// the files are merged (plugin sections are decoded long after Load)
	// still point at the file and line the user has to edit.
	src sourceMap
	// The TCP server's settings hull reads only to say it does not
	// support them (see unsupported).
	tcpCommonName          string
	tcpMaxRecv, tcpMaxSend int
}

// GRPCConfig is the gRPC API's listeners: the unix socket of
// [plugins."io.containerd.server.v1.grpc"] and the TCP one of
// [plugins."io.containerd.server.v1.grpc-tcp"] (version 3's [grpc]).
type GRPCConfig struct {
	Address        string
	TCPAddress     string
	TCPTLSCA       string
	TCPTLSCert     string
	TCPTLSKey      string
	UID            int
	GID            int
	MaxRecvMsgSize int
	MaxSendMsgSize int
}

// TTRPCConfig is [plugins."io.containerd.server.v1.ttrpc"] (version 3's
// [ttrpc]). An empty Address means the gRPC address with ".ttrpc"
// appended.
type TTRPCConfig struct {
	Address  string
	UID, GID int
}

// DebugConfig is the [debug] table, which keeps the log settings in
// version 4, and the debug socket of [plugins."io.containerd.server.v1.debug"]
// (version 3's debug.address, uid and gid).
type DebugConfig struct {
	Address    string `toml:"-"`
	UID        int    `toml:"-"`
	GID        int    `toml:"-"`
	Level      string `toml:"level" doc:"Log level: trace, debug, info, warn, error, fatal or panic. Default: info."`
	Format     string `toml:"format" doc:"Log format: text or json. Default: text."`
	LogTraceID bool   `toml:"log_trace_id" doc:"containerd's trace IDs in log lines. Not supported (a warning when true): hull does not trace requests. Default: false."`
}

// MetricsConfig is the metrics endpoint of
// [plugins."io.containerd.server.v1.metrics"] and the histogram switch of
// [plugins."io.containerd.metrics.v1.grpc-prometheus"] (version 3's
// [metrics]).
type MetricsConfig struct {
	Address       string
	GRPCHistogram bool
}

// CgroupConfig is the [cgroup] table.
type CgroupConfig struct {
	Path string `toml:"path" doc:"Cgroup to move hulld into at start; empty leaves it where it was started. Default: empty."`
}

// StreamProcessor is one [stream_processors.<name>] entry.
type StreamProcessor struct {
	Accepts []string `toml:"accepts" doc:"Media types the processor reads."`
	Returns string   `toml:"returns" doc:"Media type the processor writes."`
	Path    string   `toml:"path" doc:"Path of the processor binary."`
	Args    []string `toml:"args" doc:"Arguments passed to the binary."`
	Env     []string `toml:"env" doc:"Environment of the binary, as KEY=value strings."`
}

// ProxyPlugin is one [proxy_plugins.<id>] entry.
type ProxyPlugin struct {
	Type         string            `toml:"type" doc:"Kind of plugin served: snapshot, content, sandbox or diff."`
	Address      string            `toml:"address" doc:"Unix socket path of the process serving it."`
	Platform     string            `toml:"platform" doc:"Platform the plugin supports, for sandbox and diff proxies; empty means the host's."`
	Exports      map[string]string `toml:"exports" doc:"Values the plugin reports through introspection, such as a snapshotter's root."`
	Capabilities []string          `toml:"capabilities" doc:"Capabilities the plugin reports through introspection."`
}

// Default returns the configuration hulld runs with when there is no file.
// Maps are allocated so that callers can add to them without nil checks.
func Default() *Config {
	c := &Config{Version: CurrentVersion}
	c.applyDefaults()
	return c
}

// applyDefaults fills in what the file left empty. It runs after merging,
// not before decoding, so that an explicit empty string in a file still
// means "the default" rather than "nothing".
func (c *Config) applyDefaults() {
	if c.Version == 0 {
		c.Version = CurrentVersion
	}
	if c.Root == "" {
		c.Root = DefaultRoot
	}
	if c.State == "" {
		c.State = DefaultState
	}
	if c.GRPC.Address == "" {
		c.GRPC.Address = DefaultAddress
	}
	if c.GRPC.MaxRecvMsgSize == 0 {
		c.GRPC.MaxRecvMsgSize = DefaultMaxMessageSize
	}
	if c.GRPC.MaxSendMsgSize == 0 {
		c.GRPC.MaxSendMsgSize = DefaultMaxMessageSize
	}
	// The TCP server's limits matter only where they differ from the
	// socket's (a warning): equal ones are kept as "not set".
	if c.tcpMaxRecv == c.GRPC.MaxRecvMsgSize {
		c.tcpMaxRecv = 0
	}
	if c.tcpMaxSend == c.GRPC.MaxSendMsgSize {
		c.tcpMaxSend = 0
	}
	if c.Debug.Level == "" {
		c.Debug.Level = DefaultDebugLevel
	}
	if c.Debug.Format == "" {
		c.Debug.Format = DefaultDebugFormat
	}
	if c.Timeouts == nil {
		c.Timeouts = map[string]string{}
	}
	if c.StreamProcessors == nil {
		c.StreamProcessors = map[string]StreamProcessor{}
	}
	if c.ProxyPlugins == nil {
		c.ProxyPlugins = map[string]ProxyPlugin{}
	}
	for k, sp := range c.StreamProcessors {
		sp.Accepts, sp.Args, sp.Env = nilIfEmpty(sp.Accepts), nilIfEmpty(sp.Args), nilIfEmpty(sp.Env)
		c.StreamProcessors[k] = sp
	}
	for k, pp := range c.ProxyPlugins {
		pp.Capabilities = nilIfEmpty(pp.Capabilities)
		if len(pp.Exports) == 0 {
			pp.Exports = nil
		}
		c.ProxyPlugins[k] = pp
	}
	if c.Plugins == nil {
		c.Plugins = map[string]any{}
	}
	// Empty lists are nil so that a loaded config and a rendered-then-
	// reloaded one compare equal.
	c.DisabledPlugins = nilIfEmpty(c.DisabledPlugins)
	c.RequiredPlugins = nilIfEmpty(c.RequiredPlugins)
	c.Imports = nilIfEmpty(c.Imports)
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

// TTRPCAddress is the ttrpc socket path in effect: containerd derives it
// from the gRPC address when it is not set, and shims built for containerd
// expect that.
func (c *Config) TTRPCAddress() string {
	if c.TTRPC.Address != "" {
		return c.TTRPC.Address
	}
	return c.GRPC.Address + ".ttrpc"
}

// PluginDisabled reports whether uri is listed in disabled_plugins.
func (c *Config) PluginDisabled(uri string) bool {
	for _, d := range c.DisabledPlugins {
		if d == uri {
			return true
		}
	}
	return false
}

// PluginRoot is the directory a plugin keeps its persistent data in, named
// as containerd names it so that tools that inspect the root find it.
func (c *Config) PluginRoot(uri string) string { return filepath.Join(c.Root, uri) }

// PluginState is the directory a plugin keeps its runtime state in.
func (c *Config) PluginState(uri string) string { return filepath.Join(c.State, uri) }

// validLevel reports whether level is one the daemon's logger understands;
// checked at load so that a typo fails with a position rather than at start.
func validLevel(level string) bool {
	switch strings.ToLower(level) {
	case "trace", "debug", "info", "warn", "warning", "error", "fatal", "panic":
		return true
	}
	return false
}
