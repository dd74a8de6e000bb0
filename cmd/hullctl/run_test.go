package main

import (
	"flag"
	"reflect"
	"strings"
	"syscall"
	"testing"

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

// TestContainerArgs: ctr's IMAGE ID [COMMAND...], or IMAGE [COMMAND...]
// with --name or --generate-id; and the flags are checked before any call.
func TestContainerArgs(t *testing.T) {
	parse := func(args ...string) (*containerSpec, error) {
		var cs *containerSpec
		var perr error
		app := &cli.App{Commands: []*cli.Command{{
			Name: "run", Flags: containerFlags(),
			Action: func(c *cli.Context) error { cs, perr = parseContainerFlags(c); return nil },
		}}}
		if err := app.Run(append([]string{"hullctl", "run"}, args...)); err != nil {
			return nil, err
		}
		return cs, perr
	}
	cs, err := parse("img", "id1", "echo", "hi")
	if err != nil || cs.image != "img" || cs.id != "id1" || !reflect.DeepEqual(cs.args, []string{"echo", "hi"}) {
		t.Fatalf("IMAGE ID CMD: %+v %v", cs, err)
	}
	cs, err = parse("--name", "n1", "img", "echo")
	if err != nil || cs.image != "img" || cs.id != "n1" || !reflect.DeepEqual(cs.args, []string{"echo"}) {
		t.Fatalf("--name: %+v %v", cs, err)
	}
	cs, err = parse("--generate-id", "img")
	if err != nil || cs.image != "img" || len(cs.id) != 12 || len(cs.args) != 0 {
		t.Fatalf("--generate-id: %+v %v", cs, err)
	}
	// Values with commas are not split, unlike cli.StringSlice's.
	cs, err = parse("--env", "A=1,2", "--mount", "src=/a,dst=/b", "--label", "k=v,w", "--memory-limit", "64m", "--cpus", "1.5", "img", "id")
	if err != nil || len(cs.specOpts) != 4 || cs.labels["k"] != "v,w" {
		t.Fatalf("flags: %+v %v", cs, err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"img"}, "usage"},
		{[]string{"--name", "x"}, "usage"},
		{[]string{"--name", "x", "--generate-id", "img"}, "--generate-id"},
		{[]string{"--memory-limit", "lots", "img", "id"}, `"lots"`},
		{[]string{"--cpus", "0", "img", "id"}, `"0"`},
		{[]string{"--mount", "dst=/x", "img", "id"}, "needs src"},
		{[]string{"--env", "NOEQ", "img", "id"}, `"NOEQ"`},
		{[]string{"--env-file", "/no/such/file", "img", "id"}, "/no/such/file"},
		{[]string{"--label", "novalue", "img", "id"}, `"novalue"`},
		{[]string{"--cwd", "rel", "img", "id"}, `"rel"`},
		{[]string{"--privileged", "--seccomp", "img", "id"}, "--privileged"},
	} {
		if _, err := parse(c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error mentioning %q", c.args, err, c.want)
		}
	}
}

// The repeated flag type must satisfy flag.Value for cli.GenericFlag.
var _ flag.Value = (*repeated)(nil)
