package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/registrytest"
	"github.com/hullrt/hull/internal/testimage"
)

// readmeCommands returns the hullctl command lines of the README's code
// blocks (indented by four spaces), split into words, comments dropped.
func readmeCommands(t *testing.T) [][]string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	data, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for n, line := range strings.Split(string(data), "\n") {
		code, ok := strings.CutPrefix(line, "    ")
		if !ok || !strings.HasPrefix(code, "hullctl ") {
			continue
		}
		words, err := shellWords(code)
		if err != nil {
			t.Fatalf("README.md:%d: %v", n+1, err)
		}
		out = append(out, words[1:])
	}
	return out
}

// shellWords splits a command line as sh would for the simple lines of a
// README: words separated by blanks, '...' and "..." quoting (no escapes
// or expansions inside single quotes), and a comment from an unquoted #
// at the start of a word. Pipes, redirections and && are refused, as the
// test runs hullctl alone.
func shellWords(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '#' && !inWord:
			return words, nil
		case c == '\'' || c == '"':
			end := strings.IndexByte(line[i+1:], c)
			if end < 0 {
				return nil, fmt.Errorf("%q: unterminated %c", line, c)
			}
			cur.WriteString(line[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case strings.IndexByte("|&;<>`$\\", c) >= 0:
			return nil, fmt.Errorf("%q: %c: the README test runs commands without a shell", line, c)
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// TestREADMECommands runs every hullctl line of the README's code blocks,
// in order, against a hulld whose docker.io is a local registry holding
// busybox: each must succeed, so that the README cannot drift from what
// hullctl does.
func TestREADMECommands(t *testing.T) {
	cmds := readmeCommands(t)
	if len(cmds) < 15 {
		t.Fatalf("found %d hullctl lines in the README; the tour has more", len(cmds))
	}
	hullctlRuntimes(t)
	reg := registrytest.Start(t, registrytest.Options{})
	img := busyboxImage(t)
	reg.Push(t, "library/busybox", "latest", img)
	d := startForTasks(t, hulltest.Options{})
	bin := hulltest.Build(t, "hullctl", "github.com/hullrt/hull/cmd/hullctl")
	// docker.io is the local registry, so that "busybox" is this test's.
	hosts := hostsDir(t, "docker.io", fmt.Sprintf("server = %q\n", "http://"+reg.Host()))
	work := t.TempDir()
	var archive bytes.Buffer
	if err := testimage.WriteOCIArchive(&archive, "docker.io/library/busybox:latest", img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "busybox.tar"), archive.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Command(bin, "--address", d.Address, "rm", "-f", "web").Run() })
	// What some lines must print, beyond succeeding.
	wants := map[string]string{
		"run --rm busybox echo hi": "hi\n",
		"logs web":                 "started\n",
	}
	for _, args := range cmds {
		line := strings.Join(args, " ")
		run := func() (string, error) {
			cmd := exec.Command(bin, withHostsDir(args, hosts)...)
			cmd.Dir = work
			// What a user would type: the line with a terminal (-it)
			// gets a shell that must be told to end.
			cmd.Stdin = strings.NewReader("exit\n")
			cmd.Env = append(os.Environ(), "HULL_ADDRESS="+d.Address, "HULL_NAMESPACE=", "CONTAINERD_NAMESPACE=")
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			if err != nil {
				return out.String(), fmt.Errorf("%v\nstdout: %s\nstderr: %s", err, out.String(), errb.String())
			}
			return out.String(), nil
		}
		want, check := wants[line]
		if !check {
			if _, err := run(); err != nil {
				t.Fatalf("README: hullctl %s: %v", line, err)
			}
			continue
		}
		// A detached container's first line may take a moment.
		hulltest.Eventually(t, 10*time.Second, "hullctl "+line+" printing "+want, func() error {
			out, err := run()
			if err == nil && out != want {
				err = fmt.Errorf("printed %q", out)
			}
			return err
		})
	}
}

// withHostsDir points the commands that reach a registry at the test's
// hosts.toml.
func withHostsDir(args []string, dir string) []string {
	n := 0
	switch {
	case len(args) > 0 && (args[0] == "pull" || args[0] == "run" || args[0] == "push"):
		n = 1
	case len(args) > 1 && (args[0] == "hosts" || args[0] == "images") && (args[1] == "check" || args[1] == "pull" || args[1] == "push"):
		n = 2
	default:
		return args
	}
	return append(append(append([]string{}, args[:n]...), "--hosts-dir", dir), args[n:]...)
}

func TestShellWords(t *testing.T) {
	for in, want := range map[string][]string{
		"hullctl ps":                              {"hullctl", "ps"},
		"hullctl  logs web   # comment":           {"hullctl", "logs", "web"},
		`hullctl run busybox sh -c 'echo $A; ls'`: {"hullctl", "run", "busybox", "sh", "-c", "echo $A; ls"},
		`a "b c"d e#f`:                            {"a", "b cd", "e#f"},
		"":                                        nil,
	} {
		got, err := shellWords(in)
		if err != nil || strings.Join(got, "|") != strings.Join(want, "|") || len(got) != len(want) {
			t.Errorf("shellWords(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"a 'b", "a | b", "a > f", "a && b", "echo $X"} {
		if _, err := shellWords(in); err == nil {
			t.Errorf("shellWords(%q): no error", in)
		}
	}
}

// FuzzShellWords: no input panics, and a line without quotes, comments or
// shell syntax splits into its fields separated by spaces and tabs.
func FuzzShellWords(f *testing.F) {
	for _, s := range []string{"hullctl ps", "a 'b c' \"d\"", "x # y", "a'", "a | b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		words, err := shellWords(s)
		if err != nil || strings.ContainsAny(s, "'\"#|&;<>`$\\") {
			return
		}
		fields := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' })
		if strings.Join(words, "\x00") != strings.Join(fields, "\x00") || len(words) != len(fields) {
			t.Fatalf("shellWords(%q) = %q, want %q", s, words, fields)
		}
	})
}
