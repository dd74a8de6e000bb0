// Package filters implements containerd's filter syntax, which every List and
// Subscribe call of the API accepts, so that filters written for containerd
// select the same objects in hull.
//
// A filter string is one or more alternatives separated by ';' (any of them
// may match); an alternative is one or more selectors separated by ','
// (all of them must match). A selector is a field path, optionally followed
// by an operator and a value:
//
//	name==redis                 the field equals the value
//	name!=redis                 the field is absent or differs from the value
//	name~=^re                   the field is present and matches a Go regexp
//	labels."io.example.key"     the field is present
//	topic~=/^\/namespaces\//    a value delimited by '/', handy for regexps
//	labels.a=="with spaces"     a double-quoted value with Go escapes
//
// A field path is components separated by '.'; a component is a run of
// letters, digits, '_' and '-', or a double-quoted string (for label keys
// containing dots). Whitespace between tokens is ignored.
//
// Objects expose their fields through an Adaptor; how a field path maps to a
// value is up to the object (labels.<key> for labels, and so on).
package filters

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/containerd/errdefs"
)

const (
	// maxFilterLength bounds the work and memory a client can make a single
	// filter string cost the server.
	maxFilterLength = 64 << 10
	// maxRegexpLength bounds the size of each compiled regexp, for the same
	// reason: regexp compilation is linear but not cheap.
	maxRegexpLength = 1024
	// maxRegexpInstructions bounds the compiled size of each regexp: a short
	// pattern such as "(a{1000}){100}" compiles to a program whose size,
	// not the pattern's, sets the cost of compiling and of every match.
	maxRegexpInstructions = 16 << 10
	// maxFilterInstructions bounds the same over all the regexps of a filter.
	maxFilterInstructions = 64 << 10
	// quotedPrefixLength is how much of an over-long filter an error quotes,
	// so that rejecting a huge input does not produce a huge error.
	quotedPrefixLength = 64
)

// Adaptor exposes an object's fields to a filter, so that filters need not
// know the objects they select. fieldpath is the selector's dotted path split
// into components (quotes removed); implementations must not modify it.
type Adaptor interface {
	Field(fieldpath []string) (value string, present bool)
}

// AdapterFunc lets a plain function serve as an Adaptor, which saves a type
// per object kind.
type AdapterFunc func(fieldpath []string) (string, bool)

// Field calls f; a nil f has no fields.
func (f AdapterFunc) Field(fieldpath []string) (string, bool) {
	if f == nil {
		return "", false
	}
	return f(fieldpath)
}

// Filter decides whether an object, seen through its Adaptor, is selected.
// Filters are immutable and safe for concurrent use.
type Filter interface {
	Match(Adaptor) bool
}

// Always is the filter of an empty filter string: List calls without filters
// return everything.
var Always Filter = always{}

type always struct{}

func (always) Match(Adaptor) bool { return true }

// ParseAll parses each of ss and returns a filter matching what any of them
// matches, which is how the API combines the repeated filters field of a
// request. Empty (or blank) strings are ignored; if nothing else is left, the
// result is Always.
func ParseAll(ss ...string) (Filter, error) {
	var fs []Filter
	for _, s := range ss {
		if isBlank(s) {
			continue
		}
		f, err := Parse(s)
		if err != nil {
			return nil, err
		}
		fs = append(fs, f)
	}
	switch len(fs) {
	case 0:
		return Always, nil
	case 1:
		return fs[0], nil
	}
	return anyOf(fs), nil
}

// Parse parses one filter string. A blank string is Always. Errors wrap
// errdefs.ErrInvalidArgument and name the input, the byte offset and what
// was expected there, because filters come from users who need to fix them.
func Parse(s string) (Filter, error) {
	if len(s) > maxFilterLength {
		return nil, fmt.Errorf("filter %q... is %d bytes long, the limit is %d: %w",
			prefix(s, quotedPrefixLength), len(s), maxFilterLength, errdefs.ErrInvalidArgument)
	}
	p := parser{input: s}
	p.skipSpace()
	if p.eof() {
		return Always, nil
	}
	var alts []Filter
	for {
		alt, err := p.alternative()
		if err != nil {
			return nil, err
		}
		alts = append(alts, alt)
		// alternative stops only at ';' or at the end.
		if p.eof() {
			break
		}
		p.pos++ // ';'
	}
	if len(alts) == 1 {
		return alts[0], nil
	}
	return anyOf(alts), nil
}

func isBlank(s string) bool {
	return strings.TrimFunc(s, unicode.IsSpace) == ""
}

// prefix cuts s to at most n bytes without splitting a UTF-8 sequence.
func prefix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

type operator int

const (
	opPresent operator = iota
	opEqual
	opNotEqual
	opMatch
)

type selector struct {
	fieldpath []string
	op        operator
	value     string
	re        *regexp.Regexp
}

func (s *selector) Match(a Adaptor) bool {
	var (
		value   string
		present bool
	)
	if a != nil {
		value, present = a.Field(s.fieldpath)
	}
	switch s.op {
	case opPresent:
		return present
	case opEqual:
		return present && value == s.value
	case opNotEqual:
		return !present || value != s.value
	case opMatch:
		return present && s.re.MatchString(value)
	}
	return false
}

type allOf []Filter

func (fs allOf) Match(a Adaptor) bool {
	for _, f := range fs {
		if !f.Match(a) {
			return false
		}
	}
	return true
}

type anyOf []Filter

func (fs anyOf) Match(a Adaptor) bool {
	for _, f := range fs {
		if f.Match(a) {
			return true
		}
	}
	return false
}

// parser is a recursive-descent parser working on bytes, so that offsets in
// errors are byte offsets and invalid UTF-8 cannot trip it.
type parser struct {
	input        string
	pos          int
	instructions int // compiled regexp instructions so far
}

func (p *parser) errorf(offset int, format string, args ...any) error {
	return fmt.Errorf("filter %q at offset %d: %s: %w",
		p.input, offset, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

func (p *parser) eof() bool { return p.pos >= len(p.input) }

func (p *parser) peek() byte {
	if p.eof() {
		return 0
	}
	return p.input[p.pos]
}

func (p *parser) skipSpace() {
	for !p.eof() {
		r, size := utf8.DecodeRuneInString(p.input[p.pos:])
		if !unicode.IsSpace(r) {
			return
		}
		p.pos += size
	}
}

// alternative parses selectors joined by ',' and stops at ';' or the end.
func (p *parser) alternative() (Filter, error) {
	var sels allOf
	for {
		sel, err := p.selector()
		if err != nil {
			return nil, err
		}
		sels = append(sels, sel)
		p.skipSpace()
		switch {
		case p.eof() || p.peek() == ';':
			if len(sels) == 1 {
				return sels[0], nil
			}
			return sels, nil
		case p.peek() == ',':
			p.pos++
		default:
			return nil, p.errorf(p.pos, "expected \",\", \";\" or the end of the filter, found %q", p.rest())
		}
	}
}

// rest is the unparsed input, cut short for error messages.
func (p *parser) rest() string {
	r := prefix(p.input[p.pos:], 16)
	if len(r) < len(p.input)-p.pos {
		r += "..."
	}
	return r
}

func (p *parser) selector() (*selector, error) {
	fieldpath, err := p.fieldpath()
	if err != nil {
		return nil, err
	}
	sel := &selector{fieldpath: fieldpath}
	p.skipSpace()
	if p.eof() || p.peek() == ',' || p.peek() == ';' {
		sel.op = opPresent
		return sel, nil
	}
	opOffset := p.pos
	var opText string
	switch {
	case strings.HasPrefix(p.input[p.pos:], "=="):
		sel.op, opText = opEqual, "=="
	case strings.HasPrefix(p.input[p.pos:], "!="):
		sel.op, opText = opNotEqual, "!="
	case strings.HasPrefix(p.input[p.pos:], "~="):
		sel.op, opText = opMatch, "~="
	default:
		return nil, p.errorf(opOffset, "expected an operator (\"==\", \"!=\" or \"~=\"), \",\", \";\" or the end of the filter after the field path, found %q", p.rest())
	}
	p.pos += len(opText)
	p.skipSpace()
	valueOffset := p.pos
	value, err := p.value(opText)
	if err != nil {
		return nil, err
	}
	sel.value = value
	if sel.op == opMatch {
		if len(value) > maxRegexpLength {
			return nil, p.errorf(valueOffset, "regular expression is %d bytes long, the limit is %d", len(value), maxRegexpLength)
		}
		re, err := p.compileRegexp(value)
		if err != nil {
			return nil, p.errorf(valueOffset, "expected a valid regular expression after \"~=\": %v", err)
		}
		sel.re = re
	}
	return sel, nil
}

// compileRegexp compiles a regexp as regexp.Compile does, after charging the
// size of its program to the filter's budget.
func (p *parser) compileRegexp(expr string) (*regexp.Regexp, error) {
	parsed, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil, err
	}
	prog, err := syntax.Compile(parsed.Simplify())
	if err != nil {
		return nil, err
	}
	if len(prog.Inst) > maxRegexpInstructions {
		return nil, fmt.Errorf("the expression compiles to %d instructions, the limit is %d", len(prog.Inst), maxRegexpInstructions)
	}
	p.instructions += len(prog.Inst)
	if p.instructions > maxFilterInstructions {
		return nil, fmt.Errorf("the regular expressions of the filter compile to more than %d instructions", maxFilterInstructions)
	}
	return regexp.Compile(expr)
}

func (p *parser) fieldpath() ([]string, error) {
	p.skipSpace()
	first, err := p.component("expected a field name")
	if err != nil {
		return nil, err
	}
	fieldpath := []string{first}
	for {
		save := p.pos
		p.skipSpace()
		if p.peek() != '.' {
			p.pos = save
			return fieldpath, nil
		}
		p.pos++
		p.skipSpace()
		c, err := p.component("expected a field name after \".\"")
		if err != nil {
			return nil, err
		}
		fieldpath = append(fieldpath, c)
	}
}

func isFieldByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

func (p *parser) component(expected string) (string, error) {
	if p.peek() == '"' {
		return p.quoted()
	}
	start := p.pos
	for !p.eof() && isFieldByte(p.peek()) {
		p.pos++
	}
	if p.pos == start {
		if p.eof() {
			return "", p.errorf(p.pos, "%s, found the end of the filter", expected)
		}
		return "", p.errorf(p.pos, "%s, found %q", expected, p.rest())
	}
	return p.input[start:p.pos], nil
}

func (p *parser) value(opText string) (string, error) {
	if p.eof() || p.peek() == ',' || p.peek() == ';' {
		return "", p.errorf(p.pos, "expected a value after %q", opText)
	}
	switch p.peek() {
	case '"':
		return p.quoted()
	case '/':
		return p.slashed()
	}
	start := p.pos
	for !p.eof() {
		c := p.peek()
		if c == ',' || c == ';' || c == '"' {
			break
		}
		r, size := utf8.DecodeRuneInString(p.input[p.pos:])
		if unicode.IsSpace(r) {
			break
		}
		p.pos += size
	}
	return p.input[start:p.pos], nil
}

// quoted parses a double-quoted string with Go's escapes, reporting a bad
// escape at its own offset rather than at the opening quote.
func (p *parser) quoted() (string, error) {
	start := p.pos
	p.pos++ // '"'
	var b strings.Builder
	for {
		if p.eof() {
			return "", p.errorf(start, "expected a closing '\"' for the quoted string")
		}
		c := p.peek()
		switch {
		case c == '"':
			p.pos++
			return b.String(), nil
		case c == '\\':
			r, multibyte, tail, err := strconv.UnquoteChar(p.input[p.pos:], '"')
			if err != nil {
				return "", p.errorf(p.pos, "expected a valid escape sequence in the quoted string, found %q", prefix(p.input[p.pos:], 4))
			}
			if r < utf8.RuneSelf || !multibyte {
				b.WriteByte(byte(r))
			} else {
				b.WriteRune(r)
			}
			p.pos = len(p.input) - len(tail)
		default:
			// Copy other bytes verbatim, invalid UTF-8 included.
			b.WriteByte(c)
			p.pos++
		}
	}
}

// slashed parses a '/'-delimited string. Only "\/" is an escape (for '/');
// any other backslash is kept with the byte that follows it, so that regexp
// escapes such as "\d" or "\\" reach the regexp untouched.
func (p *parser) slashed() (string, error) {
	start := p.pos
	p.pos++ // '/'
	var b strings.Builder
	for {
		if p.eof() {
			return "", p.errorf(start, "expected a closing '/' for the /-delimited value (double-quote values starting with '/')")
		}
		c := p.peek()
		switch {
		case c == '/':
			p.pos++
			return b.String(), nil
		case c == '\\' && p.pos+1 < len(p.input):
			if p.input[p.pos+1] == '/' {
				b.WriteByte('/')
			} else {
				b.WriteString(p.input[p.pos : p.pos+2])
			}
			p.pos += 2
		default:
			b.WriteByte(c)
			p.pos++
		}
	}
}
