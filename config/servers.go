package config

import (
	"fmt"
	"sort"
)

// The plugin sections that hold the daemon's listeners from version 4 on.
// Versions 2 and 3 kept these settings in the top-level [grpc], [ttrpc],
// [metrics] and [debug] tables; containerd 2.3 moved them into server
// plugins. hull has no such plugins (the daemon itself listens), so the
// config package owns these sections: it reads them into Config's GRPC,
// TTRPC, Debug and Metrics, validates them and writes them back.
const (
	ServerGRPC            = "io.containerd.server.v1.grpc"
	ServerGRPCTCP         = "io.containerd.server.v1.grpc-tcp"
	ServerTTRPC           = "io.containerd.server.v1.ttrpc"
	ServerDebug           = "io.containerd.server.v1.debug"
	ServerMetrics         = "io.containerd.server.v1.metrics"
	MetricsGRPCPrometheus = "io.containerd.metrics.v1.grpc-prometheus"
)

// grpcServer is [plugins."io.containerd.server.v1.grpc"].
type grpcServer struct {
	Address        string `toml:"address" doc:"Path of the unix socket serving the gRPC API. Default: /run/hull/hull.sock."`
	UID            int    `toml:"uid" doc:"Owner uid of the gRPC socket. Default: 0."`
	GID            int    `toml:"gid" doc:"Owner gid of the gRPC socket. Default: 0."`
	MaxRecvMsgSize int    `toml:"max_recv_message_size" doc:"Largest gRPC message hulld accepts, in bytes. Default: 16777216 (16 MiB)."`
	MaxSendMsgSize int    `toml:"max_send_message_size" doc:"Largest gRPC message hulld sends, in bytes. Default: 16777216 (16 MiB)."`
}

// tcpServer is [plugins."io.containerd.server.v1.grpc-tcp"].
type tcpServer struct {
	Address        string `toml:"address" doc:"host:port to also serve the gRPC API on over TCP; empty disables TCP. Default: empty."`
	TLSCA          string `toml:"tls_ca" doc:"CA certificate file used to verify TCP clients' certificates; empty accepts clients without verifying them. Default: empty."`
	TLSCert        string `toml:"tls_cert" doc:"Server certificate file for TCP; with tls_key it turns TLS on. Default: empty."`
	TLSKey         string `toml:"tls_key" doc:"Private key file for tls_cert. Default: empty."`
	TLSCommonName  string `toml:"tls_common_name" doc:"Not supported by hull (a warning when set): TCP clients are verified against tls_ca only. Default: empty."`
	MaxRecvMsgSize int    `toml:"max_recv_message_size" doc:"Must equal the gRPC socket's (hull serves both with one set of limits; a warning otherwise). Default: the gRPC socket's."`
	MaxSendMsgSize int    `toml:"max_send_message_size" doc:"Must equal the gRPC socket's (a warning otherwise). Default: the gRPC socket's."`
}

// ttrpcServer is [plugins."io.containerd.server.v1.ttrpc"].
type ttrpcServer struct {
	Address string `toml:"address" doc:"Path of the ttrpc socket shims publish events to. Empty means the gRPC address with \".ttrpc\" appended. Default: empty."`
	UID     int    `toml:"uid" doc:"Owner uid of the ttrpc socket; only 0 is supported (the socket is root's, mode 0600). Default: 0."`
	GID     int    `toml:"gid" doc:"Owner gid of the ttrpc socket; only 0 is supported. Default: 0."`
}

// debugServer is [plugins."io.containerd.server.v1.debug"].
type debugServer struct {
	Address string `toml:"address" doc:"Path of a unix socket serving pprof; empty disables it. Default: empty."`
	UID     int    `toml:"uid" doc:"Owner uid of the debug socket. Default: 0."`
	GID     int    `toml:"gid" doc:"Owner gid of the debug socket. Default: 0."`
}

// metricsServer is [plugins."io.containerd.server.v1.metrics"].
type metricsServer struct {
	Address string `toml:"address" doc:"host:port to serve Prometheus metrics on at /v1/metrics; empty disables it. Default: empty."`
}

// grpcPrometheus is [plugins."io.containerd.metrics.v1.grpc-prometheus"].
type grpcPrometheus struct {
	GRPCHistogram bool `toml:"grpc_histogram" doc:"Also record latency histograms for every gRPC method, which is costly in series. Default: false."`
}

// serverSections are the config-owned sections with c's values in them:
// Render writes these, and with Default() they are the defaults Validate
// checks keys against and the reference documents.
func serverSections(c *Config) []PluginSection {
	return []PluginSection{
		{ServerGRPC, &grpcServer{Address: c.GRPC.Address, UID: c.GRPC.UID, GID: c.GRPC.GID, MaxRecvMsgSize: c.GRPC.MaxRecvMsgSize, MaxSendMsgSize: c.GRPC.MaxSendMsgSize}},
		{ServerGRPCTCP, &tcpServer{Address: c.GRPC.TCPAddress, TLSCA: c.GRPC.TCPTLSCA, TLSCert: c.GRPC.TCPTLSCert, TLSKey: c.GRPC.TCPTLSKey,
			TLSCommonName: c.tcpCommonName, MaxRecvMsgSize: c.GRPC.MaxRecvMsgSize, MaxSendMsgSize: c.GRPC.MaxSendMsgSize}},
		{ServerTTRPC, &ttrpcServer{Address: c.TTRPC.Address, UID: c.TTRPC.UID, GID: c.TTRPC.GID}},
		{ServerDebug, &debugServer{Address: c.Debug.Address, UID: c.Debug.UID, GID: c.Debug.GID}},
		{ServerMetrics, &metricsServer{Address: c.Metrics.Address}},
		{MetricsGRPCPrometheus, &grpcPrometheus{GRPCHistogram: c.Metrics.GRPCHistogram}},
	}
}

// isServerSection reports whether uri is one of the config-owned sections.
func isServerSection(uri string) bool {
	switch uri {
	case ServerGRPC, ServerGRPCTCP, ServerTTRPC, ServerDebug, ServerMetrics, MetricsGRPCPrometheus:
		return true
	}
	return false
}

// readServers sets c's listener settings from the server sections the
// files have. Unknown keys are left to Validate, which reports them with
// every other plugin's; a value of the wrong type stops loading, since no
// plugin will fail on it later.
func (c *Config) readServers() error {
	g := &grpcServer{}
	t := &tcpServer{}
	tt := &ttrpcServer{}
	d := &debugServer{}
	m := &metricsServer{}
	p := &grpcPrometheus{}
	for _, s := range []struct {
		uri  string
		into any
	}{{ServerGRPC, g}, {ServerGRPCTCP, t}, {ServerTTRPC, tt}, {ServerDebug, d}, {ServerMetrics, m}, {MetricsGRPCPrometheus, p}} {
		if _, err := c.DecodePlugin(s.uri, s.into); err != nil {
			return err
		}
	}
	c.GRPC = GRPCConfig{Address: g.Address, UID: g.UID, GID: g.GID, MaxRecvMsgSize: g.MaxRecvMsgSize, MaxSendMsgSize: g.MaxSendMsgSize,
		TCPAddress: t.Address, TCPTLSCA: t.TLSCA, TCPTLSCert: t.TLSCert, TCPTLSKey: t.TLSKey}
	c.tcpCommonName, c.tcpMaxRecv, c.tcpMaxSend = t.TLSCommonName, t.MaxRecvMsgSize, t.MaxSendMsgSize
	c.TTRPC = TTRPCConfig{Address: tt.Address, UID: tt.UID, GID: tt.GID}
	c.Debug.Address, c.Debug.UID, c.Debug.GID = d.Address, d.UID, d.GID
	c.Metrics = MetricsConfig{Address: m.Address, GRPCHistogram: p.GRPCHistogram}
	return nil
}

// legacyTop is the top level of a file as versions 2 and 3 lay it out:
// version 4's keys, and the listener tables version 4 moved into the
// server sections. Every file is checked against it, so a version 4 file
// that still has them gets them read (and a warning) rather than dropped.
type legacyTop struct {
	Config
	GRPC    legacyGRPC    `toml:"grpc"`
	TTRPC   legacyTTRPC   `toml:"ttrpc"`
	Debug   legacyDebug   `toml:"debug"`
	Metrics legacyMetrics `toml:"metrics"`
}

type legacyGRPC struct {
	Address          string `toml:"address"`
	TCPAddress       string `toml:"tcp_address"`
	TCPTLSCA         string `toml:"tcp_tls_ca"`
	TCPTLSCert       string `toml:"tcp_tls_cert"`
	TCPTLSKey        string `toml:"tcp_tls_key"`
	TCPTLSCommonName string `toml:"tcp_tls_common_name"`
	UID              int    `toml:"uid"`
	GID              int    `toml:"gid"`
	MaxRecvMsgSize   int    `toml:"max_recv_message_size"`
	MaxSendMsgSize   int    `toml:"max_send_message_size"`
}

type legacyTTRPC struct {
	Address string `toml:"address"`
	UID     int    `toml:"uid"`
	GID     int    `toml:"gid"`
}

type legacyDebug struct {
	DebugConfig
	Address string `toml:"address"`
	UID     int    `toml:"uid"`
	GID     int    `toml:"gid"`
}

type legacyMetrics struct {
	Address       string `toml:"address"`
	GRPCHistogram bool   `toml:"grpc_histogram"`
}

// legacyMove is where one key of a version 3 listener table goes.
type legacyMove struct {
	table, key string
	uri, to    string
}

// legacyMoves lists every key version 4 moved, in the order they are
// applied. The message size limits go to the TCP server as well when the
// file has a TCP address, since in version 3 one pair served both.
var legacyMoves = []legacyMove{
	{"grpc", "address", ServerGRPC, "address"},
	{"grpc", "uid", ServerGRPC, "uid"},
	{"grpc", "gid", ServerGRPC, "gid"},
	{"grpc", "max_recv_message_size", ServerGRPC, "max_recv_message_size"},
	{"grpc", "max_send_message_size", ServerGRPC, "max_send_message_size"},
	{"grpc", "tcp_address", ServerGRPCTCP, "address"},
	{"grpc", "tcp_tls_ca", ServerGRPCTCP, "tls_ca"},
	{"grpc", "tcp_tls_cert", ServerGRPCTCP, "tls_cert"},
	{"grpc", "tcp_tls_key", ServerGRPCTCP, "tls_key"},
	{"grpc", "tcp_tls_common_name", ServerGRPCTCP, "tls_common_name"},
	{"ttrpc", "address", ServerTTRPC, "address"},
	{"ttrpc", "uid", ServerTTRPC, "uid"},
	{"ttrpc", "gid", ServerTTRPC, "gid"},
	{"debug", "address", ServerDebug, "address"},
	{"debug", "uid", ServerDebug, "uid"},
	{"debug", "gid", ServerDebug, "gid"},
	{"metrics", "address", ServerMetrics, "address"},
	{"metrics", "grpc_histogram", MetricsGRPCPrometheus, "grpc_histogram"},
}

// migrate3to4 moves the listener tables into the server sections, as
// containerd 2.3 does. Settings already in a server section win over
// moved ones. Keys version 3 did not have stay where they are, so that
// Load reports them in the words the file used and Migrate loses nothing;
// a table left empty goes. It returns the tables it moved from, sorted.
func migrate3to4(raw map[string]any, sm sourceMap) []string {
	plugins, ok := raw["plugins"].(map[string]any)
	if _, present := raw["plugins"]; !present {
		plugins, ok = map[string]any{}, true
	}
	if !ok {
		// plugins is not a table: the file's own value wins, and the
		// type error is reported where it is.
		return nil
	}
	moved := map[string]bool{}
	move := func(table, key, uri, to string, v any) {
		sec := subTable(plugins, uri)
		putMissing(sec, to, v)
		moved[table] = true
		if _, has := sm[pathKey([]string{"plugins", uri})]; !has {
			if p, ok := sm[pathKey([]string{table})]; ok {
				sm[pathKey([]string{"plugins", uri})] = p
			}
		}
		sm.copyPrefix([]string{table, key}, []string{"plugins", uri, to})
	}
	grpc, _ := raw["grpc"].(map[string]any)
	_, hasTCP := grpc["tcp_address"]
	for _, m := range legacyMoves {
		t, ok := raw[m.table].(map[string]any)
		if !ok {
			continue
		}
		v, ok := t[m.key]
		if !ok {
			continue
		}
		move(m.table, m.key, m.uri, m.to, v)
		if hasTCP && m.table == "grpc" && (m.key == "max_recv_message_size" || m.key == "max_send_message_size") {
			move(m.table, m.key, ServerGRPCTCP, m.to, v)
		}
	}
	for _, m := range legacyMoves {
		if t, ok := raw[m.table].(map[string]any); ok {
			delete(t, m.key)
		}
	}
	var tables []string
	for table := range moved {
		tables = append(tables, table)
		if t, ok := raw[table].(map[string]any); ok && len(t) == 0 {
			delete(raw, table)
		}
	}
	if len(plugins) > 0 {
		raw["plugins"] = plugins
	}
	sort.Strings(tables)
	return tables
}

// legacyTableIn names the server section a version 3 table's keys went to,
// for the warning about a version 4 file that still has them.
func legacyTableIn(table string) string {
	switch table {
	case "grpc":
		return formatKey([]string{"plugins", ServerGRPC}) + " and " + formatKey([]string{"plugins", ServerGRPCTCP})
	case "ttrpc":
		return formatKey([]string{"plugins", ServerTTRPC})
	case "debug":
		return formatKey([]string{"plugins", ServerDebug}) + " (address, uid, gid)"
	}
	return formatKey([]string{"plugins", ServerMetrics}) + " and " + formatKey([]string{"plugins", MetricsGRPCPrometheus})
}

// unsupported reports the settings c has that hull reads but does not act
// on, each by its key, so that nothing a containerd file sets is dropped
// silently.
func (c *Config) unsupported() []Warning {
	var ws []Warning
	at := func(msg string, parts ...string) {
		p := c.src.lookup(parts)
		ws = append(ws, Warning{File: p.file, Line: p.line, Column: p.col, Key: formatKey(parts), Message: msg})
	}
	for _, k := range []struct {
		key string
		v   int
	}{{"uid", c.TTRPC.UID}, {"gid", c.TTRPC.GID}} {
		if k.v != 0 {
			at(fmt.Sprintf("%s = %d is not supported: the ttrpc socket is root's, mode 0600",
				quoteKey(formatKey([]string{"plugins", ServerTTRPC, k.key})), k.v), "plugins", ServerTTRPC, k.key)
		}
	}
	if c.tcpCommonName != "" {
		at(fmt.Sprintf("%s = %q is not supported: TCP clients are verified against tls_ca only",
			quoteKey(formatKey([]string{"plugins", ServerGRPCTCP, "tls_common_name"})), c.tcpCommonName), "plugins", ServerGRPCTCP, "tls_common_name")
	}
	for _, k := range []struct {
		key       string
		tcp, unix int
	}{{"max_recv_message_size", c.tcpMaxRecv, c.GRPC.MaxRecvMsgSize}, {"max_send_message_size", c.tcpMaxSend, c.GRPC.MaxSendMsgSize}} {
		if c.GRPC.TCPAddress != "" && k.tcp != 0 && k.tcp != k.unix {
			at(fmt.Sprintf("%s = %d is not supported: hulld serves TCP with the gRPC socket's limit, %d",
				quoteKey(formatKey([]string{"plugins", ServerGRPCTCP, k.key})), k.tcp, k.unix), "plugins", ServerGRPCTCP, k.key)
		}
	}
	if c.Debug.LogTraceID {
		at(`"debug.log_trace_id" is not supported: hull does not trace requests`, "debug", "log_trace_id")
	}
	if c.Temp != "" {
		at(fmt.Sprintf(`"temp" = %q is not supported: hull makes temporary files under its state directory or $TMPDIR`, c.Temp), "temp")
	}
	if c.PluginDir != "" {
		at(fmt.Sprintf(`"plugin_dir" = %q is not supported: hull does not load Go plugins; use proxy_plugins`, c.PluginDir), "plugin_dir")
	}
	for _, name := range sortedKeys(c.Timeouts) {
		at(fmt.Sprintf("timeout %q is not supported: hull's plugins keep their own timeouts", name), "timeouts", name)
	}
	for _, name := range sortedKeys(c.StreamProcessors) {
		at(fmt.Sprintf("stream processor %q is not supported: hull applies only the layer media types it knows", name), "stream_processors", name)
	}
	return ws
}
