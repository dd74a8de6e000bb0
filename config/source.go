package config

import (
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// pos is where a key was written.
type pos struct {
	file      string
	line, col int
}

// sourceMap maps key paths to where they were written. Keys are the path
// parts joined by NUL, which cannot occur in a TOML key's text unescaped and
// so keeps "a.b" (one quoted part) apart from a.b (two parts).
type sourceMap map[string]pos

func pathKey(parts []string) string { return strings.Join(parts, "\x00") }

// lookup returns where path, or failing that its nearest written ancestor,
// came from: a key inside an inline table or a migrated section may only be
// known by its parent.
func (s sourceMap) lookup(parts []string) pos {
	for n := len(parts); n > 0; n-- {
		if p, ok := s[pathKey(parts[:n])]; ok {
			return p
		}
	}
	return pos{}
}

// copyPrefix makes everything recorded under from also recorded under to;
// migrations call it when they move a section, so that warnings about the
// moved keys still point at the lines the user wrote.
func (s sourceMap) copyPrefix(from, to []string) {
	if s == nil {
		return
	}
	f := pathKey(from)
	t := pathKey(to)
	var keys []string
	for k := range s {
		if k == f || strings.HasPrefix(k, f+"\x00") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		s[t+k[len(f):]] = s[k]
	}
}

// merge records other's positions over s's: the later file defines the
// value, so it is the one to point at.
func (s sourceMap) merge(other sourceMap) {
	for k, v := range other {
		s[k] = v
	}
}

// indexPositions records the line and column of every key in a document
// that already parsed without error. go-toml's decoder only reports
// positions for its own errors; plugin sections are checked much later,
// against a re-encoded copy, so their positions must be kept from here.
func indexPositions(data []byte, file string) sourceMap {
	sm := sourceMap{}
	lines := []int{0}
	for i, c := range data {
		if c == '\n' {
			lines = append(lines, i+1)
		}
	}
	at := func(off int) pos {
		i := sort.Search(len(lines), func(i int) bool { return lines[i] > off }) - 1
		if i < 0 {
			i = 0
		}
		return pos{file: file, line: i + 1, col: off - lines[i] + 1}
	}
	record := func(parts []string, p pos) {
		k := pathKey(parts)
		if _, ok := sm[k]; !ok {
			sm[k] = p
		}
	}
	// keyParts appends n's dotted key to prefix, recording each part.
	keyParts := func(prefix []string, it unstable.Iterator) []string {
		out := append([]string(nil), prefix...)
		for it.Next() {
			k := it.Node()
			out = append(out, string(k.Data))
			record(out, at(int(k.Raw.Offset)))
		}
		return out
	}
	var value func(prefix []string, v *unstable.Node)
	value = func(prefix []string, v *unstable.Node) {
		switch v.Kind {
		case unstable.InlineTable:
			it := v.Children()
			for it.Next() {
				kv := it.Node()
				if kv.Kind != unstable.KeyValue {
					continue
				}
				value(keyParts(prefix, kv.Key()), kv.Value())
			}
		case unstable.Array:
			it := v.Children()
			for it.Next() {
				value(prefix, it.Node())
			}
		}
	}

	var p unstable.Parser
	p.Reset(data)
	var table []string
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = keyParts(nil, e.Key())
		case unstable.KeyValue:
			value(keyParts(table, e.Key()), e.Value())
		}
	}
	return sm
}
