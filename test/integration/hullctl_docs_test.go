package integration

// The tests here check the claims of docs/hullctl.md and of hullctl's help
// that no other test checks; the others are named in the comment of each
// test. Where the docs quote a message or list flags and aliases, the test
// reads docs/hullctl.md itself, so that the page cannot drift from hullctl.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/registrytest"
	"github.com/hullrt/hull/internal/testimage"
)

// docsResult is what one hullctl run gave.
type docsResult struct {
	stdout, stderr string
	code           int
}

// docsHullctl runs bin with args, stdin as its input and env added to an
// environment without the variables hullctl reads, so that the
// developer's own settings do not leak in.
func docsHullctl(t *testing.T, bin, stdin string, env []string, args ...string) docsResult {
	t.Helper()
	cmd := exec.Command(bin, args...)
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "HULL_ADDRESS", "CONTAINERD_ADDRESS", "HULL_NAMESPACE", "CONTAINERD_NAMESPACE", "HULL_RUNTIME", "HULL_SNAPSHOTTER", "CONTAINERD_SNAPSHOTTER":
		default:
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatalf("hullctl %s: %v", strings.Join(args, " "), err)
	}
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("hullctl %s: still running after 60s\nstdout: %s\nstderr: %s", strings.Join(args, " "), out.String(), errb.String())
	}
	r := docsResult{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("hullctl %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// docsPage returns docs/hullctl.md with every run of blanks (line breaks
// included) made one space, as the page wraps its sentences anywhere.
func docsPage(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	data, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "docs", "hullctl.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// oneLine joins s's words with single spaces.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// docsSection returns the text of the section of page under the heading
// "## title", up to the next heading.
func docsSection(t *testing.T, page, title string) string {
	t.Helper()
	_, rest, ok := strings.Cut(page, "\n## "+title+"\n")
	if !ok {
		t.Fatalf("docs/hullctl.md has no section %q", title)
	}
	sec, _, _ := strings.Cut(rest, "\n## ")
	return sec
}

// docsQuoted returns the text between backquotes in s that starts with
// prefix, blanks made single spaces.
func docsQuoted(t *testing.T, s, prefix string) string {
	t.Helper()
	for _, m := range regexp.MustCompile("`([^`]*)`").FindAllStringSubmatch(s, -1) {
		if q := oneLine(m[1]); strings.HasPrefix(q, prefix) {
			return q
		}
	}
	t.Fatalf("docs/hullctl.md quotes nothing starting with %q in:\n%s", prefix, s)
	return ""
}

// helpCommands parses the COMMANDS part of a help text: each command's
// names (the name first, then its aliases), its usage line and its
// category ("" outside one).
type helpCommand struct {
	names           []string
	usage, category string
}

func helpCommands(t *testing.T, help string) map[string]helpCommand {
	t.Helper()
	_, rest, ok := strings.Cut(help, "\nCOMMANDS:\n")
	if !ok {
		t.Fatalf("help has no COMMANDS:\n%s", help)
	}
	cmds := map[string]helpCommand{}
	category := ""
	for _, l := range strings.Split(rest, "\n") {
		if l == "" || !strings.HasPrefix(l, "   ") {
			break
		}
		trimmed := strings.TrimSpace(l)
		names, usage, _ := strings.Cut(trimmed, "  ")
		if usage == "" && strings.HasSuffix(trimmed, ":") {
			category = strings.TrimSuffix(trimmed, ":")
			continue
		}
		hc := helpCommand{names: strings.Split(names, ", "), usage: strings.TrimSpace(usage), category: category}
		cmds[hc.names[0]] = hc
	}
	return cmds
}

// helpFlags returns every name of every option an OPTIONS (or GLOBAL
// OPTIONS) part of a help text lists, with its dashes ("--name", "-n"),
// mapped to the option's line.
func helpFlags(t *testing.T, help string) map[string]string {
	t.Helper()
	flags := map[string]string{}
	in := false
	for _, l := range strings.Split(help, "\n") {
		switch {
		case l == "OPTIONS:" || l == "GLOBAL OPTIONS:":
			in = true
			continue
		case !strings.HasPrefix(l, "   "):
			in = false
		}
		if !in {
			continue
		}
		names, _, _ := strings.Cut(strings.TrimSpace(l), "  ")
		for _, n := range strings.Split(names, ", ") {
			name, _, _ := strings.Cut(n, " ")
			flags[name] = strings.TrimSpace(l)
		}
	}
	if len(flags) == 0 {
		t.Fatalf("help lists no options:\n%s", help)
	}
	return flags
}

// TestHullctlDocsHelp checks the page and the help against each other and
// against hullctl: the commands nerdctl's users type first are listed, each
// command and flag the page names is in that command's help, each row says
// which ctr command it is the same as and the help says so too, the
// aliases are the page's (and ctr 2.x's s is its sandboxes, as the page
// warns), and the messages the page quotes that need no daemon are
// hullctl's, word for word.
//
// Checked elsewhere: the README's commands (readme_test.go:TestREADMECommands),
// the namespace precedence (cmd/hullctl/main_test.go:TestNamespaceSources).
func TestHullctlDocsHelp(t *testing.T) {
	bin := hulltest.Build(t, "hullctl", "github.com/hullrt/hull/cmd/hullctl")
	page := docsPage(t)
	help := func(args ...string) string {
		t.Helper()
		r := docsHullctl(t, bin, "", nil, append(args, "--help")...)
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("hullctl %s --help: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
		}
		return r.stdout
	}
	top := help()
	cmds := helpCommands(t, top)

	// The commands people type first, in their own category, first.
	for _, name := range []string{"run", "pull", "push", "images", "ps", "exec", "logs", "rm", "rmi"} {
		c, ok := cmds[name]
		if !ok {
			t.Errorf("hullctl --help does not list %s", name)
			continue
		}
		if name != "images" && !strings.Contains(c.category, "nerdctl") {
			t.Errorf("hullctl --help lists %s under %q, not with nerdctl's habits", name, c.category)
		}
	}

	// Each row of the table: the commands and flags of its first column
	// exist, and the command it is the same as is named in the help.
	rows := 0
	flagsOf := map[string]map[string]string{}
	checkFlag := func(cmd, flag, where string) {
		t.Helper()
		if flagsOf[cmd] == nil {
			flagsOf[cmd] = helpFlags(t, help(cmd))
		}
		names := []string{flag}
		if !strings.HasPrefix(flag, "--") && len(flag) > 2 {
			// -it: short options run together.
			names = nil
			for _, c := range flag[1:] {
				names = append(names, "-"+string(c))
			}
		}
		for _, n := range names {
			if _, ok := flagsOf[cmd][n]; !ok {
				t.Errorf("docs/hullctl.md (%s) names %s %s, which hullctl %s --help does not list", where, cmd, n, cmd)
			}
		}
	}
	quoted := regexp.MustCompile("`([^`]*)`")
	flagWord := regexp.MustCompile(`^\[?(--?[a-z][a-z-]*)`)
	for _, line := range strings.Split(docsSection(t, page, "Commands typed first (nerdctl's)"), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		if len(cells) != 3 {
			t.Fatalf("docs/hullctl.md: a table row without 3 cells: %q", line)
		}
		rows++
		var rowCmds []string
		for _, q := range quoted.FindAllStringSubmatch(cells[0], -1) {
			words := strings.Fields(q[1])
			if _, ok := cmds[words[0]]; ok {
				rowCmds = append(rowCmds, words[0])
				words = words[1:]
			}
			if len(rowCmds) == 0 {
				t.Fatalf("docs/hullctl.md: the row %q names no hullctl command first", line)
			}
			for _, w := range words {
				if m := flagWord.FindStringSubmatch(w); m != nil {
					checkFlag(rowCmds[len(rowCmds)-1], m[1], cells[0])
				}
			}
		}
		// The notes of run's rows name more of run's flags; those of
		// the other rows name flags of other commands (rm's "never a
		// --log-file").
		if rowCmds[0] == "run" {
			for _, q := range quoted.FindAllStringSubmatch(cells[2], -1) {
				if m := flagWord.FindStringSubmatch(q[1]); m != nil && m[0] == q[1] {
					checkFlag("run", m[1], cells[2])
				}
			}
		}
		sames := quoted.FindAllStringSubmatch(cells[1], -1)
		for i, s := range sames {
			if i >= len(rowCmds) {
				break
			}
			if usage := cmds[rowCmds[i]].usage; !strings.Contains(usage, s[1]) {
				t.Errorf("docs/hullctl.md says %s is %s; hullctl --help's %q does not say so", rowCmds[i], s[1], usage)
			}
		}
	}
	if rows < 12 {
		t.Fatalf("found %d rows in the table of docs/hullctl.md; it has more", rows)
	}

	// The aliases: the page's, exactly.
	groups := 0
	for _, m := range regexp.MustCompile("`([a-z]+)` \\(([^)]*)\\)").FindAllStringSubmatch(oneLine(docsSection(t, page, "ctr's groups and aliases")), -1) {
		groups++
		want := []string{m[1]}
		if !strings.HasPrefix(m[2], "no alias") {
			for _, a := range quoted.FindAllStringSubmatch(m[2], -1) {
				want = append(want, a[1])
			}
		}
		got := cmds[m[1]].names
		slices.Sort(want)
		got = slices.Sorted(slices.Values(got))
		if !slices.Equal(got, want) {
			t.Errorf("docs/hullctl.md gives %s the names %v; hullctl --help %v", m[1], want, got)
		}
	}
	if groups < 8 {
		t.Fatalf("found %d groups with their aliases in docs/hullctl.md; it lists more", groups)
	}
	// hullctl --help's own list of ctr's aliases.
	m := regexp.MustCompile(`ctr's aliases\s*\(([^)]*)\)`).FindStringSubmatch(top)
	if m == nil {
		t.Fatalf("hullctl --help no longer lists ctr's aliases:\n%s", top)
	}
	for _, pair := range strings.Split(oneLine(m[1]), ", ") {
		alias, name, _ := strings.Cut(pair, " ")
		if !slices.Contains(cmds[name].names, alias) {
			t.Errorf("hullctl --help says %s is %s; it is not", alias, name)
		}
	}
	// The warning: ctr 2.x's s is its sandboxes, not snapshots.
	ctrHelp, err := exec.Command(hulltest.Containerd2Bin(t, "ctr"), "--help").Output()
	if err != nil {
		t.Fatalf("ctr 2.4.2 --help: %v", err)
	}
	if c := helpCommands(t, string(ctrHelp))["sandboxes"]; !slices.Contains(c.names, "s") {
		t.Errorf("docs/hullctl.md says ctr 2.x's s is sandboxes; ctr 2.4.2 --help says %v", c.names)
	}

	// The settings: every flag the page names, and the default wait.
	global := helpFlags(t, top)
	for _, f := range []string{"--address", "--namespace", "--debug", "--connect-timeout"} {
		if _, ok := global[f]; !ok {
			t.Errorf("hullctl --help lists no %s", f)
		}
	}
	if ct := global["--connect-timeout"]; !strings.Contains(ct, "(default: 30s)") || !strings.Contains(oneLine(page), "after `--connect-timeout`, 30s by default") {
		t.Errorf("docs/hullctl.md and hullctl --help disagree on --connect-timeout's default: %q", ct)
	}
	// The wait itself: clientfault_daemon_test.go:TestClientFaultNoDaemonGivesUp.
	settings := oneLine(docsSection(t, page, "Settings"))
	for _, want := range []string{
		"The socket is `--address`, then `$HULL_ADDRESS`, then `$CONTAINERD_ADDRESS`, then `/run/hull/hull.sock`",
		"the namespace `--namespace`, then `$HULL_NAMESPACE`, then `$CONTAINERD_NAMESPACE`, then `default`",
	} {
		// TestHullctlDocsSettings runs this order.
		if !strings.Contains(settings, want) {
			t.Errorf("docs/hullctl.md's settings no longer say %q, which TestHullctlDocsSettings checks", want)
		}
	}
	for _, want := range []string{"--address, else $HULL_ADDRESS, else $CONTAINERD_ADDRESS, else /run/hull/hull.sock",
		`--namespace, else $HULL_NAMESPACE, else $CONTAINERD_NAMESPACE, else "default"`} {
		if !strings.Contains(oneLine(top), want) {
			t.Errorf("hullctl --help no longer says %q", want)
		}
	}

	// The unknown command, as the page quotes it.
	errs := docsSection(t, page, "Errors")
	want := docsQuoted(t, errs, "hullctl: unknown command")
	if r := docsHullctl(t, bin, "", nil, "imgaes"); r.code != 1 || r.stderr != want+"\n" {
		t.Errorf("hullctl imgaes: exit %d, stderr %q; docs/hullctl.md says %q", r.code, r.stderr, want)
	}
}

// TestHullctlDocsSettings: the socket and the namespace come from the
// flag, then hull's variable, then containerd's, then the default, and
// --debug names the source; the hullctl that finds no hulld says so in
// the page's words. No hulld runs: the sockets are paths nothing serves,
// and the error names the one chosen.
func TestHullctlDocsSettings(t *testing.T) {
	bin := hulltest.Build(t, "hullctl", "github.com/hullrt/hull/cmd/hullctl")
	dir := t.TempDir()
	flag, hull, ctrd := filepath.Join(dir, "flag.sock"), filepath.Join(dir, "hull.sock"), filepath.Join(dir, "containerd.sock")
	for _, tc := range []struct {
		args, env []string
		addr, why string
		ns, nsWhy string
	}{
		{[]string{"--address", flag, "--namespace", "fl"}, []string{"HULL_ADDRESS=" + hull, "CONTAINERD_ADDRESS=" + ctrd, "HULL_NAMESPACE=hu", "CONTAINERD_NAMESPACE=cd"},
			flag, "from --address", "fl", "from --namespace"},
		{nil, []string{"HULL_ADDRESS=" + hull, "CONTAINERD_ADDRESS=" + ctrd, "HULL_NAMESPACE=hu", "CONTAINERD_NAMESPACE=cd"},
			hull, "from $HULL_ADDRESS", "hu", "from $HULL_NAMESPACE"},
		{nil, []string{"CONTAINERD_ADDRESS=" + ctrd, "CONTAINERD_NAMESPACE=cd"},
			ctrd, "from $CONTAINERD_ADDRESS", "cd", "from $CONTAINERD_NAMESPACE"},
		{nil, nil, "/run/hull/hull.sock", "(the default)", "default", "(the default"},
	} {
		args := append(append([]string{"--debug", "--connect-timeout", "0"}, tc.args...), "images", "ls")
		r := docsHullctl(t, bin, "", tc.env, args...)
		for _, want := range []string{
			fmt.Sprintf("debug: address %q %s\n", tc.addr, tc.why),
			fmt.Sprintf("debug: namespace %q %s", tc.ns, tc.nsWhy),
		} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("%v %v: stderr does not say %q:\n%s", tc.env, args, want, r.stderr)
			}
		}
		if tc.addr == "/run/hull/hull.sock" {
			if _, err := os.Stat(tc.addr); err == nil {
				// A hulld of the machine's own may serve it: what
				// it says is not this test's to check.
				t.Logf("%s exists: not checking the error that names it", tc.addr)
				continue
			}
		}
		want := fmt.Sprintf("hullctl: hulld is not answering on %s (no such file or directory): is it running? see systemctl status hull\n", tc.addr)
		if r.code != 1 || !strings.HasSuffix(r.stderr, want) {
			t.Errorf("%v %v: exit %d, stderr %q; want it to end with %q", tc.env, args, r.code, r.stderr, want)
		}
	}
	// The page quotes the message for the default socket.
	quoted := docsQuoted(t, docsSection(t, docsPage(t), "Errors"), "hullctl: hulld is not answering on")
	if want := "hullctl: hulld is not answering on /run/hull/hull.sock (no such file or directory): is it running? see systemctl status hull"; quoted != want {
		t.Errorf("docs/hullctl.md quotes %q; hullctl says %q", quoted, want)
	}
}

// TestHullctlDocsRegistry: run pulls with --pull=missing only what is
// missing and with --pull=always anew, takes credentials from
// --registry-config; top-level push is images push; rmi expands short
// names where images rm takes them as stored; the registry errors read as
// the page quotes them; images ls --format json's size is every known
// blob the image reaches, while SIZE is this host's platform alone.
//
// Checked elsewhere: --pull=never and a missing image pulled
// (hullctl_habits_test.go:TestHullctlHabitsRunPullsLogsPsRm), --hosts-dir
// with run (readme_test.go:TestREADMECommands), SIZE as ctr's
// (hullctl_habits_test.go:TestHullctlHabitsMultiPlatformSize).
func TestHullctlDocsRegistry(t *testing.T) {
	f := newHabitsFixture(t)
	// The fixture's runner, with a time limit: a pull that hangs fails
	// this test alone.
	run := func(args ...string) docsResult {
		t.Helper()
		return docsHullctl(t, f.h.bin, "", nil, append([]string{"--address", f.d.Address, "-n", "hh"}, args...)...)
	}
	ok := func(args ...string) string {
		t.Helper()
		r := run(args...)
		if r.code != 0 {
			t.Fatalf("hullctl %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
		return r.stdout
	}
	page := docsPage(t)
	errs := docsSection(t, page, "Errors")
	files, err := testimage.BusyboxFiles()
	if err != nil {
		t.Fatal(err)
	}
	marked := func(mark string) *testimage.Image {
		return testimage.New([]string{"/bin/sh"}, files, []testimage.File{{Name: "mark", Data: []byte(mark + "\n")}})
	}

	// Plain http asked over https: the way out is named, both ways.
	r := run("pull", "--plain", f.ref)
	if r.code != 1 || !strings.Contains(r.stderr, "--plain-http") || !strings.Contains(r.stderr, `server = "http://...`) || !strings.Contains(r.stderr, "hosts.toml") {
		t.Errorf("pull over https from a plain http registry: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	// A missing tag, as the page quotes it.
	f.reg.Push(t, "test/app", "1", marked("app"))
	quoted := docsQuoted(t, errs, "REF: repository")
	noTag := f.reg.Host() + "/test/app:2"
	pattern := strings.Replace(regexp.QuoteMeta(quoted), "REF", regexp.QuoteMeta(noTag), 1)
	pattern = "^hullctl: " + strings.Replace(pattern, `\(\.\.\.\)`, `\([^()]+\)`, 1) + "\n$"
	if r := run("pull", "--plain", "--plain-http", noTag); r.code != 1 || !regexp.MustCompile(pattern).MatchString(r.stderr) {
		t.Errorf("pull of %s: exit %d, stderr %q; docs/hullctl.md says %q", noTag, r.code, r.stderr, quoted)
	}

	// --pull: missing takes what is there, always pulls anew.
	ver := f.reg.Host() + "/test/ver:1"
	f.reg.Push(t, "test/ver", "1", marked("one"))
	if out := ok("run", "--rm", "--plain-http", ver, "cat", "/mark"); out != "one\n" {
		t.Fatalf("run of a missing image printed %q", out)
	}
	f.reg.Push(t, "test/ver", "1", marked("two"))
	if out := ok("run", "--rm", "--plain-http", "--pull=missing", ver, "cat", "/mark"); out != "one\n" {
		t.Errorf("run --pull=missing of an image there printed %q, want the one there", out)
	}
	if out := ok("run", "--rm", "--plain-http", "--pull=always", ver, "cat", "/mark"); out != "two\n" {
		t.Errorf("run --pull=always printed %q, want the registry's new image", out)
	}

	// --registry-config: credentials from a Docker config.json.
	locked := registrytest.Start(t, registrytest.Options{Htpasswd: map[string]string{"docs": "s3cret"}})
	locked.Push(t, "test/locked", "1", marked("locked"))
	lref := locked.Host() + "/test/locked:1"
	if r := run("run", "--rm", "--plain-http", lref, "true"); r.code != 1 || !strings.Contains(r.stderr, lref) {
		t.Fatalf("run from a registry that wants credentials, without them: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	cfg := filepath.Join(t.TempDir(), "config.json")
	auth, _ := json.Marshal(map[string]any{"auths": map[string]any{locked.Host(): map[string]string{
		"auth": base64.StdEncoding.EncodeToString([]byte("docs:s3cret"))}}})
	if err := os.WriteFile(cfg, auth, 0o600); err != nil {
		t.Fatal(err)
	}
	if out := ok("run", "--rm", "--plain-http", "--registry-config", cfg, lref, "cat", "/mark"); out != "locked\n" {
		t.Errorf("run --registry-config printed %q", out)
	}

	// push is images push: the image lands in the registry.
	pushed := f.reg.Host() + "/test/pushed:1"
	if out := ok("push", "--plain", "--plain-http", pushed, ver); !strings.Contains(out, pushed+": pushed") {
		t.Errorf("push printed %q", out)
	}
	if _, data := f.reg.Manifest(t, "test/pushed", "1"); !bytes.Equal(data, marked("two").Manifest.Data) {
		t.Errorf("push stored another manifest:\n%s", data)
	}

	// rmi expands short names; images rm takes names as stored.
	var archive bytes.Buffer
	if err := testimage.WriteOCIArchive(&archive, "docker.io/library/busybox:latest", marked("short")); err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(t.TempDir(), "busybox.tar")
	if err := os.WriteFile(tarPath, archive.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	ok("images", "import", tarPath)
	if r := run("images", "rm", "busybox"); r.code != 1 || !strings.Contains(r.stderr, `"busybox"`) || !strings.Contains(r.stderr, "not found") {
		t.Errorf("images rm busybox (a name not stored as such): exit %d, stderr %q", r.code, r.stderr)
	}
	// Printed as given, as every rm prints the names it removed.
	if out := ok("rmi", "busybox"); out != "busybox\n" {
		t.Errorf("rmi busybox printed %q", out)
	}
	if ls := ok("images", "-q"); strings.Contains(ls, "docker.io/library/busybox") {
		t.Errorf("rmi busybox left it:\n%s", ls)
	}

	// images ls: SIZE is the host's platform; --format json's size
	// every known blob, all platforms'.
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	host := testimage.New([]string{"/bin/sh"}, []testimage.File{{Name: "a", Data: bytes.Repeat([]byte("a"), 3000)}})
	foreign := testimage.NewFor(ocispec.Platform{OS: "linux", Architecture: other}, []string{"/bin/sh"}, []testimage.File{{Name: "b", Data: bytes.Repeat([]byte("b"), 7000)}})
	idx := testimage.NewIndex(host, foreign)
	f.reg.PushIndex(t, "test/multi", "1", idx)
	f.reg.PushIndex(t, "test/multi", "2", idx)
	sum := func(blobs ...testimage.Blob) (n int64) {
		for _, b := range blobs {
			n += b.Desc.Size
		}
		return n
	}
	hostSize := sum(append([]testimage.Blob{idx.Index}, host.Blobs()...)...)
	allSize := sum(idx.Blobs()...)
	jsonSize := func(ref string) int64 {
		t.Helper()
		var imgs []struct {
			Name string `json:"name"`
			Size int64  `json:"size"`
		}
		if err := json.Unmarshal([]byte(ok("images", "ls", "--format", "json")), &imgs); err != nil {
			t.Fatal(err)
		}
		for _, img := range imgs {
			if img.Name == ref {
				return img.Size
			}
		}
		t.Fatalf("images ls --format json has no %s", ref)
		return 0
	}
	one, two := f.reg.Host()+"/test/multi:1", f.reg.Host()+"/test/multi:2"
	ok("pull", "--plain", "--plain-http", one)
	// Of the other platform only its manifest's descriptor is known.
	if got, want := jsonSize(one), hostSize+foreign.Manifest.Desc.Size; got != want {
		t.Errorf("--format json size of %s pulled for this host: %d, want %d (the index, this host's blobs, the other manifest's descriptor)", one, got, want)
	}
	tableSize := strings.Join(habitsRow(t, ok("images", "ls"), one)[3:5], " ")
	ok("pull", "--plain", "--plain-http", "--all-platforms", two)
	for _, ref := range []string{one, two} {
		if got := jsonSize(ref); got != allSize {
			t.Errorf("--format json size of %s with every platform stored: %d, want %d", ref, got, allSize)
		}
		if got := strings.Join(habitsRow(t, ok("images", "ls"), ref)[3:5], " "); got != tableSize {
			t.Errorf("SIZE of %s with every platform stored: %s, want this host's %s", ref, got, tableSize)
		}
	}
}

// TestHullctlDocsRunIO: stdin is connected without -i; -it with input from
// a pipe gives the process a terminal it reads from; exec takes Docker's
// short flags; --memory is --memory-limit; -v takes absolute host paths
// only; rm removes the default log file and never a --log-file.
//
// Checked elsewhere: run -t through a real terminal
// (hullctl_run_test.go:TestHullctlRunTerminal), -t with piped input ending
// cat and sh (hullctl_run_test.go:TestHullctlRunTerminalPipedInput), -e,
// -v, -w and the default log's removal
// (hullctl_habits_test.go:TestHullctlHabitsRunPullsLogsPsRm).
func TestHullctlDocsRunIO(t *testing.T) {
	f := newRunFixture(t, "io.containerd.runc.v2")
	run := func(stdin string, args ...string) docsResult {
		t.Helper()
		return docsHullctl(t, f.h.bin, stdin, nil, append([]string{"--address", f.d.Address}, f.args(args...)...)...)
	}
	ok := func(stdin string, args ...string) string {
		t.Helper()
		r := run(stdin, args...)
		if r.code != 0 {
			t.Fatalf("hullctl %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
		return r.stdout
	}
	ref := f.ref

	// The end of the input reaches the process, under either shim.
	for _, rt := range hullctlRuntimes(t) {
		f.runtime = rt
		for _, args := range [][]string{{"run", "--rm", "--name", "in", ref, "cat"}, {"run", "--rm", "-i", "--name", "in", ref, "cat"}} {
			if out := ok("from the pipe\n", args...); out != "from the pipe\n" {
				t.Errorf("%s: %v with piped input printed %q", rt, args, out)
			}
		}
	}
	f.runtime = "io.containerd.runc.v2"
	r := run("echo in-a-tty; tty; exit 3\n", "run", "--rm", "-it", "--name", "it", ref, "sh")
	if r.code != 3 || !strings.Contains(r.stdout, "in-a-tty") || !strings.Contains(r.stdout, "/dev/pts/") {
		t.Errorf("run -it with piped input: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	out := ok("", "run", "--rm", "--memory", "48m", "--name", "mem", ref, "sh", "-c",
		"cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max")
	if strings.TrimSpace(out) != "50331648" {
		t.Errorf("--memory 48m: the container's limit is %q", out)
	}
	f.fails([]string{"data:/data", "not absolute", "no named volumes"}, "run", "--rm", "-v", "data:/data", "--name", "vol", ref, "true")

	// exec with Docker's short flags.
	ok("", "run", "-d", "--name", "ex", ref, "sleep", "600")
	f.waitStatus("ex", "RUNNING")
	if out := ok("", "exec", "-e", "X=1", "-w", "/tmp", "-u", "nobody", "ex", "sh", "-c", "echo $X; pwd; id -u"); out != "1\n/tmp\n65534\n" {
		t.Errorf("exec -e -w -u printed %q", out)
	}
	if out := ok("piped\n", "exec", "-i", "ex", "cat"); out != "piped\n" {
		t.Errorf("exec -i printed %q", out)
	}
	r = run("echo in-exec; tty; exit 4\n", "exec", "-it", "ex", "sh")
	if r.code != 4 || !strings.Contains(r.stdout, "in-exec") || !strings.Contains(r.stdout, "/dev/pts/") {
		t.Errorf("exec -it with piped input: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	// exec's --log-file, as its help says: with --detach, absolute.
	execLog := filepath.Join(t.TempDir(), "exec.log")
	f.fails([]string{"--log-file", "--detach"}, "exec", "--log-file", execLog, "ex", "true")
	f.fails([]string{`"exec.log"`, "absolute"}, "exec", "-d", "--log-file", "exec.log", "ex", "true")
	ok("", "exec", "-d", "--log-file", execLog, "ex", "sh", "-c", "echo from-exec")
	hulltest.Eventually(t, 10*time.Second, "the exec's output in "+execLog, func() error {
		b, err := os.ReadFile(execLog)
		if err == nil && string(b) != "from-exec\n" {
			err = fmt.Errorf("it holds %q", b)
		}
		return err
	})
	execID := strings.TrimSpace(ok("", "exec", "-d", "ex", "sleep", "600"))
	if ps := f.ok("tasks", "ps", "ex"); !strings.Contains(ps, execID) || execID == "" {
		t.Errorf("exec -d printed %q; tasks ps:\n%s", execID, ps)
	}

	// rm: the default log goes, a --log-file stays.
	logFile := filepath.Join(t.TempDir(), "mine.log")
	ok("", "run", "-d", "--log-file", logFile, "--name", "lf", ref, "sh", "-c", "echo kept; sleep 600")
	hulltest.Eventually(t, 10*time.Second, "the output in "+logFile, func() error {
		b, err := os.ReadFile(logFile)
		if err == nil && string(b) != "kept\n" {
			err = fmt.Errorf("it holds %q", b)
		}
		return err
	})
	ok("", "rm", "-f", "lf", "ex")
	if b, err := os.ReadFile(logFile); err != nil || string(b) != "kept\n" {
		t.Errorf("rm touched the --log-file: %q, %v", b, err)
	}
	f.checkClean()
}

// TestHullctlDocsContainerd: hullctl drives containerd as it drives hulld,
// and run -d's log goes to /run/hull/logs/<namespace>/<id>.log there, as
// containerd does not tell its state directory; logs reads it and rm
// removes it. The namespace is the test's own, and what the test made
// under /run/hull is removed at its end.
func TestHullctlDocsContainerd(t *testing.T) {
	c := hulltest.StartContainerdWith(t, "", hulltest.ContainerdOptions{
		Binary:   hulltest.Containerd2Bin(t, "containerd"),
		PathDirs: []string{hulltest.Containerd2Dir}, // its own runc shim
	})
	bin := hulltest.Build(t, "hullctl", "github.com/hullrt/hull/cmd/hullctl")
	ns := fmt.Sprintf("hullctl-docs-%d", os.Getpid())
	// containerd's runc shim keeps the containers under its default
	// root: hullctl, like ctr without --runc-root, names none.
	hulltest.RemoveRuncNamespaceDir(t, ns)
	made := ""
	for _, dir := range []string{"/run/hull", "/run/hull/logs"} {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) && made == "" {
			made = dir
		}
	}
	logDir := filepath.Join("/run/hull/logs", ns)
	t.Cleanup(func() {
		os.RemoveAll(logDir)
		if made != "" {
			os.RemoveAll(made)
		}
	})
	hc := func(args ...string) docsResult {
		t.Helper()
		return docsHullctl(t, bin, "", nil, append([]string{"--address", c.Address, "-n", ns}, args...)...)
	}
	ok := func(args ...string) string {
		t.Helper()
		r := hc(args...)
		if r.code != 0 {
			t.Fatalf("hullctl %s (containerd): exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
		return r.stdout
	}
	var archive bytes.Buffer
	ref := "example.test/busybox:docs"
	if err := testimage.WriteOCIArchive(&archive, ref, busyboxImage(t)); err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(t.TempDir(), "image.tar")
	if err := os.WriteFile(tarPath, archive.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	ok("images", "import", tarPath)
	t.Cleanup(func() { hc("rm", "-f", "cd1") })
	if out := ok("run", "-d", "--runtime", "io.containerd.runc.v2", "--name", "cd1", ref, "sh", "-c", "echo to-the-fallback; sleep 600"); out != "cd1\n" {
		t.Fatalf("run -d printed %q", out)
	}
	logFile := filepath.Join(logDir, "cd1.log")
	if info := ok("containers", "info", "cd1"); !strings.Contains(info, `"io.hull.log-uri": "file://`+logFile+`"`) {
		t.Errorf("containers info does not name %s:\n%s", logFile, info)
	}
	hulltest.Eventually(t, 10*time.Second, "hullctl logs to print the first line", func() error {
		if out := ok("logs", "cd1"); out != "to-the-fallback\n" {
			return fmt.Errorf("logs printed %q", out)
		}
		return nil
	})
	if b, err := os.ReadFile(logFile); err != nil || string(b) != "to-the-fallback\n" {
		t.Errorf("the log is not where the page says: %q, %v", b, err)
	}
	ok("rm", "-f", "cd1")
	if _, err := os.Stat(logFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("rm left %s: %v", logFile, err)
	}
}

// TestHullctlDocsPods: hullctl has no sandboxes command (ctr 2.x's s),
// because a pod that hulld's CRI service runs is a container of the
// k8s.io namespace, which hullctl -n k8s.io containers ls shows. The pod
// runs as TestCRI's do, in the test's own namespaces.
func TestHullctlDocsPods(t *testing.T) {
	if criInOwnNamespaces(t) {
		return
	}
	e := newCRIEnv(t)
	d := e.startCRI(t, criDaemonOptions{net: newCRINet(t)})
	pod, _, _ := d.runPod(t, d.podConfig("docs", t.TempDir()))
	bin := hulltest.Build(t, "hullctl", "github.com/hullrt/hull/cmd/hullctl")
	r := docsHullctl(t, bin, "", nil, "--address", d.Address, "-n", "k8s.io", "containers", "ls", "-q")
	if r.code != 0 || !slices.Contains(strings.Fields(r.stdout), pod) {
		t.Errorf("hullctl -n k8s.io containers ls -q: exit %d, %q, stderr %q; want pod %s", r.code, r.stdout, r.stderr, pod)
	}
	if r := docsHullctl(t, bin, "", nil, "--address", d.Address, "sandboxes", "ls"); r.code != 1 || !strings.Contains(r.stderr, `unknown command "sandboxes"`) {
		t.Errorf("hullctl sandboxes: exit %d, stderr %q", r.code, r.stderr)
	}
	d.removePod(t, pod)
}
