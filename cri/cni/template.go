package cni

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"text/template/parse"
)

// renderTemplate renders a CNI config template, Go template syntax as
// containerd's conf_template takes it, with data.
//
// It parses with text/template/parse but evaluates the tree itself instead
// of running text/template: text/template's execution looks methods up by
// name at run time, and a reachable call of that kind makes the Go linker
// keep every exported method of every type in the binary (3.5 MB of
// hulld, resident on every node). The data of a CNI template is three
// fields of strings, so the evaluator needs no reflection: it covers the
// whole template language over strings, lists and numbers (actions,
// if/else, range with break and continue, with, variables, define,
// template and block, parenthesized pipelines) and the builtins that make
// sense there (and, or, not, len, index, eq, ne, lt, le, gt, ge, print,
// printf, println). Method calls and other functions are reported by name.
// A missing field is an error, as text/template's missingkey=error makes it.
func renderTemplate(name, text string, data TemplateData) ([]byte, error) {
	trees, err := parse.Parse(name, text, "", "", templateFuncs)
	if err != nil {
		return nil, err
	}
	root := trees[name]
	if root == nil || root.Root == nil {
		return nil, nil
	}
	e := &templateExec{trees: trees}
	e.vars = []templateVar{{"$", data}}
	if err := e.walk(data, root.Root); err != nil && !errors.Is(err, errBreak) && !errors.Is(err, errContinue) {
		return nil, err
	}
	return e.out.Bytes(), nil
}

// templateFuncs names the functions a template may call, for the parser;
// builtin holds what they do.
var templateFuncs = map[string]any{
	"and": true, "or": true, "not": true, "len": true, "index": true,
	"eq": true, "ne": true, "lt": true, "le": true, "gt": true, "ge": true,
	"print": true, "printf": true, "println": true,
}

// A template is configuration, but a typo must not hang hulld or fill
// its memory: nested template calls (which may recurse), the steps of a
// rendering and its output are bounded, far above what a network config
// needs.
const (
	maxTemplateDepth  = 1000
	maxTemplateSteps  = 1 << 20
	maxTemplateOutput = 4 << 20
)

var (
	errBreak    = errors.New("break outside range")
	errContinue = errors.New("continue outside range")
)

type templateVar struct {
	name  string
	value any
}

// templateExec is one rendering's state. Values are string, []string,
// int, float64, bool, nil and the data (TemplateData).
type templateExec struct {
	trees map[string]*parse.Tree
	vars  []templateVar
	out   bytes.Buffer
	depth int
	steps int
}

func (e *templateExec) errorf(n parse.Node, format string, args ...any) error {
	return fmt.Errorf("%s: %s", nodeLocation(n), fmt.Sprintf(format, args...))
}

// nodeLocation names where n is, as text/template's errors do.
func nodeLocation(n parse.Node) string {
	if n == nil {
		return "template"
	}
	return fmt.Sprintf("at <%s> (byte %d)", shorten(n.String()), n.Position())
}

func shorten(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func (e *templateExec) walk(dot any, n parse.Node) error {
	if e.steps++; e.steps > maxTemplateSteps {
		return e.errorf(n, "the template takes more than %d steps", maxTemplateSteps)
	}
	if e.out.Len() > maxTemplateOutput {
		return e.errorf(n, "the template's output is larger than %d bytes", maxTemplateOutput)
	}
	switch n := n.(type) {
	case *parse.ListNode:
		for _, c := range n.Nodes {
			if err := e.walk(dot, c); err != nil {
				return err
			}
		}
	case *parse.TextNode:
		e.out.Write(n.Text)
	case *parse.CommentNode:
	case *parse.ActionNode:
		v, err := e.pipeline(dot, n.Pipe)
		if err != nil {
			return err
		}
		if len(n.Pipe.Decl) == 0 {
			return e.print(n, v)
		}
	case *parse.IfNode:
		return e.branch(dot, &n.BranchNode, false)
	case *parse.WithNode:
		return e.branch(dot, &n.BranchNode, true)
	case *parse.RangeNode:
		return e.rangeOver(dot, n)
	case *parse.BreakNode:
		return errBreak
	case *parse.ContinueNode:
		return errContinue
	case *parse.TemplateNode:
		return e.template(dot, n)
	default:
		return e.errorf(n, "%T is not supported in a CNI config template", n)
	}
	return nil
}

// print writes v as text/template prints a value.
func (e *templateExec) print(n parse.Node, v any) error {
	switch v := v.(type) {
	case nil:
		e.out.WriteString("<no value>")
	default:
		fmt.Fprint(&e.out, v)
	}
	return nil
}

func (e *templateExec) branch(dot any, n *parse.BranchNode, with bool) error {
	mark := len(e.vars)
	defer func() { e.vars = e.vars[:mark] }()
	v, err := e.pipeline(dot, n.Pipe)
	if err != nil {
		return err
	}
	if truth(v) {
		if with {
			dot = v
		}
		return e.walk(dot, n.List)
	}
	if n.ElseList != nil {
		e.vars = e.vars[:mark]
		return e.walk(dot, n.ElseList)
	}
	return nil
}

func (e *templateExec) rangeOver(dot any, n *parse.RangeNode) error {
	mark := len(e.vars)
	defer func() { e.vars = e.vars[:mark] }()
	v, err := e.pipeline(dot, n.Pipe)
	if err != nil {
		return err
	}
	// The loop's variables are set per element, not by the pipeline.
	e.vars = e.vars[:mark]
	var (
		count int
		item  func(int) any
	)
	switch v := v.(type) {
	case []string:
		count, item = len(v), func(i int) any { return v[i] }
	case int:
		if len(n.Pipe.Decl) > 1 {
			return e.errorf(n, "can't use %d to iterate over more than one variable", v)
		}
		count, item = v, func(i int) any { return i }
	case nil:
	default:
		return e.errorf(n, "range can't iterate over %v", v)
	}
	if count <= 0 {
		if n.ElseList != nil {
			return e.walk(dot, n.ElseList)
		}
		return nil
	}
	for i := range count {
		e.vars = e.vars[:mark]
		elem := item(i)
		switch decl := n.Pipe.Decl; len(decl) {
		case 0:
		case 1:
			e.vars = append(e.vars, templateVar{decl[0].Ident[0], elem})
		default:
			e.vars = append(e.vars, templateVar{decl[0].Ident[0], i}, templateVar{decl[1].Ident[0], elem})
		}
		err := e.walk(elem, n.List)
		if errors.Is(err, errBreak) {
			break
		}
		if err != nil && !errors.Is(err, errContinue) {
			return err
		}
	}
	return nil
}

func (e *templateExec) template(dot any, n *parse.TemplateNode) error {
	t := e.trees[n.Name]
	if t == nil {
		return e.errorf(n, "no such template %q", n.Name)
	}
	if e.depth >= maxTemplateDepth {
		return e.errorf(n, "templates nested more than %d deep", maxTemplateDepth)
	}
	var v any
	if n.Pipe != nil {
		var err error
		if v, err = e.pipeline(dot, n.Pipe); err != nil {
			return err
		}
	}
	// A template sees only $, set to its dot.
	saved := e.vars
	e.vars = []templateVar{{"$", v}}
	e.depth++
	err := e.walk(v, t.Root)
	e.depth--
	e.vars = saved
	return err
}

// pipeline evaluates p, declaring or assigning its variables.
func (e *templateExec) pipeline(dot any, p *parse.PipeNode) (any, error) {
	if p == nil {
		return nil, nil
	}
	var v any
	for i, c := range p.Cmds {
		var err error
		if v, err = e.command(dot, c, v, i > 0); err != nil {
			return nil, err
		}
	}
	for _, d := range p.Decl {
		if p.IsAssign {
			if err := e.assign(d, v); err != nil {
				return nil, err
			}
			continue
		}
		e.vars = append(e.vars, templateVar{d.Ident[0], v})
	}
	return v, nil
}

func (e *templateExec) assign(n *parse.VariableNode, v any) error {
	for i := len(e.vars) - 1; i >= 0; i-- {
		if e.vars[i].name == n.Ident[0] {
			e.vars[i].value = v
			return nil
		}
	}
	return e.errorf(n, "undefined variable %s", n.Ident[0])
}

func (e *templateExec) variable(n *parse.VariableNode) (any, error) {
	for i := len(e.vars) - 1; i >= 0; i-- {
		if e.vars[i].name == n.Ident[0] {
			return e.fields(n, e.vars[i].value, n.Ident[1:])
		}
	}
	return nil, e.errorf(n, "undefined variable %s", n.Ident[0])
}

// command evaluates one command of a pipeline; final is the previous
// command's value, passed as the last argument when piped is set.
func (e *templateExec) command(dot any, c *parse.CommandNode, final any, piped bool) (any, error) {
	first := c.Args[0]
	if id, ok := first.(*parse.IdentifierNode); ok {
		return e.call(dot, id, c.Args[1:], final, piped)
	}
	if len(c.Args) > 1 || piped {
		return nil, e.errorf(first, "can't give argument to non-function %s", first)
	}
	return e.arg(dot, first)
}

// arg evaluates an operand.
func (e *templateExec) arg(dot any, n parse.Node) (any, error) {
	switch n := n.(type) {
	case *parse.DotNode:
		return dot, nil
	case *parse.FieldNode:
		return e.fields(n, dot, n.Ident)
	case *parse.VariableNode:
		return e.variable(n)
	case *parse.ChainNode:
		v, err := e.arg(dot, n.Node)
		if err != nil {
			return nil, err
		}
		return e.fields(n, v, n.Field)
	case *parse.PipeNode:
		mark := len(e.vars)
		defer func() { e.vars = e.vars[:mark] }()
		return e.pipeline(dot, n)
	case *parse.StringNode:
		return n.Text, nil
	case *parse.BoolNode:
		return n.True, nil
	case *parse.NilNode:
		return nil, e.errorf(n, "nil is not a command")
	case *parse.NumberNode:
		return e.number(n)
	case *parse.IdentifierNode:
		return e.call(dot, n, nil, nil, false)
	}
	return nil, e.errorf(n, "%s is not supported in a CNI config template", n)
}

// number gives a constant the type text/template gives it: float64 when
// written as one, else int.
func (e *templateExec) number(n *parse.NumberNode) (any, error) {
	t := n.Text
	hexInt := len(t) > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X') && !strings.ContainsAny(t, "pP")
	switch {
	case n.IsComplex:
		return nil, e.errorf(n, "number %s is not supported in a CNI config template", t)
	case n.IsFloat && !hexInt && !strings.HasPrefix(t, "'") && strings.ContainsAny(t, ".eEpP"):
		return n.Float64, nil
	case n.IsInt:
		if int64(int(n.Int64)) != n.Int64 {
			return nil, e.errorf(n, "%s overflows int", t)
		}
		return int(n.Int64), nil
	case n.IsUint:
		return nil, e.errorf(n, "%s overflows int", t)
	}
	return nil, e.errorf(n, "number %s is not supported in a CNI config template", t)
}

// fields follows .A.B from v: only the template's data has fields.
func (e *templateExec) fields(n parse.Node, v any, names []string) (any, error) {
	for _, name := range names {
		data, ok := v.(TemplateData)
		if !ok {
			return nil, e.errorf(n, "can't evaluate field %s in type %s", name, typeName(v))
		}
		switch name {
		case "PodCIDR":
			v = data.PodCIDR
		case "PodCIDRRanges":
			v = data.PodCIDRRanges
		case "Routes":
			v = data.Routes
		default:
			return nil, e.errorf(n, "can't evaluate field %s: the data has PodCIDR, PodCIDRRanges and Routes", name)
		}
	}
	return v, nil
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "nil"
	}
	return fmt.Sprintf("%T", v)
}

func (e *templateExec) call(dot any, id *parse.IdentifierNode, argNodes []parse.Node, final any, piped bool) (any, error) {
	// and and or evaluate their arguments only as far as they need.
	if id.Ident == "and" || id.Ident == "or" {
		n := len(argNodes)
		if piped {
			n++
		}
		if n == 0 {
			return nil, e.errorf(id, "wrong number of args for %s: want at least 1 got 0", id.Ident)
		}
		var v any
		for i := range n {
			if i < len(argNodes) {
				var err error
				if v, err = e.arg(dot, argNodes[i]); err != nil {
					return nil, err
				}
			} else {
				v = final
			}
			if truth(v) == (id.Ident == "or") {
				return v, nil
			}
		}
		return v, nil
	}
	args := make([]any, 0, len(argNodes)+1)
	for _, a := range argNodes {
		v, err := e.arg(dot, a)
		if err != nil {
			return nil, err
		}
		args = append(args, v)
	}
	if piped {
		args = append(args, final)
	}
	v, err := builtin(id.Ident, args)
	if err != nil {
		return nil, e.errorf(id, "error calling %s: %v", id.Ident, err)
	}
	return v, nil
}

func builtin(name string, args []any) (any, error) {
	want := func(n int) error {
		if len(args) != n {
			return fmt.Errorf("wrong number of args for %s: want %d got %d", name, n, len(args))
		}
		return nil
	}
	switch name {
	case "not":
		if err := want(1); err != nil {
			return nil, err
		}
		return !truth(args[0]), nil
	case "len":
		if err := want(1); err != nil {
			return nil, err
		}
		switch v := args[0].(type) {
		case string:
			return len(v), nil
		case []string:
			return len(v), nil
		}
		return nil, fmt.Errorf("len of type %s", typeName(args[0]))
	case "index":
		if len(args) == 0 {
			return nil, fmt.Errorf("wrong number of args for index: want at least 1 got 0")
		}
		return index(args[0], args[1:])
	case "eq", "ne", "lt", "le", "gt", "ge":
		return compare(name, args)
	case "print":
		return fmt.Sprint(args...), nil
	case "println":
		return fmt.Sprintln(args...), nil
	case "printf":
		if len(args) == 0 {
			return nil, fmt.Errorf("wrong number of args for printf: want at least 1 got 0")
		}
		format, ok := args[0].(string)
		if !ok {
			return nil, fmt.Errorf("printf's format is %s, not a string", typeName(args[0]))
		}
		return fmt.Sprintf(format, args[1:]...), nil
	}
	return nil, fmt.Errorf("function %q is not supported in a CNI config template", name)
}

func index(v any, keys []any) (any, error) {
	for _, k := range keys {
		switch c := v.(type) {
		case []string, string:
			i, ok := k.(int)
			if !ok {
				return nil, fmt.Errorf("cannot index %s with %s", typeName(v), typeName(k))
			}
			n := 0
			if s, isList := c.([]string); isList {
				n = len(s)
			} else {
				n = len(c.(string))
			}
			if i < 0 || i >= n {
				return nil, fmt.Errorf("index out of range: %d", i)
			}
			if s, isList := c.([]string); isList {
				v = s[i]
			} else {
				v = int(c.(string)[i])
			}
		default:
			return nil, fmt.Errorf("can't index item of type %s", typeName(v))
		}
	}
	return v, nil
}

// compare implements eq, ne, lt, le, gt and ge over numbers, strings and
// bools; eq is true when the first argument equals any of the others.
func compare(name string, args []any) (any, error) {
	if len(args) < 2 || (name != "eq" && len(args) != 2) {
		return nil, fmt.Errorf("wrong number of args for %s: want 2 got %d", name, len(args))
	}
	for _, b := range args[1:] {
		c, err := order(args[0], b, name == "eq" || name == "ne")
		if err != nil {
			return nil, err
		}
		switch name {
		case "eq":
			if c == 0 {
				return true, nil
			}
		case "ne":
			return c != 0, nil
		case "lt":
			return c < 0, nil
		case "le":
			return c <= 0, nil
		case "gt":
			return c > 0, nil
		case "ge":
			return c >= 0, nil
		}
	}
	return false, nil
}

// order compares a with b: -1, 0 or 1 (or 2 for unequal bools).
func order(a, b any, equality bool) (int, error) {
	switch x := a.(type) {
	case int:
		if y, ok := b.(int); ok {
			return cmp3(x < y, x > y), nil
		}
	case float64:
		if y, ok := b.(float64); ok {
			return cmp3(x < y, x > y), nil
		}
	case string:
		if y, ok := b.(string); ok {
			return cmp3(x < y, x > y), nil
		}
	case bool:
		if y, ok := b.(bool); ok && equality {
			if x == y {
				return 0, nil
			}
			return 2, nil
		}
		if _, ok := b.(bool); ok {
			return 0, fmt.Errorf("invalid type for comparison")
		}
	default:
		return 0, fmt.Errorf("invalid type for comparison: %s", typeName(a))
	}
	if _, isList := b.([]string); isList || b == nil {
		return 0, fmt.Errorf("invalid type for comparison: %s", typeName(b))
	}
	return 0, fmt.Errorf("incompatible types for comparison: %s and %s", typeName(a), typeName(b))
}

func cmp3(less, greater bool) int {
	switch {
	case less:
		return -1
	case greater:
		return 1
	}
	return 0
}

// truth is text/template's notion of a true value: not the zero value.
func truth(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case string:
		return v != ""
	case []string:
		return len(v) > 0
	case int:
		return v != 0
	case float64:
		return v != 0
	case bool:
		return v
	}
	return true
}
