package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/pelletier/go-toml/v2"
)

// Error is a problem in a config file that stops it from loading. It
// carries the position so that callers (and tests) need not parse the
// message, and it wraps errdefs.ErrInvalidArgument because the fix is
// always in the caller's input.
type Error struct {
	// File is the config file at fault.
	File string
	// Line and Column locate the problem, both 1-based; 0 when unknown.
	Line, Column int
	// Key is the dotted key at fault, when there is one.
	Key string
	// Msg describes the problem; when Line is 0 it names the file itself.
	Msg string
}

// Error formats the error as file:line:col: message when the position is
// known.
func (e *Error) Error() string {
	if e.Line > 0 {
		return location(e.File, e.Line, e.Column) + ": " + e.Msg
	}
	return e.Msg
}

// Unwrap makes every config error an errdefs.ErrInvalidArgument.
func (e *Error) Unwrap() error { return errdefs.ErrInvalidArgument }

// fileSystem is what loading needs from the OS; tests and fuzzing swap in
// an in-memory one so that imports cannot reach the real disk.
type fileSystem interface {
	ReadFile(name string) ([]byte, error)
	Glob(pattern string) ([]string, error)
}

type osFS struct{}

func (osFS) ReadFile(name string) ([]byte, error)  { return os.ReadFile(name) }
func (osFS) Glob(pattern string) ([]string, error) { return filepath.Glob(pattern) }

// Load reads the config file at path and the files it imports.
//
// Imports are read depth first, in the order listed, and each is merged
// over what was read before it: scalars and arrays are replaced, tables
// (plugin sections, timeouts) are merged key by key, entries of
// stream_processors and proxy_plugins are replaced whole, and
// disabled_plugins and required_plugins are appended to. An imported file
// without a version key takes its importer's version; one with a higher
// version than its importer is an error.
//
// Version 2 files are migrated in memory, with a Warning; version 3's
// listener tables are moved into version 4's server sections, silently in a
// version 3 file and with a Warning in a version 4 one. Unknown keys
// outside plugin sections are Warnings; plugin sections are only checked by
// Validate and DecodePlugin, which know the plugins. Defaults are applied to
// whatever is left empty.
func Load(path string) (*Config, []Warning, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read config: %w", err)
	}
	return load(osFS{}, data, path)
}

// Parse is Load for a file already in memory; file names it in messages and
// anchors relative imports.
func Parse(data []byte, file string) (*Config, []Warning, error) {
	return load(osFS{}, data, file)
}

func load(fsys fileSystem, data []byte, file string) (*Config, []Warning, error) {
	l := &loader{fs: fsys, done: map[string]bool{}, merged: map[string]any{}, src: sourceMap{}}
	if err := l.file(data, file, 0); err != nil {
		return nil, l.warnings, err
	}
	c, err := l.build()
	if err != nil {
		return nil, l.warnings, err
	}
	return c, l.warnings, nil
}

type loader struct {
	fs       fileSystem
	done     map[string]bool
	stack    []string
	warnings []Warning
	merged   map[string]any
	src      sourceMap
	imported []string
}

// doc is one file, read and migrated to version 4, before merging.
type doc struct {
	raw     map[string]any
	src     sourceMap
	version int
	imports []string
}

func (l *loader) file(data []byte, name string, parentVersion int) error {
	id := name
	if name != "" {
		if abs, err := filepath.Abs(name); err == nil {
			id = abs
		}
	}
	for i, s := range l.stack {
		if s == id {
			chain := append(append([]string(nil), l.stack[i:]...), id)
			return &Error{File: name, Msg: fmt.Sprintf("%s: import cycle: %s", name, strings.Join(chain, " -> "))}
		}
	}
	if l.done[id] {
		return nil
	}
	l.done[id] = true
	if parentVersion != 0 {
		l.imported = append(l.imported, id)
	}
	l.stack = append(l.stack, id)
	defer func() { l.stack = l.stack[:len(l.stack)-1] }()

	d, ws, err := readDoc(data, name, parentVersion)
	l.warnings = append(l.warnings, ws...)
	if err != nil {
		return err
	}
	mergeTop(l.merged, d.raw)
	l.src.merge(d.src)

	dir := filepath.Dir(name)
	if name == "" {
		dir = "."
	}
	for _, imp := range d.imports {
		at := d.src.lookup([]string{"imports"})
		paths, err := l.resolve(dir, imp)
		if err != nil {
			return errAt(pos{name, at.line, at.col}, "imports", fmt.Sprintf("import %q: %v", imp, err))
		}
		for _, p := range paths {
			data, err := l.fs.ReadFile(p)
			if err != nil {
				return fmt.Errorf("%s: import %q: %w", location(name, at.line, at.col), imp, err)
			}
			if err := l.file(data, p, d.version); err != nil {
				return err
			}
		}
	}
	return nil
}

// resolve turns one imports entry into file paths: relative to the
// importing file, and expanded when it is a glob (a glob matching nothing
// is not an error, so that an empty conf.d is fine).
func (l *loader) resolve(dir, imp string) ([]string, error) {
	if imp == "" {
		return nil, errors.New("empty path")
	}
	p := imp
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	if !strings.ContainsAny(imp, `*?[\`) {
		return []string{p}, nil
	}
	m, err := l.fs.Glob(p)
	if err != nil {
		return nil, err
	}
	sort.Strings(m)
	return m, nil
}

// readDoc parses one file, checks its top-level keys and brings it to
// version 4.
func readDoc(data []byte, file string, parentVersion int) (*doc, []Warning, error) {
	raw := map[string]any{}
	if err := toml.Unmarshal(data, &raw); err != nil {
		return nil, nil, syntaxError(file, err)
	}
	d := &doc{raw: raw, src: indexPositions(data, file)}
	vpos := d.src.lookup([]string{"version"})

	version, declared, err := fileVersion(raw, file, vpos)
	if err != nil {
		return nil, nil, err
	}
	var ws []Warning
	inferredV2 := false
	switch {
	case version == 1:
		return nil, nil, v1Error(file)
	case version > CurrentVersion:
		return nil, nil, &Error{File: file, Line: vpos.line, Column: vpos.col, Key: "version",
			Msg: fmt.Sprintf("config file %s is version %d; hull reads versions 2 to %d", file, version, CurrentVersion)}
	case !declared && parentVersion != 0:
		version = parentVersion
	case !declared && hasV2Signs(raw):
		version, inferredV2 = 2, true
	case !declared:
		version = CurrentVersion
		ws = append(ws, Warning{File: file, Message: fmt.Sprintf("no version key: read as version %d; add \"version = %d\" at the top", CurrentVersion, CurrentVersion)})
	}
	if parentVersion != 0 && version > parentVersion {
		return nil, nil, &Error{File: file, Line: vpos.line, Column: vpos.col, Key: "version",
			Msg: fmt.Sprintf("imported config file %s is version %d, newer than the version %d of the file importing it", file, version, parentVersion)}
	}
	d.version = version

	// Decode strictly for the top-level keys' types and names, version
	// 3's listener tables included. Plugin sections land in a
	// map[string]any and pass whatever they hold.
	var top legacyTop
	err = toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields().Decode(&top)
	var strict *toml.StrictMissingError
	switch {
	case errors.As(err, &strict):
		for _, e := range strict.Errors {
			line, col := e.Position()
			ws = append(ws, unknownKey(reflect.TypeFor[legacyTop](), nil, e.Key(), pos{file, line, col}, e.Error()))
		}
	case err != nil:
		return nil, ws, typeError(file, err, nil, d.src)
	}
	d.imports = top.Imports

	if version == 2 {
		migrate2to3(raw, d.src)
		msg := fmt.Sprintf("config version 2 was migrated to version %d in memory; run \"hulld config migrate %s\" to update the file", CurrentVersion, file)
		if inferredV2 {
			msg = fmt.Sprintf("no version key, and the CRI settings under %q are laid out as in version 2: migrated to version %d in memory; run \"hulld config migrate %s\" to update the file", criGRPC, CurrentVersion, file)
		}
		ws = append(ws, Warning{File: file, Line: vpos.line, Column: vpos.col, Message: msg})
	}
	for _, table := range migrate3to4(raw, d.src) {
		if version < 4 {
			continue
		}
		p := d.src.lookup([]string{table})
		ws = append(ws, Warning{File: file, Line: p.line, Column: p.col, Key: table,
			Message: fmt.Sprintf("table %q is laid out as in version 3: read into %s, where version 4 keeps it", table, legacyTableIn(table))})
	}
	delete(raw, "version")
	delete(raw, "imports")
	return d, ws, nil
}

// fileVersion reads the version key, and refuses version 1 files both when
// they say so and when, as containerd 1.x's files usually did, they say
// nothing but use version 1's short plugin names.
func fileVersion(raw map[string]any, file string, vpos pos) (version int, declared bool, err error) {
	v, ok := raw["version"]
	if !ok {
		if hasV1Signs(raw) {
			return 0, false, v1Error(file)
		}
		return 0, false, nil
	}
	n, isInt := v.(int64)
	if !isInt {
		return 0, false, &Error{File: file, Line: vpos.line, Column: vpos.col, Key: "version",
			Msg: fmt.Sprintf("version must be an integer, not %s", tomlTypeName(v))}
	}
	if n < 1 || n > 1<<20 {
		return 0, false, &Error{File: file, Line: vpos.line, Column: vpos.col, Key: "version",
			Msg: fmt.Sprintf("config file %s has version %d; hull reads versions 2 to %d", file, n, CurrentVersion)}
	}
	return int(n), true, nil
}

func v1Error(file string) error {
	return &Error{File: file, Msg: fmt.Sprintf("config file %s is version 1, which hull does not read: run \"hulld config migrate %s\"", file, file)}
}

func syntaxError(file string, err error) error {
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, col := de.Position()
		return &Error{File: file, Line: line, Column: col, Key: formatKey(de.Key()), Msg: "syntax error: " + strings.TrimPrefix(de.Error(), "toml: ")}
	}
	return &Error{File: file, Msg: fmt.Sprintf("%s: syntax error: %v", file, err)}
}

// stripGoField removes go-toml's naming of the Go field a value did not
// fit ("struct field config.Config.OOMScore of type int" becomes "int"),
// which means nothing to someone editing a TOML file.
func stripGoField(msg string) string {
	i := strings.Index(msg, "struct field ")
	if i < 0 {
		return msg
	}
	j := strings.Index(msg[i:], " of type ")
	if j < 0 {
		return msg
	}
	return msg[:i] + msg[i+j+len(" of type "):]
}

// errAt builds an Error at p, naming the file in the message when the
// line is unknown (Error only prefixes positions it has).
func errAt(p pos, key, msg string) *Error {
	if p.line == 0 && p.file != "" {
		msg = p.file + ": " + msg
	}
	return &Error{File: p.file, Line: p.line, Column: p.col, Key: key, Msg: msg}
}

// typeError reports a value of the wrong type at its key. prefix is
// prepended to the decoder's key path (a plugin section's path), and src
// supplies the position when the decoded document was not the user's.
func typeError(file string, err error, prefix []string, src sourceMap) error {
	var de *toml.DecodeError
	if !errors.As(err, &de) {
		return &Error{File: file, Msg: fmt.Sprintf("%s: %v", file, err)}
	}
	parts := append(append([]string(nil), prefix...), de.Key()...)
	msg := stripGoField(strings.TrimPrefix(de.Error(), "toml: "))
	p := pos{file: file}
	if prefix == nil {
		p.line, p.col = de.Position()
	} else if q := src.lookup(parts); q.line > 0 {
		p = q
	}
	key := formatKey(parts)
	if key != "" {
		msg = fmt.Sprintf("invalid value for %s: %s", quoteKey(key), msg)
	}
	return errAt(p, key, msg)
}

// unknownKey builds the warning for a key the decoder found no field for,
// with the closest valid key at the same level as the suggestion.
func unknownKey(root reflect.Type, prefix, rel []string, p pos, decoderMsg string) Warning {
	parts := append(append([]string(nil), prefix...), rel...)
	w := Warning{File: p.file, Line: p.line, Column: p.col, Key: formatKey(parts)}
	what := "key"
	if strings.Contains(decoderMsg, "table") {
		what = "table"
	}
	w.Message = fmt.Sprintf("unknown %s %s", what, quoteKey(w.Key))
	if len(rel) > 0 {
		parent := rel[:len(rel)-1]
		if s := nearest(rel[len(rel)-1], candidatesAt(root, parent)); s != "" {
			w.Suggestion = formatKey(append(append(append([]string(nil), prefix...), parent...), s))
		}
	}
	return w
}

// quoteKey quotes a dotted key for a message, with single quotes when the
// key itself holds double quotes so that no escaping is needed.
func quoteKey(k string) string {
	if strings.Contains(k, `"`) {
		return "'" + k + "'"
	}
	return `"` + k + `"`
}

func tomlTypeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	default:
		return "a date or time"
	}
}

// mergeTop merges one file's tree over the files read before it.
func mergeTop(dst, src map[string]any) {
	keys := sortedKeys(src)
	for _, k := range keys {
		v := src[k]
		switch k {
		case "disabled_plugins", "required_plugins":
			dst[k] = appendUnique(dst[k], v)
			continue
		case "stream_processors", "proxy_plugins":
			dm, ok1 := dst[k].(map[string]any)
			sm, ok2 := v.(map[string]any)
			if ok1 && ok2 {
				for e, ev := range sm {
					dm[e] = copyTree(ev)
				}
				continue
			}
		}
		mergeTree(dst, k, v)
	}
}

func mergeTree(dst map[string]any, k string, v any) {
	dm, ok1 := dst[k].(map[string]any)
	sm, ok2 := v.(map[string]any)
	if !ok1 || !ok2 {
		dst[k] = copyTree(v)
		return
	}
	for _, sk := range sortedKeys(sm) {
		mergeTree(dm, sk, sm[sk])
	}
}

// appendUnique appends b's entries to a's, leaving out strings already
// present. Other values (possible before type checking, in Migrate) are
// kept as they are: they may not even be comparable.
func appendUnique(a, b any) any {
	as, _ := a.([]any)
	bs, ok := b.([]any)
	if !ok {
		return copyTree(b)
	}
	seen := map[string]bool{}
	out := make([]any, 0, len(as)+len(bs))
	for _, l := range [][]any{as, bs} {
		for _, x := range l {
			if s, ok := x.(string); ok {
				if seen[s] {
					continue
				}
				seen[s] = true
			}
			out = append(out, copyTree(x))
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// build decodes the merged tree into a Config.
func (l *loader) build() (*Config, error) {
	top := make(map[string]any, len(l.merged))
	for k, v := range l.merged {
		if k != "plugins" {
			top[k] = v
		}
	}
	b, err := toml.Marshal(top)
	if err != nil {
		return nil, fmt.Errorf("config: re-encoding merged config: %w", err)
	}
	c := &Config{}
	if err := toml.Unmarshal(b, c); err != nil {
		return nil, &Error{Msg: fmt.Sprintf("merged config does not decode: %v", err)}
	}
	if p, ok := l.merged["plugins"].(map[string]any); ok {
		c.Plugins = p
	}
	c.Version = CurrentVersion
	c.Imports = l.imported
	c.src = l.src
	if err := c.readServers(); err != nil {
		return nil, err
	}
	c.applyDefaults()

	if !validLevel(c.Debug.Level) {
		p := c.src.lookup([]string{"debug", "level"})
		return nil, errAt(p, "debug.level", fmt.Sprintf("invalid debug.level %q: use trace, debug, info, warn, error, fatal or panic", c.Debug.Level))
	}
	if c.Debug.Format != "text" && c.Debug.Format != "json" {
		p := c.src.lookup([]string{"debug", "format"})
		return nil, errAt(p, "debug.format", fmt.Sprintf("invalid debug.format %q: use text or json", c.Debug.Format))
	}
	return c, nil
}
