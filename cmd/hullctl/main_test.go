package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	eventsapi "github.com/containerd/containerd/api/events"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/internal/hulltest"
)

const noGC = `version = 3
[plugins."io.containerd.gc.v1.scheduler"]
  schedule_delay = "1h"
  startup_delay = "1h"
`

// harness runs the hullctl binary against one hulld.
type harness struct {
	t   *testing.T
	bin string
	d   *hulltest.Daemon
}

func start(t *testing.T) *harness {
	t.Helper()
	bin := hulltest.Build(t, "hullctl", "github.com/hullrt/hull/cmd/hullctl")
	// Blobs that nothing references are garbage, and hulld collects them
	// soon after start-up and after every delete or label change; the tests
	// look at such blobs, so collections run only when asked for (--sync).
	return &harness{t: t, bin: bin, d: hulltest.Start(t, hulltest.Options{Config: noGC})}
}

// baseEnv is the test's environment without the variables hullctl reads, so
// that the developer's own settings do not leak in.
func baseEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "HULL_ADDRESS" || k == "HULL_NAMESPACE" || k == "CONTAINERD_NAMESPACE" {
			continue
		}
		out = append(out, kv)
	}
	return out
}

type result struct {
	stdout, stderr string
	code           int
}

// runEnv runs hullctl with env added, stdin and args (no --address: callers
// that want it pass it).
func (h *harness) runEnv(env []string, stdin string, args ...string) result {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.bin, args...)
	cmd.Env = append(baseEnv(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			h.t.Fatalf("hullctl %s: %v", strings.Join(args, " "), err)
		}
		r.code = ee.ExitCode()
	}
	return r
}

// run runs hullctl against the harness's daemon.
func (h *harness) run(stdin string, args ...string) result {
	h.t.Helper()
	return h.runEnv(nil, stdin, append([]string{"--address", h.d.Address}, args...)...)
}

// ok runs hullctl and fails the test unless it succeeds; it returns stdout.
func (h *harness) ok(args ...string) string {
	h.t.Helper()
	return h.okIn("", args...)
}

func (h *harness) okIn(stdin string, args ...string) string {
	h.t.Helper()
	r := h.run(stdin, args...)
	if r.code != 0 {
		h.t.Fatalf("hullctl %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// fails runs hullctl, expects exit 1 and a "hullctl: " message mentioning
// each of want, and returns stderr.
func (h *harness) fails(want []string, args ...string) string {
	h.t.Helper()
	r := h.run("", args...)
	if r.code != 1 {
		h.t.Fatalf("hullctl %s: exit %d, want 1\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	if !strings.HasPrefix(r.stderr, "hullctl: ") {
		h.t.Fatalf("hullctl %s: stderr %q does not start with \"hullctl: \"", strings.Join(args, " "), r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			h.t.Fatalf("hullctl %s: stderr %q does not mention %q", strings.Join(args, " "), r.stderr, w)
		}
	}
	return r.stderr
}

func lines(s string) []string {
	return strings.Split(strings.TrimRight(s, "\n"), "\n")
}

// fields returns the table row whose first column is key, split on spaces.
func row(t *testing.T, table, key string) []string {
	t.Helper()
	for _, l := range lines(table) {
		if f := strings.Fields(l); len(f) > 0 && f[0] == key {
			return f
		}
	}
	t.Fatalf("no row %q in\n%s", key, table)
	return nil
}

func TestNamespaces(t *testing.T) {
	h := start(t)
	h.ok("namespaces", "create", "alpha", "team=infra", "tier=gold")
	h.ok("ns", "create", "beta")

	out := h.ok("namespaces", "ls")
	if l := lines(out); !strings.HasPrefix(l[0], "NAME") || !strings.Contains(l[0], "LABELS") {
		t.Fatalf("header of\n%s", out)
	}
	if r := row(t, out, "alpha"); r[1] != "team=infra,tier=gold" {
		t.Fatalf("alpha row %v", r)
	}
	if r := row(t, out, "beta"); r[1] != "-" {
		t.Fatalf("beta row %v", r)
	}
	if got := lines(h.ok("namespaces", "ls", "-q")); !slices.Equal(got, []string{"alpha", "beta"}) {
		t.Fatalf("ls -q: %v", got)
	}

	if got := h.ok("namespaces", "label", "alpha", "tier=silver", "team"); got != "tier=silver\n" {
		t.Fatalf("label printed %q", got)
	}
	var js []struct {
		Name   string
		Labels map[string]string
	}
	if err := json.Unmarshal([]byte(h.ok("--format", "json", "namespaces", "ls")), &js); err != nil {
		t.Fatal(err)
	}
	if len(js) != 2 || js[0].Name != "alpha" || js[0].Labels["tier"] != "silver" || len(js[0].Labels) != 1 || js[1].Labels == nil {
		t.Fatalf("json %+v", js)
	}

	if got := h.ok("namespaces", "rm", "alpha", "beta"); got != "alpha\nbeta\n" {
		t.Fatalf("rm printed %q", got)
	}
	if got := h.ok("namespaces", "ls", "-q"); got != "" {
		t.Fatalf("left %q", got)
	}

	h.fails([]string{"Bad Name", "invalid"}, "namespaces", "create", "Bad Name")
	h.fails([]string{"gone"}, "namespaces", "rm", "gone")
	h.fails([]string{"usage"}, "namespaces", "create")
	h.fails([]string{`"=x"`}, "namespaces", "create", "x", "=x")
	// Labelling a missing namespace makes it, as containerd 2.x does.
	h.ok("namespaces", "label", "made", "a=b")
	if got := h.ok("namespaces", "ls", "-q"); got != "made\n" {
		t.Fatalf("after labelling a missing namespace, ls printed %q", got)
	}
	// Leases go with their namespace; a snapshot keeps it.
	h.ok("-n", "made", "leases", "create", "--id", "hold")
	h.ok("namespaces", "rm", "made")
	h.ok("-n", "busy", "snapshots", "prepare", "k")
	h.fails([]string{"busy", "snapshots"}, "namespaces", "rm", "busy")
	h.ok("-n", "busy", "snapshots", "rm", "k")
	h.ok("namespaces", "rm", "busy")
}

func TestContent(t *testing.T) {
	h := start(t)
	data := "hello, hullctl\n"
	dgst := digest.FromString(data)

	if got := h.okIn(data, "content", "ingest", "--expected-size", fmt.Sprint(len(data)), "--expected-digest", dgst.String(), "hello"); got != dgst.String()+"\n" {
		t.Fatalf("ingest printed %q", got)
	}
	labelled := h.okIn("labelled", "content", "ingest", "--label", "containerd.io/gc.root=t", "--label", "x=y", "labelled")
	if r := row(t, h.ok("content", "ls"), strings.TrimSpace(labelled)); r[len(r)-1] != "containerd.io/gc.root=t,x=y" {
		t.Fatalf("labelled row %v", r)
	}
	h.ok("content", "rm", strings.TrimSpace(labelled))
	// Ingesting it again is fine: the blob exists.
	if got := h.okIn(data, "content", "ingest", "--expected-digest", dgst.String(), "again"); got != dgst.String()+"\n" {
		t.Fatalf("second ingest printed %q", got)
	}
	out := h.ok("content", "ls")
	if r := row(t, out, dgst.String()); r[1] != fmt.Sprint(len(data)) || r[2] != "B" {
		t.Fatalf("ls row %v", r)
	}
	if got := h.ok("content", "ls", "-q"); got != dgst.String()+"\n" {
		t.Fatalf("ls -q %q", got)
	}
	if got := h.ok("content", "get", dgst.String()); got != data {
		t.Fatalf("get %q", got)
	}
	if got := h.ok("content", "label", dgst.String(), "a=1", "b=2"); got != "a=1,b=2\n" {
		t.Fatalf("label %q", got)
	}
	if got := h.ok("content", "ls", "-q", "labels.a==1"); got != dgst.String()+"\n" {
		t.Fatalf("ls filter %q", got)
	}
	if got := h.ok("content", "ls", "-q", "labels.a==2"); got != "" {
		t.Fatalf("ls filter no match %q", got)
	}
	var js []struct {
		Digest string
		Size   int64
		Labels map[string]string
	}
	if err := json.Unmarshal([]byte(h.ok("content", "ls", "--format", "json")), &js); err != nil {
		t.Fatal(err)
	}
	if len(js) != 1 || js[0].Digest != dgst.String() || js[0].Size != int64(len(data)) || js[0].Labels["b"] != "2" {
		t.Fatalf("json %+v", js)
	}

	// A wrong digest fails and stores nothing.
	h.fails([]string{"unexpected commit digest"}, "content", "ingest", "--expected-digest", digest.FromString("x").String(), "bad")
	// An ingest left half done shows as active, and resumes.
	c, err := client.New(h.d.Address, client.WithDefaultNamespace("default"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	w, err := c.ContentStore().Writer(ctx, content.WithRef("half"))
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("0123456789", 1000)
	if _, err := w.Write([]byte(big[:4000])); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if r := row(t, h.ok("content", "active"), "half"); r[1] != "4000" {
		t.Fatalf("active row %v", r)
	}
	if got := h.ok("content", "active", "-q"); !strings.Contains(got, "half\n") {
		t.Fatalf("active -q %q", got)
	}
	bigDigest := digest.FromString(big)
	if got := h.okIn(big, "content", "ingest", "half"); got != bigDigest.String()+"\n" {
		t.Fatalf("resumed ingest printed %q", got)
	}
	if got := h.ok("content", "get", bigDigest.String()); got != big {
		t.Fatal("resumed blob differs")
	}

	if got := h.ok("content", "rm", dgst.String(), bigDigest.String()); got != dgst.String()+"\n"+bigDigest.String()+"\n" {
		t.Fatalf("rm %q", got)
	}
	h.fails([]string{dgst.String(), "not found"}, "content", "get", dgst.String())
	h.fails([]string{dgst.String(), "not found"}, "content", "rm", dgst.String())
	h.fails([]string{`"sha256:nope"`}, "content", "get", "sha256:nope")
	h.fails([]string{`"12345"`}, "content", "label", "12345", "a=b")
}

// writeBlob stores b and returns its descriptor.
func writeBlob(t *testing.T, ctx context.Context, c *client.Client, mediaType string, b []byte) ocispec.Descriptor {
	t.Helper()
	d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
	if err := client.WriteBlob(ctx, c.ContentStore(), "w-"+d.Digest.String(), bytes.NewReader(b), d); err != nil {
		t.Fatal(err)
	}
	return d
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestImagesAndPrune(t *testing.T) {
	h := start(t)
	c, err := client.New(h.d.Address, client.WithDefaultNamespace("imgs"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	cfg := writeBlob(t, ctx, c, ocispec.MediaTypeImageConfig, mustJSON(t, map[string]any{"os": "linux", "architecture": "amd64"}))
	layer := writeBlob(t, ctx, c, ocispec.MediaTypeImageLayer, bytes.Repeat([]byte("l"), 3000))
	man := writeBlob(t, ctx, c, ocispec.MediaTypeImageManifest, mustJSON(t, ocispec.Manifest{
		MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{layer},
	}))
	manArm := man
	manArm.Platform = &ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	idx := writeBlob(t, ctx, c, ocispec.MediaTypeImageIndex, mustJSON(t, ocispec.Index{
		MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{manArm},
	}))
	junk := writeBlob(t, ctx, c, "", []byte("junk"))
	for name, target := range map[string]ocispec.Descriptor{"example.com/multi:1": idx, "example.com/single:1": man} {
		if _, err := c.ImageService().Create(ctx, images.Image{Name: name, Target: target, Labels: map[string]string{"k": "v"}}); err != nil {
			t.Fatal(err)
		}
	}

	out := h.ok("-n", "imgs", "images", "ls")
	if l := lines(out); strings.Join(strings.Fields(l[0]), " ") != "NAME TYPE DIGEST SIZE PLATFORMS LABELS" {
		t.Fatalf("header %q", l[0])
	}
	total := idx.Size + man.Size + cfg.Size + layer.Size
	if r := row(t, out, "example.com/multi:1"); r[1] != ocispec.MediaTypeImageIndex || r[2] != idx.Digest.String() || r[5] != "linux/arm64/v8" || r[6] != "k=v" {
		t.Fatalf("multi row %v", r)
	}
	if r := row(t, out, "example.com/single:1"); r[5] != "linux/amd64" {
		t.Fatalf("single row %v", r)
	}

	var js []struct {
		Name      string
		Target    ocispec.Descriptor
		Size      int64
		Platforms []string
		Labels    map[string]string
		CreatedAt string `json:"created_at"`
	}
	if err := json.Unmarshal([]byte(h.ok("-n", "imgs", "--format", "json", "images", "ls")), &js); err != nil {
		t.Fatal(err)
	}
	if len(js) != 2 || js[0].Name != "example.com/multi:1" || js[0].Target.Digest != idx.Digest || js[0].Size != total ||
		!slices.Equal(js[0].Platforms, []string{"linux/arm64/v8"}) || js[0].Labels["k"] != "v" || js[0].CreatedAt == "" {
		t.Fatalf("json %+v (total %d)", js, total)
	}
	if got := h.ok("-n", "imgs", "images", "ls", "-q", "name==example.com/single:1"); got != "example.com/single:1\n" {
		t.Fatalf("ls -q filter %q", got)
	}

	if got := h.ok("-n", "imgs", "images", "tag", "example.com/single:1", "example.com/single:2", "example.com/single:3"); got != "example.com/single:2\nexample.com/single:3\n" {
		t.Fatalf("tag %q", got)
	}
	h.fails([]string{"example.com/single:2"}, "-n", "imgs", "images", "tag", "example.com/multi:1", "example.com/single:2")
	h.ok("-n", "imgs", "images", "tag", "--force", "example.com/multi:1", "example.com/single:2")
	if r := row(t, h.ok("-n", "imgs", "images", "ls"), "example.com/single:2"); r[2] != idx.Digest.String() {
		t.Fatalf("forced tag row %v", r)
	}
	if got := h.ok("-n", "imgs", "images", "label", "example.com/single:3", "k", "x=y"); got != "x=y\n" {
		t.Fatalf("label %q", got)
	}

	// Prune keeps what images reach through the manifests, and nothing
	// else. The dry run deletes nothing, so the daemon's own collection
	// (which follows labels, not manifests) does not run meanwhile.
	if got := h.ok("-n", "imgs", "content", "prune", "--dry-run"); got != junk.Digest.String()+"\n" {
		t.Fatalf("prune --dry-run %q, want only %s", got, junk.Digest)
	}
	if got := h.ok("-n", "imgs", "content", "prune"); got != junk.Digest.String()+"\n" {
		t.Fatalf("prune %q", got)
	}
	h.fails([]string{junk.Digest.String()}, "-n", "imgs", "content", "get", junk.Digest.String())

	if got := h.ok("-n", "imgs", "images", "rm", "--sync", "example.com/single:3"); got != "example.com/single:3\n" {
		t.Fatalf("rm %q", got)
	}
	h.fails([]string{"example.com/nope", "not found"}, "-n", "imgs", "images", "rm", "example.com/nope")
}

func TestLeases(t *testing.T) {
	h := start(t)
	if got := h.ok("leases", "create", "--id", "l1", "purpose=test"); got != "l1\n" {
		t.Fatalf("create %q", got)
	}
	other := strings.TrimSpace(h.ok("leases", "create", "--expires", "0"))
	if other == "" {
		t.Fatal("create printed no ID")
	}
	out := h.ok("leases", "ls")
	r := row(t, out, "l1")
	if !strings.Contains(r[len(r)-1], "purpose=test") || !strings.Contains(r[len(r)-1], "containerd.io/gc.expire=") {
		t.Fatalf("l1 row %v", r)
	}
	if r := row(t, out, other); r[len(r)-1] != "-" {
		t.Fatalf("no-expiry lease row %v", r)
	}
	got := lines(h.ok("leases", "ls", "-q"))
	slices.Sort(got)
	want := []string{"l1", other}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("ls -q %v", got)
	}
	var js []struct {
		ID     string
		Labels map[string]string
	}
	if err := json.Unmarshal([]byte(h.ok("leases", "ls", "--format", "json", "id==l1")), &js); err != nil {
		t.Fatal(err)
	}
	if len(js) != 1 || js[0].Labels["purpose"] != "test" {
		t.Fatalf("json %+v", js)
	}
	h.fails([]string{"l1"}, "leases", "create", "--id", "l1")
	if got := h.ok("leases", "rm", "--sync", "l1", other); got != "l1\n"+other+"\n" {
		t.Fatalf("rm %q", got)
	}
	h.fails([]string{"l1", "not found"}, "leases", "rm", "l1")
}

// TestNamespaceSources checks the precedence --namespace, $HULL_NAMESPACE,
// $CONTAINERD_NAMESPACE, "default", and that --debug names the winner.
func TestNamespaceSources(t *testing.T) {
	h := start(t)
	addr := "HULL_ADDRESS=" + h.d.Address
	for _, tc := range []struct {
		env   []string
		args  []string
		ns    string
		debug string
	}{
		{[]string{addr}, nil, "default", `namespace "default" (the default`},
		{[]string{addr, "CONTAINERD_NAMESPACE=cns"}, nil, "cns", `namespace "cns" from $CONTAINERD_NAMESPACE`},
		{[]string{addr, "CONTAINERD_NAMESPACE=cns", "HULL_NAMESPACE=hns"}, nil, "hns", `namespace "hns" from $HULL_NAMESPACE`},
		{[]string{addr, "CONTAINERD_NAMESPACE=cns", "HULL_NAMESPACE=hns"}, []string{"-n", "flagns"}, "flagns", `namespace "flagns" from --namespace`},
	} {
		args := append(append([]string{"--debug"}, tc.args...), "content", "ingest", "ref-"+tc.ns)
		r := h.runEnv(tc.env, "in "+tc.ns, args...)
		if r.code != 0 {
			t.Fatalf("%v %v: exit %d: %s", tc.env, args, r.code, r.stderr)
		}
		if !strings.Contains(r.stderr, tc.debug) || !strings.Contains(r.stderr, "from $HULL_ADDRESS") {
			t.Fatalf("%v %v: debug output %q lacks %q", tc.env, args, r.stderr, tc.debug)
		}
		// The blob landed in that namespace.
		if got := h.ok("-n", tc.ns, "content", "ls", "-q"); got != digest.FromString("in "+tc.ns).String()+"\n" {
			t.Fatalf("namespace %s holds %q", tc.ns, got)
		}
	}
	// Without --debug nothing is said.
	if r := h.runEnv([]string{addr}, "", "content", "ls", "-q"); r.code != 0 || r.stderr != "" {
		t.Fatalf("quiet run: %+v", r)
	}
	h.fails([]string{"bad name!"}, "-n", "bad name!", "content", "ls")
	r := h.runEnv([]string{addr, "HULL_NAMESPACE=Bad Env"}, "", "images", "ls")
	if r.code != 1 || !strings.Contains(r.stderr, "Bad Env") {
		t.Fatalf("bad $HULL_NAMESPACE: %+v", r)
	}
}

func TestMisc(t *testing.T) {
	h := start(t)
	c, err := client.New(h.d.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	si, err := c.Server(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if out := h.ok("version"); !strings.Contains(out, "Client:") || !strings.Contains(out, si.UUID) {
		t.Fatalf("version:\n%s", out)
	}
	var v struct{ Server struct{ UUID string } }
	if err := json.Unmarshal([]byte(h.ok("--format", "json", "version")), &v); err != nil || v.Server.UUID != si.UUID {
		t.Fatalf("version json: %+v, %v", v, err)
	}
	if out := h.ok("info"); !strings.Contains(out, si.UUID) || !strings.Contains(out, "Plugins:") {
		t.Fatalf("info:\n%s", out)
	}
	out := h.ok("plugins", "ls")
	if l := lines(out); strings.Join(strings.Fields(l[0]), " ") != "TYPE ID PLATFORMS STATUS" {
		t.Fatalf("plugins header %q", l[0])
	}
	if r := row(t, out, "io.containerd.grpc.v1"); r[3] != "ok" {
		t.Fatalf("plugins row %v", r)
	}
	if got := h.ok("plugins", "ls", "-q", "id==content", "type==io.containerd.grpc.v1"); !strings.Contains(got, "io.containerd.grpc.v1.content\n") {
		t.Fatalf("plugins -q %q", got)
	}

	h.fails([]string{"deadline exceeded"}, "--timeout", "1ns", "version")
	h.fails([]string{"deadline exceeded"}, "--timeout", "1ns", "content", "ls")
	blob := strings.TrimSpace(h.okIn("timed", "--timeout", "10s", "content", "ingest", "timed"))
	if got := h.ok("--timeout", "10s", "content", "get", blob); got != "timed" {
		t.Fatalf("get with --timeout: %q", got)
	}
	h.fails([]string{"-1s"}, "--timeout", "-1s", "version")

	h.fails([]string{"frobnicate"}, "frobnicate")
	h.fails([]string{"frobnicate"}, "images", "frobnicate")
	h.fails([]string{"-bogus"}, "images", "ls", "-bogus")
	h.fails([]string{"xml"}, "--format", "xml", "images", "ls")
	if r := h.runEnv(nil, "", "--address", t.TempDir()+"/none.sock", "version"); r.code != 1 || !strings.Contains(r.stderr, "none.sock") {
		t.Fatalf("missing daemon: %+v", r)
	}
}

func TestEvents(t *testing.T) {
	h := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.bin, "--address", h.d.Address, "events", `topic~="^/test/"`)
	cmd.Env = baseEnv()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			got <- sc.Text()
		}
		close(got)
	}()

	c, err := client.New(h.d.Address, client.WithDefaultNamespace("evns"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// hullctl subscribes asynchronously: publish until it prints.
	var line string
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for line == "" {
		select {
		case <-tick.C:
			if err := c.EventService().Publish(ctx, "/other", &eventsapi.NamespaceCreate{Name: "skip"}); err != nil {
				t.Fatal(err)
			}
			if err := c.EventService().Publish(ctx, "/test/ns", &eventsapi.NamespaceCreate{Name: "evname", Labels: map[string]string{"a": "b"}}); err != nil {
				t.Fatal(err)
			}
		case l, ok := <-got:
			if !ok {
				t.Fatalf("hullctl events ended: %s", stderr.String())
			}
			line = l
		case <-ctx.Done():
			t.Fatal("no event printed")
		}
	}
	// TIME (Go's time format: date, clock, zone offset, zone) NAMESPACE TOPIC JSON
	f := strings.Fields(line)
	if len(f) < 7 || f[4] != "evns" || f[5] != "/test/ns" || strings.Join(f[6:], " ") != `{"name":"evname","labels":{"a":"b"}}` {
		t.Fatalf("event line %q", line)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for range got {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("events after SIGINT: %v: %s", err, stderr.String())
	}
}

func TestGC(t *testing.T) {
	h := start(t) // its daemon never collects by itself
	loose := strings.TrimSpace(h.okIn("unreferenced", "content", "ingest", "loose"))
	kept := strings.TrimSpace(h.okIn("rooted", "content", "ingest", "--label", "containerd.io/gc.root=1", "kept"))
	if got := h.ok("gc"); got != "garbage collection done\n" {
		t.Fatalf("gc printed %q", got)
	}
	out := h.ok("content", "ls", "-q")
	if strings.Contains(out, loose) || !strings.Contains(out, kept) {
		t.Fatalf("after gc, content is:\n%s\nwant %s gone and %s kept", out, loose, kept)
	}
}
