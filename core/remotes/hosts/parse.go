package hosts

import (
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// fileConfig is a parsed hosts.toml, before any certificate is read.
type fileConfig struct {
	// mirrors are the [host."..."] entries in file order.
	mirrors []entry
	// server is the top-level entry; its url is nil when the file has no
	// server key, meaning "the registry's default server".
	server entry
}

// entry is one host's settings as written in hosts.toml.
type entry struct {
	// url is the host's URL with the API root already worked out in Path.
	url *url.URL
	// file and name say where the entry is written, for error messages;
	// name is `host "<url>"`, or "" for the top-level (server) entry.
	file string
	name string

	capabilities Capabilities
	capsSet      bool
	caFiles      []string
	caLine       string
	clientPairs  [][2]string
	clientLine   string
	skipVerify   bool
	header       http.Header
	dialTimeout  time.Duration
	proxy        *url.URL
}

// The keys a host entry may have; anything else is a mistake we report
// rather than ignore, because an ignored typo (say "skip-verify") silently
// changes what is trusted.
var entryKeys = []string{"capabilities", "ca", "client", "skip_verify", "header", "override_path", "dial_timeout", "proxy"}

// positions maps a key path (joined with "\x00") to the line and column it
// is first written at, and lists [host."..."] names in the order they first
// appear.
type positions struct {
	lines map[string]int
	cols  map[string]int
	hosts []string
}

// at returns "line:column" of a key path, or "" when it is not known.
func (p *positions) at(keys ...string) string {
	k := strings.Join(keys, "\x00")
	if p.lines[k] == 0 {
		return ""
	}
	return fmt.Sprintf("%d:%d", p.lines[k], p.cols[k])
}

// parseFile parses the hosts.toml at file (used for messages and to resolve
// relative paths) with contents data. It touches no files.
func parseFile(file string, data []byte) (*fileConfig, error) {
	// Decoding into a generic map gets TOML's own rules (duplicate keys,
	// redefined tables) checked by go-toml; the AST walk below only adds
	// what the map loses: line numbers and the order of the hosts.
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return nil, fmt.Errorf("%s:%d:%d: invalid TOML: %s: %w", file, row, col, strings.TrimPrefix(de.Error(), "toml: "), errdefs.ErrInvalidArgument)
		}
		return nil, fmt.Errorf("%s: invalid TOML: %v: %w", file, err, errdefs.ErrInvalidArgument)
	}
	pos, err := scanPositions(data)
	if err != nil {
		return nil, fmt.Errorf("%s: invalid TOML: %v: %w", file, err, errdefs.ErrInvalidArgument)
	}
	dir := filepath.Dir(file)

	cfg := &fileConfig{}
	top := map[string]any{}
	keys := sortedKeys(doc)
	for _, k := range keys {
		switch k {
		case "server", "host":
		default:
			top[k] = doc[k]
		}
	}
	for _, k := range keys {
		if k == "server" || k == "host" || contains(entryKeys, k) {
			continue
		}
		return nil, fmt.Errorf("%s:%s: key %q: unknown key (use server, host, %s): %w", file, pos.at(k), k, strings.Join(entryKeys, ", "), errdefs.ErrInvalidArgument)
	}

	server := entry{file: file}
	var rawServer string
	if v, ok := doc["server"]; ok {
		s, ok := v.(string)
		if !ok {
			return nil, server.errorf(pos.at("server"), "server", "want a URL string, got %s", typeName(v))
		}
		rawServer = s
	}
	if err := server.fill(top, pos, nil, dir); err != nil {
		return nil, err
	}
	if rawServer != "" {
		u, err := hostURL(rawServer, overridePath(top))
		if err != nil {
			return nil, server.errorf(pos.at("server"), "server", "%v", err)
		}
		server.url = u
	}
	if !server.capsSet {
		server.capabilities = CapabilityPull | CapabilityResolve | CapabilityPush
	}
	cfg.server = server

	if v, ok := doc["host"]; ok {
		table, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s:%s: key %q: want tables [host.\"<url>\"], got %s: %w", file, pos.at("host"), "host", typeName(v), errdefs.ErrInvalidArgument)
		}
		order := pos.hosts
		if len(order) != len(table) {
			// Cannot happen for a document go-toml accepted, but a
			// wrong order would be worse than a sorted one.
			order = sortedKeys(table)
		}
		for _, name := range order {
			hv, ok := table[name]
			if !ok {
				continue
			}
			m := entry{file: file, name: fmt.Sprintf("host %q", redactUserinfo(name))}
			settings, ok := hv.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%s:%s: %s: want a table of settings, got %s: %w", file, pos.at("host", name), m.name, typeName(hv), errdefs.ErrInvalidArgument)
			}
			for _, k := range sortedKeys(settings) {
				if !contains(entryKeys, k) {
					return nil, m.errorf(pos.at("host", name, k), k, "unknown key (use %s)", strings.Join(entryKeys, ", "))
				}
			}
			if err := m.fill(settings, pos, []string{"host", name}, dir); err != nil {
				return nil, err
			}
			u, err := hostURL(name, overridePath(settings))
			if err != nil {
				return nil, fmt.Errorf("%s:%s: %s: %v: %w", file, pos.at("host", name), m.name, err, errdefs.ErrInvalidArgument)
			}
			m.url = u
			if !m.capsSet {
				// A mirror is trusted to serve content by digest and
				// to resolve tags; pushing to one is never what is
				// meant unless the file says so.
				m.capabilities = CapabilityPull | CapabilityResolve
			}
			cfg.mirrors = append(cfg.mirrors, m)
		}
	}
	return cfg, nil
}

// overridePath reads override_path ahead of the other keys because the
// URL's API root depends on it; its type is checked by fill.
func overridePath(settings map[string]any) bool {
	b, _ := settings["override_path"].(bool)
	return b
}

// fill reads the entry keys of settings; prefix is the key path of the
// table they are in (nil for top level), used to find line numbers.
func (e *entry) fill(settings map[string]any, pos *positions, prefix []string, dir string) error {
	line := func(k string) string { return pos.at(append(append([]string(nil), prefix...), k)...) }
	for _, k := range entryKeys {
		v, ok := settings[k]
		if !ok {
			continue
		}
		ln := line(k)
		switch k {
		case "capabilities":
			list, ok := v.([]any)
			if !ok {
				return e.errorf(ln, k, "want an array of strings (pull, resolve, push), got %s", typeName(v))
			}
			e.capsSet = true
			for _, c := range list {
				s, ok := c.(string)
				if !ok {
					return e.errorf(ln, k, "want an array of strings (pull, resolve, push), got an element of type %s", typeName(c))
				}
				switch strings.ToLower(s) {
				case "pull":
					e.capabilities |= CapabilityPull
				case "resolve":
					e.capabilities |= CapabilityResolve
				case "push":
					e.capabilities |= CapabilityPush
				default:
					return e.errorf(ln, k, "unknown capability %q (use pull, resolve, push)", s)
				}
			}
		case "ca":
			e.caLine = ln
			switch v := v.(type) {
			case string:
				if v == "" {
					return e.errorf(ln, k, "empty path")
				}
				e.caFiles = []string{absPath(dir, v)}
			case []any:
				for _, p := range v {
					s, ok := p.(string)
					if !ok || s == "" {
						return e.errorf(ln, k, "want a path or an array of paths, got an element %s", describe(p))
					}
					e.caFiles = append(e.caFiles, absPath(dir, s))
				}
			default:
				return e.errorf(ln, k, "want a path or an array of paths, got %s", typeName(v))
			}
		case "client":
			e.clientLine = ln
			pairs, err := clientPairs(v, dir)
			if err != nil {
				return e.errorf(ln, k, "%v", err)
			}
			e.clientPairs = pairs
		case "skip_verify":
			b, ok := v.(bool)
			if !ok {
				return e.errorf(ln, k, "want true or false, got %s", typeName(v))
			}
			e.skipVerify = b
		case "override_path":
			if _, ok := v.(bool); !ok {
				return e.errorf(ln, k, "want true or false, got %s", typeName(v))
			}
		case "header":
			h, err := header(v)
			if err != nil {
				return e.errorf(ln, k, "%v", err)
			}
			e.header = h
		case "dial_timeout":
			s, ok := v.(string)
			if !ok {
				return e.errorf(ln, k, "want a duration string such as \"5s\", got %s", typeName(v))
			}
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 {
				return e.errorf(ln, k, "invalid duration %q: want a positive duration such as \"5s\"", s)
			}
			e.dialTimeout = d
		case "proxy":
			s, ok := v.(string)
			if !ok {
				return e.errorf(ln, k, "want a proxy URL string, got %s", typeName(v))
			}
			u, err := proxyURL(s)
			if err != nil {
				return e.errorf(ln, k, "%v", err)
			}
			e.proxy = u
		}
	}
	return nil
}

// clientPairs accepts the three forms containerd documents: a combined
// PEM path, an array of them, or an array of [cert, key] pairs where an
// empty key means the key is in the cert file.
func clientPairs(v any, dir string) ([][2]string, error) {
	const want = `want a path, an array of paths, or an array of ["cert", "key"] pairs`
	switch v := v.(type) {
	case string:
		if v == "" {
			return nil, fmt.Errorf("empty path")
		}
		return [][2]string{{absPath(dir, v), ""}}, nil
	case []any:
		var pairs [][2]string
		for _, el := range v {
			switch el := el.(type) {
			case string:
				if el == "" {
					return nil, fmt.Errorf("empty path")
				}
				pairs = append(pairs, [2]string{absPath(dir, el), ""})
			case []any:
				if len(el) != 2 {
					return nil, fmt.Errorf("%s, got a pair of %d elements", want, len(el))
				}
				cert, ok1 := el[0].(string)
				key, ok2 := el[1].(string)
				if !ok1 || !ok2 || cert == "" {
					return nil, fmt.Errorf("%s, got %s", want, describe(el))
				}
				p := [2]string{absPath(dir, cert), ""}
				if key != "" {
					p[1] = absPath(dir, key)
				}
				pairs = append(pairs, p)
			default:
				return nil, fmt.Errorf("%s, got an element %s", want, describe(el))
			}
		}
		return pairs, nil
	default:
		return nil, fmt.Errorf("%s, got %s", want, typeName(v))
	}
}

// header turns the header table into an http.Header. Names and values are
// checked here because a stray newline in a value would otherwise split
// the request when it is sent.
func header(v any) (http.Header, error) {
	table, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("want a table of header names to strings or arrays of strings, got %s", typeName(v))
	}
	h := http.Header{}
	for _, name := range sortedKeys(table) {
		if !validHeaderName(name) {
			return nil, fmt.Errorf("invalid header name %q", name)
		}
		var values []string
		switch val := table[name].(type) {
		case string:
			values = []string{val}
		case []any:
			for _, el := range val {
				s, ok := el.(string)
				if !ok {
					return nil, fmt.Errorf("header %q: want a string or an array of strings, got an element %s", name, describe(el))
				}
				values = append(values, s)
			}
		default:
			return nil, fmt.Errorf("header %q: want a string or an array of strings, got %s", name, typeName(val))
		}
		for _, s := range values {
			if strings.ContainsAny(s, "\r\n\x00") {
				return nil, fmt.Errorf("header %q: value contains a line break or NUL", name)
			}
		}
		key := textproto.CanonicalMIMEHeaderKey(name)
		h[key] = append(h[key], values...)
	}
	return h, nil
}

// validHeaderName reports whether s is an HTTP token (RFC 9110).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// hostURL parses a server or [host] URL and works out its API root. As in
// containerd, a bare host[:port] means https.
func hostURL(raw string, override bool) (*url.URL, error) {
	s := raw
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	shown := redactUserinfo(raw)
	u, err := url.Parse(s)
	if err != nil {
		// url.Parse's error repeats the whole input, password included.
		return nil, fmt.Errorf("invalid URL %q", shown)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("URL %q: scheme must be http or https", shown)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("URL %q has no host", shown)
	case u.User != nil:
		return nil, fmt.Errorf("URL %q must not contain credentials", shown)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, fmt.Errorf("URL %q must not have a query or fragment", shown)
	}
	if port := u.Port(); port != "" && !validPort(port) {
		return nil, fmt.Errorf("URL %q: invalid port %q", shown, port)
	}
	p := ""
	if u.Path != "" {
		p = path.Clean("/" + u.Path)
		if p == "/" {
			p = ""
		}
	}
	if !override && !strings.HasSuffix(p, "/v2") {
		p += "/v2"
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host, Path: p}, nil
}

// proxyURL checks a proxy setting the way containerd documents it: what
// Go's http.Transport can use, and nothing it would silently drop.
func proxyURL(raw string) (*url.URL, error) {
	// A proxy URL may carry the proxy's user and password, which is
	// fine to use but not to print.
	shown := redactUserinfo(raw)
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("invalid proxy URL %q", shown)
	}
	switch u.Scheme {
	case "http", "https", "socks5", "socks5h":
	default:
		return nil, fmt.Errorf("proxy URL %q: scheme must be http, https, socks5 or socks5h", shown)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("proxy URL %q has no host", shown)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return nil, fmt.Errorf("proxy URL %q must not have a path, query or fragment", shown)
	}
	return u, nil
}

// redactUserinfo replaces the user[:password] part of a URL-ish string,
// parseable or not, so that error messages never show a password.
func redactUserinfo(raw string) string {
	rest, prefix := raw, ""
	if i := strings.Index(raw, "://"); i >= 0 {
		prefix, rest = raw[:i+3], raw[i+3:]
	}
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
	}
	at := strings.LastIndexByte(authority, '@')
	if at < 0 {
		return raw
	}
	return prefix + "xxxxx" + rest[at:]
}

func validPort(p string) bool {
	if len(p) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
		n = n*10 + int(p[i]-'0')
	}
	return n > 0 && n <= 65535
}

func absPath(dir, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(dir, p)
}

// errorf formats an error about key k of the entry, at line ln.
func (e *entry) errorf(ln string, k, format string, args ...any) error {
	where := e.file
	if ln != "" {
		where = e.file + ":" + ln
	}
	subject := fmt.Sprintf("key %q", k)
	if e.name != "" {
		subject = e.name + " " + subject
	}
	return fmt.Errorf("%s: %s: %s: %w", where, subject, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

// scanPositions walks the document's AST for the line of every key path
// and the order of the [host] entries, which decoding into a map loses.
func scanPositions(data []byte) (*positions, error) {
	pos := &positions{lines: map[string]int{}, cols: map[string]int{}}
	seenHost := map[string]bool{}
	// Line numbers come from newline offsets found once: the parser's own
	// Shape rescans the document from the start on every call.
	var newlines []int
	for i, c := range data {
		if c == '\n' {
			newlines = append(newlines, i)
		}
	}
	lineOf := func(r unstable.Range) int { return sort.SearchInts(newlines, int(r.Offset)) + 1 }
	colOf := func(r unstable.Range) int {
		i := sort.SearchInts(newlines, int(r.Offset))
		if i == 0 {
			return int(r.Offset) + 1
		}
		return int(r.Offset) - newlines[i-1]
	}
	record := func(path []string, r unstable.Range) {
		for i := 1; i <= len(path); i++ {
			k := strings.Join(path[:i], "\x00")
			if _, ok := pos.lines[k]; !ok {
				pos.lines[k] = lineOf(r)
				pos.cols[k] = colOf(r)
			}
		}
		if len(path) >= 2 && path[0] == "host" && !seenHost[path[1]] {
			seenHost[path[1]] = true
			pos.hosts = append(pos.hosts, path[1])
		}
	}
	var walkKeyValue func(n *unstable.Node, table []string)
	walkKeyValue = func(n *unstable.Node, table []string) {
		path := append([]string(nil), table...)
		var first unstable.Range
		it := n.Key()
		for it.Next() {
			k := it.Node()
			if len(path) == len(table) {
				first = k.Raw
			}
			path = append(path, string(k.Data))
		}
		record(path, first)
		if v := n.Value(); v != nil && v.Kind == unstable.InlineTable {
			children := v.Children()
			for children.Next() {
				if c := children.Node(); c.Kind == unstable.KeyValue {
					walkKeyValue(c, path)
				}
			}
		}
	}

	var p unstable.Parser
	p.Reset(data)
	var table []string
	for p.NextExpression() {
		n := p.Expression()
		switch n.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = table[:0:0]
			var first unstable.Range
			it := n.Key()
			for it.Next() {
				if len(table) == 0 {
					first = it.Node().Raw
				}
				table = append(table, string(it.Node().Data))
			}
			record(table, first)
		case unstable.KeyValue:
			walkKeyValue(n, table)
		}
	}
	return pos, p.Error()
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// typeName names a decoded TOML value's type in TOML's words.
func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	case nil:
		return "nothing"
	default:
		return "a date/time"
	}
}

// describe is typeName, plus the value when it is a short scalar, for
// messages about one element of an array.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("%q", v)
	case bool, int64, float64:
		return fmt.Sprintf("%s %v", typeName(v), v)
	default:
		return typeName(v)
	}
}
