package config

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/pelletier/go-toml/v2"
)

// PluginSection describes one plugin's config section for Validate, Render
// and GenerateReference; hulld builds the list from its plugin registry.
type PluginSection struct {
	// URI is the plugin's "<type>.<id>", the section's key under [plugins].
	URI string
	// Config points to the plugin's default config struct, with toml and
	// doc tags; nil when the plugin takes no configuration. It is never
	// modified here.
	Config any
}

// DecodePlugin decodes the [plugins."<uri>"] section over into, a pointer
// to the plugin's default config, so that keys the file leaves out keep
// their defaults. Keys into has no field for are returned as warnings with
// their position and the nearest valid key. A value of the wrong type is an
// error, after which into may be partly updated. A missing section leaves
// into as it is.
func (c *Config) DecodePlugin(uri string, into any) ([]Warning, error) {
	rv := reflect.ValueOf(into)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return nil, fmt.Errorf("config: DecodePlugin(%q) needs a non-nil pointer, got %T: %w", uri, into, errdefs.ErrInvalidArgument)
	}
	sec, ok := c.Plugins[uri]
	if !ok || sec == nil {
		return nil, nil
	}
	prefix := []string{"plugins", uri}
	m, ok := sec.(map[string]any)
	if !ok {
		return nil, errAt(c.src.lookup(prefix), formatKey(prefix), fmt.Sprintf("%s must be a table, not %s", quoteKey(formatKey(prefix)), tomlTypeName(sec)))
	}
	// Re-encoding the section is what lets go-toml check it strictly; the
	// positions it reports are then in the re-encoded text, so positions
	// come from the source map instead.
	b, err := toml.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("config: re-encoding %s: %w", formatKey(prefix), err)
	}
	err = toml.NewDecoder(bytes.NewReader(b)).DisallowUnknownFields().Decode(into)
	var strict *toml.StrictMissingError
	switch {
	case errors.As(err, &strict):
		var ws []Warning
		for _, e := range strict.Errors {
			rel := e.Key()
			p := c.src.lookup(append(append([]string(nil), prefix...), rel...))
			ws = append(ws, unknownKey(reflect.TypeOf(into), prefix, rel, p, e.Error()))
		}
		return ws, nil
	case err != nil:
		p := c.src.lookup(prefix)
		return nil, typeError(p.file, err, prefix, c.src)
	}
	return nil, nil
}

// Validate checks the plugin sections and plugin lists against the plugins
// hulld has: a section or list entry naming no known plugin is a warning
// with the nearest known URI, and each known section is decoded into a copy
// of its default so that unknown keys are reported before any plugin
// starts. Problems are returned as warnings only, sorted by file and
// position, for the caller to log or, with --strict-config, to refuse.
// Values that would stop hulld are Check's to report, as errors; Validate
// warns only about bad values in the sections of disabled plugins.
func (c *Config) Validate(plugins []PluginSection) []Warning {
	plugins = append(serverSections(Default()), plugins...)
	known := make(map[string]PluginSection, len(plugins))
	uris := make([]string, 0, len(plugins))
	for _, p := range plugins {
		known[p.URI] = p
		uris = append(uris, p.URI)
	}
	sort.Strings(uris)

	var ws []Warning
	for _, uri := range sortedKeys(c.Plugins) {
		parts := []string{"plugins", uri}
		p := c.src.lookup(parts)
		ps, ok := known[uri]
		if !ok {
			ws = append(ws, Warning{File: p.file, Line: p.line, Column: p.col, Key: formatKey(parts),
				Suggestion: suggestPlugin(uri, uris), Message: fmt.Sprintf("unknown plugin %q: hull has no such plugin, so its settings are not used", uri)})
			continue
		}
		if ps.Config == nil {
			m, isTable := c.Plugins[uri].(map[string]any)
			if !isTable {
				ws = append(ws, Warning{File: p.file, Line: p.line, Column: p.col, Key: formatKey(parts),
					Message: fmt.Sprintf("%s must be a table", quoteKey(formatKey(parts)))})
				continue
			}
			for _, k := range sortedKeys(m) {
				kp := c.src.lookup(append(parts, k))
				key := formatKey(append(parts, k))
				ws = append(ws, Warning{File: kp.file, Line: kp.line, Column: kp.col, Key: key,
					Message: fmt.Sprintf("unknown key %s: plugin %q takes no configuration", quoteKey(key), uri)})
			}
			continue
		}
		w, err := c.DecodePlugin(uri, CopyConfig(ps.Config))
		ws = append(ws, w...)
		// A bad value of a plugin that runs is Check's error; one of a
		// disabled plugin stops nothing, but is still worth a word.
		if err != nil && c.PluginDisabled(uri) {
			ws = append(ws, errorWarning(err, formatKey(parts)))
		}
	}
	for _, list := range []struct {
		key  string
		uris []string
	}{{"disabled_plugins", c.DisabledPlugins}, {"required_plugins", c.RequiredPlugins}} {
		p := c.src.lookup([]string{list.key})
		for _, u := range list.uris {
			if _, ok := known[u]; ok {
				continue
			}
			ws = append(ws, Warning{File: p.file, Line: p.line, Column: p.col, Key: list.key,
				Suggestion: suggestPlugin(u, uris), Message: fmt.Sprintf("%s names unknown plugin %q", list.key, u)})
		}
	}
	ws = append(ws, c.unsupported()...)
	sort.SliceStable(ws, func(i, j int) bool {
		a, b := ws[i], ws[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	return ws
}

// errorWarning turns a decoding error into a warning for Validate, which
// reports rather than fails: the plugin is disabled and never decodes it.
func errorWarning(err error, key string) Warning {
	var ce *Error
	if errors.As(err, &ce) {
		msg := ce.Msg
		if ce.Line == 0 && ce.File != "" {
			msg = strings.TrimPrefix(msg, ce.File+": ")
		}
		if ce.Key != "" {
			key = ce.Key
		}
		return Warning{File: ce.File, Line: ce.Line, Column: ce.Column, Key: key, Message: msg}
	}
	return Warning{Key: key, Message: err.Error()}
}

// suggestPlugin finds the known URI a user most likely meant: the one whose
// ID or version 1 name is exactly what was written, else one that differs
// by a typo in the ID (same type) or in the type (same ID). Two URIs share
// most of their characters ("io.containerd."), so a distance over whole
// URIs would match containerd's plugins hull lacks to unrelated ones.
func suggestPlugin(name string, uris []string) string {
	if uri, ok := v1PluginURI(name); ok {
		for _, u := range uris {
			if u == uri {
				return u
			}
		}
	}
	if !strings.Contains(name, ".") {
		for _, u := range uris {
			if strings.HasSuffix(u, "."+name) {
				return u
			}
		}
	}
	typ, id := splitURI(name)
	var sameType, sameID []string
	for _, u := range uris {
		ut, uid := splitURI(u)
		if ut == typ {
			sameType = append(sameType, uid)
		}
		if uid == id {
			sameID = append(sameID, ut)
		}
	}
	if s := nearest(id, sameType); s != "" && id != "" {
		return typ + "." + s
	}
	if len(typ) <= maxSuggestLen {
		for _, ut := range sameID {
			if distance(strings.ToLower(typ), strings.ToLower(ut)) <= 2 {
				return ut + "." + id
			}
		}
	}
	return ""
}

// splitURI splits "<type>.<id>" at the last dot: plugin IDs have none.
func splitURI(uri string) (typ, id string) {
	i := strings.LastIndexByte(uri, '.')
	if i < 0 {
		return "", uri
	}
	return uri[:i], uri[i+1:]
}
