package config

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
)

// Validator is implemented by a plugin's config type whose values need
// more checking than their TOML types give: durations, sizes, enumerations,
// paths that must be absolute. Check calls it on the plugin's section
// decoded over its defaults, and the plugin's Init can call it too, so that
// `hulld config check` and a starting hulld refuse the same values with
// the same words.
//
// Errors should be *ValueError (see InvalidValue), or wrap or join them,
// so that Check can point at the key's line; another error is reported at
// its section, or, when its message begins with a key of the section (as
// "cni.ip_pref \"x\": ..."), at that key.
type Validator interface {
	Validate() error
}

// ValueError is one bad value in a plugin's section.
type ValueError struct {
	// Key is the key's path inside the section: {"schedule_delay"}, or
	// {"runtimes", "io.containerd.runc.v2", "binary"}.
	Key []string
	// Value is the value as decoded.
	Value any
	// Reason says what is wrong and what would be right.
	Reason string
}

// InvalidValue returns a *ValueError for the key at path (dotted parts of
// the key inside the plugin's section).
func InvalidValue(value any, reason string, path ...string) *ValueError {
	return &ValueError{Key: path, Value: value, Reason: reason}
}

// Error names the key and the value.
func (e *ValueError) Error() string {
	return fmt.Sprintf("%s = %s: %s", formatKey(e.Key), valueText(e.Value), e.Reason)
}

// Unwrap makes every ValueError an errdefs.ErrInvalidArgument.
func (e *ValueError) Unwrap() error { return errdefs.ErrInvalidArgument }

// valueText writes v the way it would appear in TOML, near enough for a
// message: strings quoted, the rest as Go prints them.
func valueText(v any) string {
	if s, ok := v.(string); ok {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprint(v)
}

// Check validates every value hulld parses when it starts: the top-level
// paths and limits, the listener sections, the plugin lists, and the
// section of every plugin that is not disabled, decoded over its defaults
// and, when its type is a Validator, validated. A hulld that passes Check
// starts as far as its configuration is concerned; one that fails it must
// not start. The error joins one *Error per problem, each with the file,
// line and column of the key where the file set it.
func (c *Config) Check(plugins []PluginSection) error {
	var errs []error
	bad := func(parts []string, value any, reason string) {
		key := formatKey(parts)
		errs = append(errs, errAt(c.src.lookup(parts), key, fmt.Sprintf("invalid value %s for %s: %s", valueText(value), quoteKey(key), reason)))
	}
	for _, k := range []struct {
		parts []string
		path  string
	}{{[]string{"root"}, c.Root}, {[]string{"state"}, c.State}} {
		if !filepath.IsAbs(k.path) {
			bad(k.parts, k.path, "must be an absolute path")
		}
	}
	if c.OOMScore < -1000 || c.OOMScore > 1000 {
		bad([]string{"oom_score"}, c.OOMScore, "must be between -1000 and 1000")
	}
	for _, s := range []struct {
		uri, key, path string
	}{{ServerGRPC, "address", c.GRPC.Address}, {ServerTTRPC, "address", c.TTRPC.Address}, {ServerDebug, "address", c.Debug.Address}} {
		if s.path != "" && !filepath.IsAbs(s.path) {
			bad([]string{"plugins", s.uri, s.key}, s.path, "must be the absolute path of a unix socket")
		}
	}
	for _, s := range []struct {
		key string
		n   int
	}{{"max_recv_message_size", c.GRPC.MaxRecvMsgSize}, {"max_send_message_size", c.GRPC.MaxSendMsgSize}} {
		if s.n <= 0 {
			bad([]string{"plugins", ServerGRPC, s.key}, s.n, "must be a positive number of bytes")
		}
	}
	for _, s := range []struct {
		uri, addr string
	}{{ServerGRPCTCP, c.GRPC.TCPAddress}, {ServerMetrics, c.Metrics.Address}} {
		if s.addr == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(s.addr); err != nil || port == "" {
			bad([]string{"plugins", s.uri, "address"}, s.addr, "must be host:port, such as \"127.0.0.1:1338\"")
		}
	}
	if (c.GRPC.TCPTLSCert == "") != (c.GRPC.TCPTLSKey == "") {
		bad([]string{"plugins", ServerGRPCTCP, "tls_cert"}, c.GRPC.TCPTLSCert, "tls_cert and tls_key go together: set both, or neither")
	}
	for name, p := range c.ProxyPlugins {
		parts := []string{"proxy_plugins", name}
		switch p.Type {
		case "snapshot", "content":
			if !filepath.IsAbs(p.Address) {
				bad(append(parts, "address"), p.Address, "must be the absolute path of the plugin's unix socket")
			}
		case "sandbox", "diff":
			// Registered as failing (not supported), which stops
			// nothing: no plugin of hull's needs them.
		default:
			bad(append(parts, "type"), p.Type, "use snapshot, content, sandbox or diff")
		}
	}
	known := map[string]bool{}
	for _, p := range plugins {
		known[p.URI] = true
	}
	for name, p := range c.ProxyPlugins {
		switch p.Type {
		case "snapshot":
			known["io.containerd.snapshotter.v1."+name] = true
		case "content":
			known["io.containerd.content.v1."+name] = true
		}
	}
	for _, uri := range c.RequiredPlugins {
		switch {
		case c.PluginDisabled(uri):
			bad([]string{"required_plugins"}, uri, "the plugin is also in disabled_plugins")
		case !known[uri]:
			bad([]string{"required_plugins"}, uri, "hull has no such plugin")
		}
	}
	for _, p := range plugins {
		if p.Config == nil || c.PluginDisabled(p.URI) || isServerSection(p.URI) {
			continue
		}
		into := CopyConfig(p.Config)
		if _, err := c.DecodePlugin(p.URI, into); err != nil {
			errs = append(errs, err)
			continue
		}
		v, ok := into.(Validator)
		if !ok {
			continue
		}
		for _, err := range leafErrors(v.Validate()) {
			errs = append(errs, c.pluginValueError(p.URI, err))
		}
	}
	sortErrors(errs)
	return errors.Join(errs...)
}

// leafErrors flattens joined errors, so that a Validate reporting several
// values gets each its own position.
func leafErrors(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leafErrors(e)...)
		}
		return out
	}
	return []error{err}
}

// pluginValueError places a Validate error of plugin uri's section at the
// key it names.
func (c *Config) pluginValueError(uri string, err error) error {
	section := []string{"plugins", uri}
	var ve *ValueError
	if errors.As(err, &ve) {
		parts := append(append([]string(nil), section...), ve.Key...)
		key := formatKey(parts)
		return errAt(c.src.lookup(parts), key, fmt.Sprintf("invalid value %s for %s: %s", valueText(ve.Value), quoteKey(key), ve.Reason))
	}
	// A plain error that begins with a key of the section, as the CRI
	// sections' do: point at that key when the file has it.
	parts := section
	if first, _, ok := strings.Cut(err.Error(), " "); ok {
		cand := append(append([]string(nil), section...), strings.Split(strings.TrimSuffix(first, ":"), ".")...)
		if _, written := c.src[pathKey(cand)]; written {
			parts = cand
		}
	}
	key := formatKey(parts)
	// The class's own words ("invalid argument") add nothing here.
	msg := strings.TrimSuffix(err.Error(), ": "+errdefs.ErrInvalidArgument.Error())
	return errAt(c.src.lookup(parts), key, fmt.Sprintf("invalid value in %s: %s", quoteKey(formatKey(section)), msg))
}

// sortErrors orders Check's errors as the file reads.
func sortErrors(errs []error) {
	pos := func(e error) (string, int, int) {
		var ce *Error
		if errors.As(e, &ce) {
			return ce.File, ce.Line, ce.Column
		}
		return "", 0, 0
	}
	for i := 1; i < len(errs); i++ {
		for j := i; j > 0; j-- {
			af, al, ac := pos(errs[j-1])
			bf, bl, bc := pos(errs[j])
			if af < bf || af == bf && (al < bl || al == bl && ac <= bc) {
				break
			}
			errs[j-1], errs[j] = errs[j], errs[j-1]
		}
	}
}
