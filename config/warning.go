package config

import (
	"fmt"
	"strconv"
	"strings"
)

// Warning is something in a config file that hull read past: an unknown
// key, an unknown plugin section, a version it had to migrate. Warnings
// carry enough to be turned into errors (--strict-config) and to tell the
// user exactly what to edit.
type Warning struct {
	// File is the config file the warning is about; empty when the
	// config was not read from a file.
	File string
	// Line and Column locate the key, both 1-based; 0 when unknown.
	Line, Column int
	// Key is the full dotted key, with parts quoted as TOML needs them:
	// grpc.adress, plugins."io.containerd.cri.v1.images".registry.
	Key string
	// Suggestion is the valid key or plugin URI closest to Key, written
	// the same way; empty when nothing is close.
	Suggestion string
	// Message describes the problem, without position or suggestion.
	Message string
}

// String formats the warning as file:line:col: message (did you mean ...?),
// the shape editors and terminals recognise as a clickable location.
func (w Warning) String() string {
	var b strings.Builder
	if w.File != "" {
		b.WriteString(w.File)
		if w.Line > 0 {
			fmt.Fprintf(&b, ":%d", w.Line)
			if w.Column > 0 {
				fmt.Fprintf(&b, ":%d", w.Column)
			}
		}
		b.WriteString(": ")
	}
	b.WriteString(w.Message)
	if w.Suggestion != "" {
		fmt.Fprintf(&b, " (did you mean %s?)", quoteKey(w.Suggestion))
	}
	return b.String()
}

// location formats file:line:col for error messages, leaving out what is
// unknown.
func location(file string, line, col int) string {
	if file == "" {
		file = "<config>"
	}
	if line <= 0 {
		return file
	}
	if col <= 0 {
		return fmt.Sprintf("%s:%d", file, line)
	}
	return fmt.Sprintf("%s:%d:%d", file, line, col)
}

// formatKey writes a key path the way a user would type it in TOML, so that
// plugin URIs (which contain dots) come out quoted.
func formatKey(parts []string) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte('.')
		}
		if isBareKey(p) {
			b.WriteString(p)
		} else {
			b.WriteString(strconv.Quote(p))
		}
	}
	return b.String()
}

func isBareKey(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// maxSuggestLen bounds the strings compared for suggestions: the distance
// is quadratic and a pathological key should not stall loading.
const maxSuggestLen = 256

// nearest returns the candidate closest to s, or "" when none is close
// enough to be a plausible typo: within max(2, len(s)/3) edits, and closer
// than rewriting s entirely.
func nearest(s string, candidates []string) string {
	if len(s) > maxSuggestLen {
		return ""
	}
	limit := len(s) / 3
	if limit < 2 {
		limit = 2
	}
	best, bestD := "", limit+1
	for _, c := range candidates {
		if c == s || len(c) > maxSuggestLen {
			continue
		}
		d := distance(strings.ToLower(s), strings.ToLower(c))
		if d < bestD && d < len(s) {
			best, bestD = c, d
		}
	}
	return best
}

// distance is the optimal-string-alignment Damerau–Levenshtein distance:
// insertions, deletions, substitutions and adjacent transpositions, the
// usual shapes of a typo.
func distance(a, b string) int {
	if a == b {
		return 0
	}
	ra, rb := []rune(a), []rune(b)
	n, m := len(ra), len(rb)
	if n == 0 {
		return m
	}
	if m == 0 {
		return n
	}
	// Three rows suffice: transpositions look back two rows.
	prev2 := make([]int, m+1)
	prev := make([]int, m+1)
	cur := make([]int, m+1)
	for j := 0; j <= m; j++ {
		prev[j] = j
	}
	for i := 1; i <= n; i++ {
		cur[0] = i
		for j := 1; j <= m; j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			v := min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				v = min(v, prev2[j-2]+1)
			}
			cur[j] = v
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[m]
}
