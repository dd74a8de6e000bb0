package main

import (
	"github.com/urfave/cli/v2"
)

// nearestCommand returns the name of the command in cmds whose name or an
// alias is closest to typed, if one is close enough to be a typo of it (an
// edit distance of at most a third of the longer word, and at least one);
// "" otherwise. A typed word that begins a single command's name also
// counts.
func nearestCommand(typed string, cmds []*cli.Command) string {
	if typed == "" {
		return ""
	}
	best, bestDist := "", -1
	prefixOf := ""
	prefixes := 0
	for _, c := range cmds {
		if c.Hidden {
			continue
		}
		for _, name := range c.Names() {
			if name == "help" || name == "h" {
				continue
			}
			if len(typed) >= 2 && len(name) > len(typed) && name[:len(typed)] == typed {
				if prefixOf != c.Name {
					prefixes++
					prefixOf = c.Name
				}
			}
			d := editDistance(typed, name)
			limit := max(len([]rune(typed)), len([]rune(name))) / 3
			if d <= max(limit, 1) && (bestDist < 0 || d < bestDist) {
				best, bestDist = c.Name, d
			}
		}
	}
	if best == "" && prefixes == 1 {
		return prefixOf
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and swaps of neighbours each cost
// one, the usual typos.
func editDistance(a, b string) int {
	s, t := []rune(a), []rune(b)
	// d[i][j] is the distance between s[:i] and t[:j].
	d := make([][]int, len(s)+1)
	for i := range d {
		d[i] = make([]int, len(t)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(s); i++ {
		for j := 1; j <= len(t); j++ {
			cost := 1
			if s[i-1] == t[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && s[i-1] == t[j-2] && s[i-2] == t[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(s)][len(t)]
}
