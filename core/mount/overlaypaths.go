package mount

import "strings"

// OverlayLayers splits an overlay lowerdir option value into its layers,
// nearest first, and its data-only layers (after "::"), undoing the
// backslash escapes of ':' and ','.
func OverlayLayers(v string) (lower, dataOnly []string) {
	var (
		cur    strings.Builder
		inData bool
	)
	flush := func() {
		if cur.Len() > 0 {
			if inData {
				dataOnly = append(dataOnly, cur.String())
			} else {
				lower = append(lower, cur.String())
			}
		}
		cur.Reset()
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\' && i+1 < len(v):
			i++
			cur.WriteByte(v[i])
		case c == ':':
			flush()
			if i+1 < len(v) && v[i+1] == ':' {
				i++
				inData = true
			}
		default:
			cur.WriteByte(c)
		}
	}
	flush()
	return lower, dataOnly
}

// EscapeOverlayPath escapes a path for an overlay lowerdir option value.
func EscapeOverlayPath(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case ':', ',', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(p[i])
	}
	return b.String()
}
