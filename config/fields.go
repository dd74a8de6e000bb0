package config

import (
	"encoding"
	"reflect"
	"sort"
	"strings"
	"time"
)

// field is one TOML key of a config struct, found the way go-toml finds
// it, so that what is suggested, checked and documented is exactly what the
// decoder accepts.
type field struct {
	name   string
	doc    string
	hasDoc bool
	typ    reflect.Type
	index  []int
}

// tomlFields lists the keys of struct type t: exported fields, named by
// their toml tag or Go name, with untagged embedded structs flattened into
// their parent as go-toml does.
func tomlFields(t reflect.Type) []field {
	var out []field
	var walk func(t reflect.Type, index []int)
	walk = func(t reflect.Type, index []int) {
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			tag := sf.Tag.Get("toml")
			name, _, _ := strings.Cut(tag, ",")
			if name == "-" {
				continue
			}
			idx := append(append([]int(nil), index...), i)
			if sf.Anonymous && name == "" {
				ft := sf.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					walk(ft, idx)
					continue
				}
			}
			if !sf.IsExported() {
				continue
			}
			if name == "" {
				name = sf.Name
			}
			doc, hasDoc := sf.Tag.Lookup("doc")
			out = append(out, field{name: name, doc: doc, hasDoc: hasDoc && strings.TrimSpace(doc) != "", typ: sf.Type, index: idx})
		}
	}
	walk(t, nil)
	// As in Go and go-toml, a key of an embedding struct hides the same
	// key of the struct it embeds: the shallowest field wins.
	depth := map[string]int{}
	for _, f := range out {
		if d, ok := depth[f.name]; !ok || len(f.index) < d {
			depth[f.name] = len(f.index)
		}
	}
	kept := out[:0]
	seen := map[string]bool{}
	for _, f := range out {
		if len(f.index) == depth[f.name] && !seen[f.name] {
			seen[f.name] = true
			kept = append(kept, f)
		}
	}
	return kept
}

// isLeaf reports whether values of t are written as one TOML value even
// when t is a struct: times and types that marshal themselves to text.
func isLeaf(t reflect.Type) bool {
	tm := reflect.TypeFor[encoding.TextMarshaler]()
	return t == reflect.TypeFor[time.Time]() || t.Implements(tm) || reflect.PointerTo(t).Implements(tm)
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// findField finds key in struct t, case-insensitively as a fallback the
// way go-toml matches.
func findField(t reflect.Type, key string) (field, bool) {
	fs := tomlFields(t)
	for _, f := range fs {
		if f.name == key {
			return f, true
		}
	}
	for _, f := range fs {
		if strings.EqualFold(f.name, key) {
			return f, true
		}
	}
	return field{}, false
}

// candidatesAt lists the keys valid inside the table at path in a value of
// type t: the pool from which a misspelt key's suggestion is drawn. Path
// parts that are map keys (stream processor names, runtime names) match
// anything; arrays of tables carry no index in the path.
func candidatesAt(t reflect.Type, path []string) []string {
	for _, p := range path {
		t = elemOfLists(deref(t))
		switch t.Kind() {
		case reflect.Struct:
			if isLeaf(t) {
				return nil
			}
			f, ok := findField(t, p)
			if !ok {
				return nil
			}
			t = f.typ
		case reflect.Map:
			t = t.Elem()
		default:
			return nil
		}
	}
	t = elemOfLists(deref(t))
	if t.Kind() != reflect.Struct || isLeaf(t) {
		return nil
	}
	var names []string
	for _, f := range tomlFields(t) {
		names = append(names, f.name)
	}
	return names
}

func elemOfLists(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// MissingDocs lists, as dotted keys, the fields of v's type (a struct or
// pointer to one, walked through nested structs, maps and slices) that have
// no doc tag. The configuration reference is generated from doc tags, so
// each plugin's tests should assert this is empty for its config.
func MissingDocs(v any) []string {
	var out []string
	seen := map[reflect.Type]bool{}
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		t = elemOfLists(deref(t))
		if t.Kind() == reflect.Map {
			walk(prefix+".<name>", t.Elem())
			return
		}
		if t.Kind() != reflect.Struct || isLeaf(t) || seen[t] {
			return
		}
		seen[t] = true
		defer delete(seen, t)
		for _, f := range tomlFields(t) {
			key := f.name
			if prefix != "" {
				key = prefix + "." + key
			}
			if !f.hasDoc {
				out = append(out, key)
			}
			walk(key, f.typ)
		}
	}
	if v != nil {
		walk("", reflect.TypeOf(v))
	}
	sort.Strings(out)
	return out
}

// CopyConfig returns a pointer to a deep copy of *p (p being a pointer to
// a plugin's default config), so that decoding a file's section into the
// copy cannot change the registered defaults through a shared map or
// slice. Pass DecodePlugin a copy whenever the defaults are used again, as
// `hulld config default` does. Anything but a non-nil pointer is returned
// as it is.
func CopyConfig(p any) any {
	rv := reflect.ValueOf(p)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return p
	}
	n := reflect.New(rv.Elem().Type())
	n.Elem().Set(deepCopy(rv.Elem()))
	return n.Interface()
}

func deepCopy(v reflect.Value) reflect.Value {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return v
		}
		n := reflect.New(v.Type().Elem())
		n.Elem().Set(deepCopy(v.Elem()))
		return n
	case reflect.Interface:
		if v.IsNil() {
			return v
		}
		n := reflect.New(v.Type()).Elem()
		n.Set(deepCopy(v.Elem()))
		return n
	case reflect.Map:
		if v.IsNil() {
			return v
		}
		n := reflect.MakeMapWithSize(v.Type(), v.Len())
		it := v.MapRange()
		for it.Next() {
			n.SetMapIndex(it.Key(), deepCopy(it.Value()))
		}
		return n
	case reflect.Slice:
		if v.IsNil() {
			return v
		}
		n := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := 0; i < v.Len(); i++ {
			n.Index(i).Set(deepCopy(v.Index(i)))
		}
		return n
	case reflect.Array:
		n := reflect.New(v.Type()).Elem()
		for i := 0; i < v.Len(); i++ {
			n.Index(i).Set(deepCopy(v.Index(i)))
		}
		return n
	case reflect.Struct:
		// Copy whole first, so unexported fields come along as they are,
		// then replace the exported ones with deep copies.
		n := reflect.New(v.Type()).Elem()
		n.Set(v)
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				n.Field(i).Set(deepCopy(v.Field(i)))
			}
		}
		return n
	default:
		return v
	}
}

// copyTree deep-copies a decoded TOML tree (maps, arrays and scalars).
func copyTree(v any) any {
	switch x := v.(type) {
	case map[string]any:
		n := make(map[string]any, len(x))
		for k, e := range x {
			n[k] = copyTree(e)
		}
		return n
	case []any:
		n := make([]any, len(x))
		for i, e := range x {
			n[i] = copyTree(e)
		}
		return n
	default:
		return v
	}
}
