package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runHulld runs the command line args and returns its exit status and
// output.
func runHulld(args ...string) (status int, stdout, stderr string) {
	var out, errOut strings.Builder
	status = hulld(args, &out, &errOut)
	return status, out.String(), errOut.String()
}

// TestCommandLine covers the flags (long names, aliases, given before or
// after the command words) and the config commands.
func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	odd := filepath.Join(dir, "odd.toml")
	old := filepath.Join(dir, "old.toml")
	for path, text := range map[string]string{
		good: "version = 3\nroot = \"" + dir + "/root\"\n",
		odd:  "version = 3\nno_such_key = 1\n",
		old:  "version = 2\nroot = \"" + dir + "/root\"\n",
	} {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		args       []string
		status     int
		stdout     string // substring, if set
		stderrPart string // substring, if set
	}{
		{args: []string{"--version"}, stdout: "hulld version "},
		{args: []string{"-v"}, stdout: "hulld version "},
		{args: []string{"config", "default"}, stdout: "version = 3\nroot = '/var/lib/hull'"},
		{args: []string{"--config", good, "config", "dump"}, stdout: "root = '" + dir + "/root'"},
		{args: []string{"-c", good, "--root", "/elsewhere", "config", "dump"}, stdout: "root = '/elsewhere'"},
		{args: []string{"config", "dump", "-c", good}, stdout: "root = '" + dir + "/root'"},
		{args: []string{"config", "check", good}, stdout: good + ": ok\n"},
		{args: []string{"config", "check", odd}, stdout: odd + ": ok (1 warning)", stderrPart: "no_such_key"},
		{args: []string{"--strict-config", "config", "check", odd}, status: 1, stderrPart: "--strict-config"},
		{args: []string{"config", "check", "--strict-config", odd}, status: 1, stderrPart: "--strict-config"},
		{args: []string{"-c", good, "config", "check"}, stdout: good + ": ok\n"},
		{args: []string{"config", "migrate", old}, stdout: "version = 3"},
		{args: []string{"config", "reference"}, stdout: "# hulld configuration reference"},
		{args: []string{"config"}, status: 1, stderrPart: "config needs a command"},
		{args: []string{"config", "check", good, good}, status: 1, stderrPart: "unexpected arguments"},
		{args: []string{"config", "bogus"}, status: 1, stderrPart: `unknown config command "bogus"`},
		{args: []string{"bogus"}, status: 1, stderrPart: `unknown command "bogus"`},
		{args: []string{"--no-such-flag"}, status: 2, stderrPart: "flag provided but not defined"},
		{args: []string{"--help"}, stderrPart: "hulld [flags] config check [FILE]"},
		{args: []string{"-c", filepath.Join(dir, "missing.toml")}, status: 1, stderrPart: "missing.toml"},
	} {
		status, stdout, stderr := runHulld(tc.args...)
		if status != tc.status || !strings.Contains(stdout, tc.stdout) || !strings.Contains(stderr, tc.stderrPart) {
			t.Errorf("hulld %s: status %d, stdout %.200q, stderr %.300q; want status %d, stdout with %q, stderr with %q",
				strings.Join(tc.args, " "), status, stdout, stderr, tc.status, tc.stdout, tc.stderrPart)
		}
	}
}
