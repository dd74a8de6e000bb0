package filters

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

// object is a test object: its fields are keyed by the dotted field path.
type object map[string]string

func (o object) Field(fieldpath []string) (string, bool) {
	v, ok := o[strings.Join(fieldpath, ".")]
	return v, ok
}

func TestParseMatch(t *testing.T) {
	var (
		redis    = object{"name": "redis", "labels.a.b": "c", "labels.foo": "", "labels.b": "c"}
		abc      = object{"name": "abc"}
		x        = object{"name": "x"}
		nothing  = object{}
		spaced   = object{"name": "hello world", "labels.k": "a\"b\\c\nd"}
		topicNS  = object{"topic": "/namespaces/create"}
		topicTsk = object{"topic": "/tasks/exit"}
		dashed   = object{"labels.io-example_key.2": "v"}
		empty    = object{"name": ""}
	)
	tests := []struct {
		filter   string
		match    []object
		nonMatch []object
	}{
		{"", []object{redis, nothing}, nil},
		{"   \t", []object{redis, nothing}, nil},
		{"name==x", []object{x}, []object{redis, nothing}},
		{"  name  ==  x  ", []object{x}, []object{redis, nothing}},
		{`labels."a.b"==c`, []object{redis}, []object{x}},
		{`labels . "a.b" == c`, []object{redis}, []object{x}},
		{`"name"==x`, []object{x}, []object{redis}},
		{"labels.foo", []object{redis}, []object{x, nothing}},
		{"name", []object{redis, x, empty}, []object{nothing}},
		{"name~=^ab", []object{abc}, []object{redis, nothing}},
		{`name~=""`, []object{abc, empty}, []object{nothing}}, // an empty regexp: the field is present
		{"name!=x", []object{redis, abc, nothing}, []object{x}},
		{`name!=""`, []object{redis, nothing}, []object{empty}},
		{`name==""`, []object{empty}, []object{redis, nothing}},
		{"name==redis,labels.b==c", []object{redis}, []object{x, abc}},
		{"name==x,labels.b==c", nil, []object{redis, x}},
		{"name==x;name==abc", []object{x, abc}, []object{redis, nothing}},
		{"name==x ; name==abc ; labels.foo", []object{x, abc, redis}, []object{nothing}},
		{"name==redis,labels.b==c;name==x", []object{redis, x}, []object{abc}},
		{`topic~=/^\/namespaces\//`, []object{topicNS}, []object{topicTsk, nothing}},
		{`topic~=/^\/tasks\/(exit|start)$/`, []object{topicTsk}, []object{topicNS}},
		{`topic~="^/namespaces/"`, []object{topicNS}, []object{topicTsk}},
		{`topic=="/tasks/exit"`, []object{topicTsk}, []object{topicNS}},
		{`topic==/tasks\/exit/`, nil, []object{topicTsk}}, // the value is "tasks/exit"
		{`name~=/^\w+$/`, []object{redis, abc}, []object{spaced}},
		{`name~=/a\\/`, nil, []object{redis}}, // regexp `a\\`: a literal backslash
		{`name=="hello world"`, []object{spaced}, []object{redis}},
		{`labels.k=="a\"b\\c\nd"`, []object{spaced}, []object{redis}},
		{`name=="\x72\u0065dis"`, []object{redis}, []object{x}},
		{`name~="^hello\\s"`, []object{spaced}, []object{redis}},
		{"labels.io-example_key.2==v", []object{dashed}, []object{redis}},
		{"name==a/b.c:d@e=f", []object{{"name": "a/b.c:d@e=f"}}, []object{x}},
		{"name==héllo", []object{{"name": "héllo"}}, []object{x}},
	}
	for _, tc := range tests {
		t.Run(tc.filter, func(t *testing.T) {
			f, err := Parse(tc.filter)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			for _, o := range tc.match {
				if !f.Match(o) {
					t.Errorf("%v does not match, want a match", o)
				}
			}
			for _, o := range tc.nonMatch {
				if f.Match(o) {
					t.Errorf("%v matches, want no match", o)
				}
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		filter string
		offset int
		want   string // part of the message
	}{
		{",", 0, "expected a field name"},
		{"name==x,", 8, "expected a field name"},
		{"name==x,,name==y", 8, "expected a field name"},
		{"name==x;", 8, "expected a field name"},
		{";name==x", 0, "expected a field name"},
		{"labels.", 7, `expected a field name after "."`},
		{"labels..a", 7, `expected a field name after "."`},
		{".a", 0, "expected a field name"},
		{"==x", 0, "expected a field name"},
		{"name==", 6, `expected a value after "=="`},
		{"name!=  ", 8, `expected a value after "!="`},
		{"name~=,a", 6, `expected a value after "~="`},
		{"name=x", 4, "expected an operator"},
		{"name = x", 5, "expected an operator"},
		{"name x", 5, "expected an operator"},
		{"name<x", 4, "expected an operator"},
		{`name=="abc`, 6, `expected a closing '"'`},
		{`"name==abc`, 0, `expected a closing '"'`},
		{`name=="a\"`, 6, `expected a closing '"'`},
		{`name=="a\qb"`, 8, "expected a valid escape sequence"},
		{`name~=/abc`, 6, "expected a closing '/'"},
		{`name~=/abc\/`, 6, "expected a closing '/'"},
		{"name~=(", 6, "expected a valid regular expression"},
		{"name~=/[a-/", 6, "expected a valid regular expression"},
		{"name~=" + strings.Repeat("a{1000}", 17), 6, "instructions, the limit is"},
		{strings.Repeat("name~=a{1000}a{1000}a{1000}a{1000}a{1000}a{1000}a{1000}a{1000},", 8) + "name~=a{1000}a{1000}", 510, "more than 65536 instructions"},
		{"name==x y", 8, `expected ",", ";" or the end of the filter`},
		{`name=="x"y`, 9, `expected ",", ";" or the end of the filter`},
		{`name==x"y"`, 7, `expected ",", ";" or the end of the filter`},
		{`name==/x/y`, 9, `expected ",", ";" or the end of the filter`},
		{"name~=" + strings.Repeat("a", maxRegexpLength+1), 6, "regular expression is 1025 bytes long"},
	}
	for _, tc := range tests {
		t.Run(tc.filter, func(t *testing.T) {
			f, err := Parse(tc.filter)
			if err == nil {
				t.Fatalf("Parse returned %#v, want an error", f)
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("error %v does not wrap ErrInvalidArgument", err)
			}
			msg := err.Error()
			wantPrefix := "filter " + strconv.Quote(tc.filter) + " at offset " + strconv.Itoa(tc.offset) + ": "
			if !strings.HasPrefix(msg, wantPrefix) {
				t.Errorf("error %q does not start with %q", msg, wantPrefix)
			}
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not contain %q", msg, tc.want)
			}
			if !strings.HasSuffix(msg, ": invalid argument") {
				t.Errorf("error %q does not end with %q", msg, ": invalid argument")
			}
		})
	}
}

func TestErrorMessageExample(t *testing.T) {
	_, err := Parse("name==")
	want := `filter "name==" at offset 6: expected a value after "==": invalid argument`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

func TestParseLimits(t *testing.T) {
	// Exactly at the limits: accepted.
	long := "name==" + strings.Repeat("a", maxFilterLength-len("name=="))
	if _, err := Parse(long); err != nil {
		t.Fatalf("filter of %d bytes: %v", len(long), err)
	}
	re := "name~=" + strings.Repeat("a", maxRegexpLength)
	if _, err := Parse(re); err != nil {
		t.Fatalf("regexp of %d bytes: %v", maxRegexpLength, err)
	}
	// Over the filter limit: rejected without quoting the whole input.
	_, err := Parse(long + "a")
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("got %v, want an InvalidArgument error", err)
	}
	if len(err.Error()) > 256 {
		t.Errorf("error is %d bytes long", len(err.Error()))
	}
	if !strings.Contains(err.Error(), "65537 bytes long") {
		t.Errorf("error %q does not give the length", err)
	}
}

func TestParseAll(t *testing.T) {
	x, y := object{"name": "x"}, object{"name": "y"}
	for _, ss := range [][]string{nil, {}, {""}, {"", "  "}} {
		f, err := ParseAll(ss...)
		if err != nil || f != Always {
			t.Errorf("ParseAll(%q) = %v, %v; want Always", ss, f, err)
		}
	}
	f, err := ParseAll("name==x", "", "name==y")
	if err != nil {
		t.Fatal(err)
	}
	if !f.Match(x) || !f.Match(y) || f.Match(object{"name": "z"}) {
		t.Error("ParseAll is not the OR of its filters")
	}
	f, err = ParseAll("", "name==x")
	if err != nil {
		t.Fatal(err)
	}
	if f.Match(y) {
		t.Error("an empty filter in ParseAll made it match everything")
	}
	_, err = ParseAll("name==x", "name==")
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), `filter "name=="`) {
		t.Errorf("got %v, want an InvalidArgument error naming the bad filter", err)
	}
}

func TestAdapterFunc(t *testing.T) {
	var got []string
	a := AdapterFunc(func(fp []string) (string, bool) {
		got = append([]string(nil), fp...)
		return "v", true
	})
	f, err := Parse(`labels."io.example/key".x==v`)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Match(a) {
		t.Error("no match")
	}
	if want := []string{"labels", "io.example/key", "x"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("fieldpath %q, want %q", got, want)
	}
	// Nil adaptors have no fields rather than panicking.
	if f.Match(nil) || f.Match(AdapterFunc(nil)) {
		t.Error("nil adaptor matched")
	}
	if !Always.Match(nil) {
		t.Error("Always did not match")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"", "name==x", `labels."a.b"==c`, "labels.foo", "name~=^ab", "name!=x",
		"name==a,labels.b==c", "name==a;name==b", `topic~=/^\/namespaces\//`,
		`name=="hello \"world\"\n"`, ",", "name==", "name=x", `name=="abc`,
		"name~=(", "name==x y", `name~=/a\\/`, `"\xff"==a`, "a.b.c.d!=\xff\xfe",
		"name~=a{1000}{1000}", `a=="\u12"`, "a~=/\\", " ; , ",
	} {
		f.Add(s)
	}
	adaptors := []Adaptor{
		nil,
		object{},
		AdapterFunc(func(fp []string) (string, bool) { return strings.Join(fp, "."), true }),
		AdapterFunc(func(fp []string) (string, bool) { return "", len(fp)%2 == 0 }),
	}
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := Parse(s)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("error %v does not wrap ErrInvalidArgument", err)
			}
			if len(s) <= maxFilterLength && !strings.Contains(err.Error(), strconv.Quote(s)) {
				t.Fatalf("error %q does not quote the input", err)
			}
			return
		}
		for _, a := range adaptors {
			flt.Match(a)
		}
	})
}
