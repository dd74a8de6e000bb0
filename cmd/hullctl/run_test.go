package main

import (
	"flag"
	"fmt"
	"io"
	"path"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"
)

func TestParseMount(t *testing.T) {
	for _, c := range []struct {
		in   string
		want specs.Mount
	}{
		{"type=bind,src=/a,dst=/b,options=rbind:ro", specs.Mount{Type: "bind", Source: "/a", Destination: "/b", Options: []string{"rbind", "ro"}}},
		// bind is the default type, and a bind mount gets rbind.
		{"src=/a,dst=/b", specs.Mount{Type: "bind", Source: "/a", Destination: "/b", Options: []string{"rbind"}}},
		{"source=/a,target=/b,options=ro", specs.Mount{Type: "bind", Source: "/a", Destination: "/b", Options: []string{"rbind", "ro"}}},
		{"type=bind,src=/a,destination=/b,options=bind", specs.Mount{Type: "bind", Source: "/a", Destination: "/b", Options: []string{"bind"}}},
		{"type=tmpfs,src=tmpfs,dst=/scratch,options=size=1m", specs.Mount{Type: "tmpfs", Source: "tmpfs", Destination: "/scratch", Options: []string{"size=1m"}}},
		{"type=tmpfs,dst=/t", specs.Mount{Type: "tmpfs", Destination: "/t"}},
	} {
		got, err := parseMount(c.in)
		if err != nil {
			t.Errorf("parseMount(%q): %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("parseMount(%q) = %+v, want %+v", c.in, got, c.want)
		}
	}
	for in, want := range map[string]string{
		"":                                "not KEY=VALUE",
		"bogus":                           `"bogus" is not KEY=VALUE`,
		"type=bind,src=/a":                "no dst",
		"src=/a,dst=relative":             `dst "relative" is not absolute`,
		"src=rel,dst=/b":                  `src "rel" is not absolute`,
		"dst=/b":                          "needs src",
		"src=/a,dst=/b,color=red":         `unknown key "color"`,
		"src=/a,dst=/b,options=rbind::ro": "empty option",
		"=x,dst=/b":                       "not KEY=VALUE",
	} {
		_, err := parseMount(in)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "--mount") {
			t.Errorf("parseMount(%q): %v, want an error mentioning %q", in, err, want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]uint64{
		"1": 1, "1024": 1024, "64m": 64 << 20, "64M": 64 << 20, "64MiB": 64 << 20, "64mb": 64 << 20,
		"512k": 512 << 10, "512KiB": 512 << 10, "1g": 1 << 30, "1.5g": 3 << 29, "2t": 2 << 40, "100b": 100, " 8m ": 8 << 20,
	} {
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "m", "12q", "-1", "0", "0.1", "1..5m", "1e9", "99999999999t", "64 m b"} {
		if got, err := parseSize(in); err == nil || !strings.Contains(err.Error(), strings.TrimSpace(in)) && in != "" {
			t.Errorf("parseSize(%q) = %d, %v; want an error naming it", in, got, err)
		}
	}
}

func TestParseCPUs(t *testing.T) {
	for in, want := range map[string]float64{"1": 1, "0.5": 0.5, "2.25": 2.25, " 3 ": 3} {
		if got, err := parseCPUs(in); err != nil || got != want {
			t.Errorf("parseCPUs(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1", "abc", "NaN", "Inf"} {
		if _, err := parseCPUs(in); err == nil || !strings.Contains(err.Error(), `"`+in+`"`) {
			t.Errorf("parseCPUs(%q): %v, want an error naming it", in, err)
		}
	}
}

func TestReadEnvFile(t *testing.T) {
	in := "# comment\n\n  FOO=bar\nEMPTY=\nQUOTED=\"kept as is\"\r\nWITH_EQ=a=b\n   # indented comment\n"
	got, err := readEnvFile(strings.NewReader(in), "env.list")
	want := []string{"FOO=bar", "EMPTY=", `QUOTED="kept as is"`, "WITH_EQ=a=b"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("readEnvFile = %q, %v; want %q", got, err, want)
	}
	for in, want := range map[string]string{
		"A=1\nNOVALUE\n": "env.list:2",
		"=x\n":           "env.list:1",
		"BAD KEY=1\n":    "env.list:1",
	} {
		if _, err := readEnvFile(strings.NewReader(in), "env.list"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("readEnvFile(%q): %v, want an error at %s", in, err, want)
		}
	}
	if _, err := parseEnv([]string{"A=1", "B="}); err != nil {
		t.Fatal(err)
	}
	if _, err := parseEnv([]string{"A"}); err == nil || !strings.Contains(err.Error(), `"A"`) {
		t.Fatalf("parseEnv(A): %v", err)
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{"SIGTERM": syscall.SIGTERM, "term": syscall.SIGTERM, "KILL": syscall.SIGKILL, "9": syscall.SIGKILL, "sigint": syscall.SIGINT} {
		if got, err := parseSignal(in); err != nil || got != want {
			t.Errorf("parseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"SIGNOPE", "0", "65", ""} {
		if _, err := parseSignal(in); err == nil || !strings.Contains(err.Error(), `"`+in+`"`) {
			t.Errorf("parseSignal(%q): %v, want an error naming it", in, err)
		}
	}
}

// TestContainerArgs: run's IMAGE [COMMAND...] with the id from --name or
// made up; containers create's ctr form, IMAGE ID [COMMAND...], or
// IMAGE [COMMAND...] with --name or --generate-id; and the flags are
// checked before any call.
func TestContainerArgs(t *testing.T) {
	parseAs := func(form argsForm, args ...string) (*containerSpec, error) {
		var cs *containerSpec
		var perr error
		app := &cli.App{UseShortOptionHandling: true, Commands: []*cli.Command{{
			Name: "run", Flags: containerFlags(),
			Action: func(c *cli.Context) error { cs, perr = parseContainerFlags(c, form); return nil },
		}}}
		if err := app.Run(append([]string{"hullctl", "run"}, args...)); err != nil {
			return nil, err
		}
		return cs, perr
	}
	parse := func(args ...string) (*containerSpec, error) { return parseAs(nerdctlForm, args...) }
	cs, err := parse("img", "echo", "hi")
	if err != nil || cs.image != "img" || len(cs.id) != 12 || !reflect.DeepEqual(cs.args, []string{"echo", "hi"}) {
		t.Fatalf("IMAGE CMD: %+v %v", cs, err)
	}
	cs, err = parseAs(ctrForm, "img", "id1", "echo", "hi")
	if err != nil || cs.image != "img" || cs.id != "id1" || !reflect.DeepEqual(cs.args, []string{"echo", "hi"}) {
		t.Fatalf("ctr's IMAGE ID CMD: %+v %v", cs, err)
	}
	for _, form := range []argsForm{nerdctlForm, ctrForm} {
		cs, err = parseAs(form, "--name", "n1", "img", "echo")
		if err != nil || cs.image != "img" || cs.id != "n1" || !reflect.DeepEqual(cs.args, []string{"echo"}) {
			t.Fatalf("--name: %+v %v", cs, err)
		}
		cs, err = parseAs(form, "--generate-id", "img")
		if err != nil || cs.image != "img" || len(cs.id) != 12 || len(cs.args) != 0 {
			t.Fatalf("--generate-id: %+v %v", cs, err)
		}
	}
	// Values with commas are not split, unlike cli.StringSlice's; nerdctl's
	// short flags, combined too.
	cs, err = parse("--env", "A=1,2", "--mount", "src=/a,dst=/b", "--label", "k=v,w", "--memory-limit", "64m", "--cpus", "1.5", "img")
	if err != nil || len(cs.specOpts) != 4 || cs.labels["k"] != "v,w" {
		t.Fatalf("flags: %+v %v", cs, err)
	}
	cs, err = parse("-e", "A=1", "-v", "/a:/b:ro", "-w", "/b", "-t", "img", "sh")
	if err != nil || len(cs.specOpts) != 4 || !cs.tty {
		t.Fatalf("short flags: %+v %v", cs, err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{}, "usage"},
		{[]string{"--name", "x"}, "usage"},
		{[]string{"--name", "x", "--generate-id", "img"}, "--generate-id"},
		{[]string{"--memory-limit", "lots", "img"}, `"lots"`},
		{[]string{"--cpus", "0", "img"}, `"0"`},
		{[]string{"--mount", "dst=/x", "img"}, "needs src"},
		{[]string{"-v", "data:/x", "img"}, "named volumes"},
		{[]string{"-p", "80:80", "img"}, "--net-host"},
		{[]string{"--env", "NOEQ", "img"}, `"NOEQ"`},
		{[]string{"--env-file", "/no/such/file", "img"}, "/no/such/file"},
		{[]string{"--label", "novalue", "img"}, `"novalue"`},
		{[]string{"--cwd", "rel", "img"}, `"rel"`},
		{[]string{"--privileged", "--seccomp", "img"}, "--privileged"},
	} {
		if _, err := parse(c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error mentioning %q", c.args, err, c.want)
		}
	}
	if _, err := parseAs(ctrForm, "img"); err == nil || !strings.Contains(err.Error(), "IMAGE ID") {
		t.Errorf("ctr's form without an id: %v", err)
	}
}

func TestParseVolume(t *testing.T) {
	for in, want := range map[string]specs.Mount{
		"/a:/b":    {Type: "bind", Source: "/a", Destination: "/b", Options: []string{"rbind"}},
		"/a:/b:ro": {Type: "bind", Source: "/a", Destination: "/b", Options: []string{"rbind", "ro"}},
		"/a:/b:rw": {Type: "bind", Source: "/a", Destination: "/b", Options: []string{"rbind"}},
	} {
		got, err := parseVolume(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("parseVolume(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"/a":         "write /host/path:/in/container",
		"/a:/b:ro:x": "write /host/path:/in/container",
		"data:/b":    `host path "data" is not absolute (hull has no named volumes)`,
		"/a:b":       `container path "b" is not absolute`,
		"/a:/b:z":    `option "z"`,
		"":           "write /host/path",
	} {
		if _, err := parseVolume(in); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "-v") {
			t.Errorf("parseVolume(%q): %v, want an error mentioning %q", in, err, want)
		}
	}
}

// FuzzParseVolume: any input gives a bind mount of absolute paths or an
// error naming the input, never a panic.
func FuzzParseVolume(f *testing.F) {
	for _, s := range []string{"/a:/b", "/a:/b:ro", "data:/b", "/a:/b:z", "::", "/:/:rw", "/a:/b:ro:x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseVolume(s)
		if err != nil {
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", s)) {
				t.Fatalf("error %q does not name the input %q", err, s)
			}
			return
		}
		if m.Type != "bind" || !path.IsAbs(m.Source) || !path.IsAbs(m.Destination) || m.Options[0] != "rbind" {
			t.Fatalf("parseVolume(%q) = %+v", s, m)
		}
	})
}

// FuzzParseMount: any --mount value gives a mount with an absolute
// destination or an error naming the flag, never a panic.
func FuzzParseMount(f *testing.F) {
	for _, s := range []string{"type=bind,src=/a,dst=/b,options=rbind:ro", "src=/a,dst=/b", "type=tmpfs,dst=/t", "=x", "dst=/b", ",,", "options=::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseMount(s)
		if err != nil {
			if !strings.Contains(err.Error(), "--mount") {
				t.Fatalf("error %q does not name --mount", err)
			}
			return
		}
		if !path.IsAbs(m.Destination) || m.Type == "" {
			t.Fatalf("parseMount(%q) = %+v", s, m)
		}
	})
}

func TestNearestCommand(t *testing.T) {
	cmds := []*cli.Command{{Name: "images", Aliases: []string{"image", "i"}}, {Name: "containers", Aliases: []string{"c"}},
		{Name: "logs"}, {Name: "rm"}, {Name: "rmi"}, {Name: "ps"}, {Name: "snapshots"}, {Name: "secret", Hidden: true}}
	for typed, want := range map[string]string{
		"imgaes": "images", "imags": "images", "iamge": "images", "lgos": "logs", "log": "logs", "contaners": "containers",
		"snapshot": "snapshots", "snap": "snapshots", "cont": "containers", "rmm": "rm",
		"xyzzy": "", "secret": "", "": "", "zz": "",
	} {
		if got := nearestCommand(typed, cmds); got != want {
			t.Errorf("nearestCommand(%q) = %q, want %q", typed, got, want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"a", "", 1}, {"images", "imgaes", 1}, {"kitten", "sitting", 3}, {"ab", "ba", 1}, {"ça", "ca", 1}} {
		if got := editDistance(c.a, c.b); got != c.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", c.a, c.b, got, c.d)
		}
	}
}

// The repeated flag type must satisfy flag.Value for cli.GenericFlag.
var _ flag.Value = (*repeated)(nil)

func TestEndOfTransmission(t *testing.T) {
	for in, want := range map[string]string{
		"":         "\x04",
		"ab\n":     "ab\n\x04",
		"ab":       "ab\x04\x04",
		"a\nbc":    "a\nbc\x04\x04",
		"a\n\nb\n": "a\n\nb\n\x04",
	} {
		got, err := io.ReadAll(&endOfTransmission{r: iotest.OneByteReader(strings.NewReader(in))})
		if err != nil || string(got) != want {
			t.Errorf("%q: %q, %v; want %q", in, got, err, want)
		}
		got, _ = io.ReadAll(&endOfTransmission{r: iotest.DataErrReader(strings.NewReader(in))})
		if string(got) != want {
			t.Errorf("%q with data and EOF in one read: %q; want %q", in, got, want)
		}
	}
}

// TestEndOfTransmissionHolds checks that the input's EOF, which closes the
// stdin FIFO, waits for the process's end after the ^D went through.
func TestEndOfTransmissionHolds(t *testing.T) {
	hold := make(chan struct{})
	r := &endOfTransmission{r: strings.NewReader("ab\n"), hold: hold}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(r)
		got <- b
	}()
	select {
	case b := <-got:
		t.Fatalf("input ended (%q) before the hold was released", b)
	case <-time.After(50 * time.Millisecond):
	}
	close(hold)
	if b := <-got; string(b) != "ab\n\x04" {
		t.Fatalf("got %q, want %q", b, "ab\n\x04")
	}
}
