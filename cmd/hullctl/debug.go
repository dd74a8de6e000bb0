package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/internal/version"
)

func debugCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:        "debug",
		Usage:       "collect what a bug report needs",
		Subcommands: []*cli.Command{debugDump(e)},
	}
}

// hullShimRuntime is the runtime whose shims write their goroutine stacks
// to a file in the bundle on SIGUSR1; other shims (runc's) only log them,
// and hulld copies shim logs into its own.
const hullShimRuntime = "io.containerd.hull.v2"

// runtimeStateDir is the runtime plugin's directory under hulld's state
// directory; bundles are <ns>/<id> in it.
const runtimeStateDir = "io.containerd.runtime.v2.task"

func debugDump(e *env) *cli.Command {
	return &cli.Command{
		Name:  "dump",
		Usage: "make a tar.gz of hulld's and its shims' goroutine stacks, recent events, effective config, versions, plugins and objects",
		Description: `dump must run as root on hulld's host: it sends SIGUSR1 to hulld (which
dumps its goroutine stacks and recent events into its state directory and
passes the signal on to every shim) and reads the files written. What it
cannot collect is listed in the archive's README.txt and on stderr; it does
not fail for it.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "the archive to write (default: hull-debug-<time>.tar.gz in the current directory)"},
			&cli.DurationFlag{Name: "wait", Value: 5 * time.Second, Usage: "how long to wait for hulld and the shims to write their dumps"},
		},
		Action: func(c *cli.Context) error {
			out := c.String("output")
			if out == "" {
				out = fmt.Sprintf("hull-debug-%s.tar.gz", time.Now().UTC().Format("20060102T150405Z"))
			}
			ctx, cancel := context.WithTimeout(e.ctx(c), 30*time.Second)
			defer cancel()
			d := &dump{e: e, wait: c.Duration("wait")}
			d.collect(ctx)
			if err := d.write(out); err != nil {
				return err
			}
			for _, m := range d.missing {
				fmt.Fprintf(e.stderr, "hullctl: not collected: %s\n", m)
			}
			fmt.Fprintln(e.stdout, out)
			return nil
		},
	}
}

// dump gathers the archive's files in memory (they are small: stacks and
// listings) and what could not be had.
type dump struct {
	e       *env
	wait    time.Duration
	files   []dumpFile
	missing []string
	// listed holds the tasks hulld lists, by namespace/id, for the
	// comparison with the machine (machine.txt).
	listed map[string]bool
}

type dumpFile struct {
	name, about string
	data        []byte
}

func (d *dump) add(name, about string, data []byte) {
	d.files = append(d.files, dumpFile{name, about, data})
}

func (d *dump) miss(format string, args ...any) {
	d.missing = append(d.missing, fmt.Sprintf(format, args...))
}

// addFile adds a file of the host, or notes why it could not.
func (d *dump) addFile(name, about, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		d.miss("%s: %v", about, err)
		return
	}
	d.add(name, about+" (from "+path+")", data)
}

// collect gathers everything it can; each step notes its own failure and
// the next goes on.
func (d *dump) collect(ctx context.Context) {
	var ver bytes.Buffer
	fmt.Fprintf(&ver, "Client:\n  Version:  %s\n  Revision: %s\n  Go version: %s\n  OS/Arch: %s/%s\n\n", version.Version, version.Revision, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	defer func() {
		d.files = append([]dumpFile{{"version.txt", "hullctl's and hulld's versions", ver.Bytes()}}, d.files...)
	}()

	cl, err := d.e.connect()
	if err != nil {
		d.miss("everything from hulld: connect to %s: %v", d.e.address, err)
		return
	}
	v, err := cl.Version(ctx)
	if err != nil {
		d.miss("everything from hulld: %s: %v", d.e.address, err)
		return
	}
	si, err := cl.Server(ctx)
	if err != nil {
		d.miss("hulld's identity (pid, uuid): %v", err)
	}
	fmt.Fprintf(&ver, "Server:\n  Address:  %s\n  Version:  %s\n  Revision: %s\n  UUID:     %s\n  PID:      %d\n", d.e.address, v.Version, v.Revision, si.UUID, si.Pid)

	exports := d.plugins(ctx, cl)
	state, root := exports["state"], exports["root"]
	fmt.Fprintf(&ver, "  Root:     %s\n  State:    %s\n", root, state)
	if p := exports["config.effective"]; p != "" {
		d.addFile("hulld/config.toml", "hulld's effective configuration (defaults, file and flags merged)", p)
	} else {
		d.miss("hulld's effective configuration: the introspection plugin does not export config.effective")
	}
	d.objects(ctx, cl)
	if state == "" {
		d.miss("goroutine stacks and events: the introspection plugin does not export hulld's state directory")
		return
	}
	d.machine(state)
	d.stacks(si, state)
}

// machine adds machine.txt: every task bundle, runc container and shim
// socket under hulld's state, each with whether hulld lists its task. After
// a crash and restart hulld guarantees they agree (docs/operations.md), so
// any line marked "NOT LISTED" or "MISSING" is a leak or a ghost to report.
func (d *dump) machine(state string) {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 1, 8, 1, ' ', 0)
	fmt.Fprintln(tw, "KIND\tTASK\tDETAIL\tHULLD")
	listed := func(k string) string {
		if d.listed[k] {
			return "listed"
		}
		return "NOT LISTED"
	}
	seen := map[string]bool{}
	for _, tb := range d.bundles(state) {
		k := tb.ns + "/" + tb.id
		seen[k] = true
		var rec struct {
			State string `json:"state"`
		}
		if data, err := os.ReadFile(filepath.Join(tb.dir, "hull-shim.json")); err == nil {
			json.Unmarshal(data, &rec)
		}
		shim := "no shim.pid"
		if data, err := os.ReadFile(filepath.Join(tb.dir, "shim.pid")); err == nil {
			pid := strings.TrimSpace(string(data))
			shim = "shim " + pid + " gone"
			if _, err := os.Stat("/proc/" + pid); err == nil {
				shim = "shim " + pid + " alive"
			}
		}
		fmt.Fprintf(tw, "bundle\t%s\truntime %s, record %s, %s\t%s\n", k, tb.runtime, orDash(rec.State), shim, listed(k))
	}
	runcRoot := filepath.Join(state, "runc")
	nss, _ := os.ReadDir(runcRoot)
	for _, ns := range nss {
		ids, _ := os.ReadDir(filepath.Join(runcRoot, ns.Name()))
		for _, id := range ids {
			if id.IsDir() {
				k := ns.Name() + "/" + id.Name()
				seen[k] = true
				fmt.Fprintf(tw, "runc\t%s\t%s\t%s\n", k, filepath.Join(runcRoot, k), listed(k))
			}
		}
	}
	for k := range d.listed {
		if !seen[k] {
			fmt.Fprintf(tw, "task\t%s\tno bundle, no runc state (a task of another runc root, or a ghost)\tMISSING\n", k)
		}
	}
	sockets, _ := os.ReadDir(filepath.Join(state, "s")) // shim sockets: <state>/s
	for _, so := range sockets {
		p := filepath.Join(state, "s", so.Name())
		st := "no one answers: stale"
		if c, err := net.DialTimeout("unix", p, time.Second); err == nil {
			c.Close()
			st = "a shim answers"
		}
		fmt.Fprintf(tw, "socket\t-\t%s: %s\t-\n", p, st)
	}
	tw.Flush()
	d.add("machine.txt", "task bundles, runc containers and shim sockets on the host, against the tasks hulld lists", b.Bytes())
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// plugins adds the plugin list and returns the introspection plugin's
// exports (root, state, config.effective).
func (d *dump) plugins(ctx context.Context, cl *client.Client) map[string]string {
	ps, err := cl.Plugins(ctx)
	if err != nil {
		d.miss("plugin list: %v", err)
		return nil
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].Type+ps[i].ID < ps[j].Type+ps[j].ID })
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 1, 8, 1, ' ', 0)
	fmt.Fprintln(tw, "TYPE\tID\tPLATFORMS\tSTATUS\tERROR")
	var exports map[string]string
	for _, p := range ps {
		plats := strings.Join(p.Platforms, ",")
		if plats == "" {
			plats = "-"
		}
		errText := p.InitErr
		if errText == "" {
			errText = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Type, p.ID, plats, pluginStatus(p), errText)
		if p.Type == "io.containerd.grpc.v1" && p.ID == "introspection" {
			exports = p.Exports
		}
	}
	tw.Flush()
	d.add("plugins.txt", "hulld's plugins with their status and, for those not running, why", b.Bytes())
	if js, err := json.MarshalIndent(ps, "", "  "); err == nil {
		d.add("plugins.json", "the same with requirements, exports and capabilities", js)
	}
	return exports
}

// objects adds the namespaces and, in each, its containers and tasks.
func (d *dump) objects(ctx context.Context, cl *client.Client) {
	nss, err := cl.NamespaceService().List(ctx)
	if err != nil {
		d.miss("namespaces, containers and tasks: %v", err)
		return
	}
	sort.Strings(nss)
	var b bytes.Buffer
	for _, ns := range nss {
		nctx := client.WithNamespace(ctx, ns)
		fmt.Fprintf(&b, "namespace %s\n", ns)
		tw := tabwriter.NewWriter(&b, 1, 8, 1, ' ', 0)
		recs, err := cl.ContainerService().List(nctx)
		if err != nil {
			fmt.Fprintf(&b, "  containers: %v\n", err)
		} else {
			fmt.Fprintln(tw, "  CONTAINER\tIMAGE\tRUNTIME\tSNAPSHOTTER\tCREATED")
			for _, r := range recs {
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", r.ID, r.Image, r.Runtime.Name, r.Snapshotter, timeString(r.CreatedAt))
			}
			tw.Flush()
		}
		ts, err := cl.Tasks(nctx, "")
		if err != nil {
			fmt.Fprintf(&b, "  tasks: %v\n", err)
		} else {
			fmt.Fprintln(tw, "  TASK\tEXEC\tPID\tSTATUS\tEXIT")
			for _, t := range ts {
				fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%d\n", t.ContainerID, t.ExecID, t.Pid, t.Status.Status, t.Status.ExitStatus)
				if d.listed == nil {
					d.listed = map[string]bool{}
				}
				d.listed[ns+"/"+t.ContainerID] = true
			}
			tw.Flush()
		}
		b.WriteString("\n")
	}
	d.add("objects.txt", "every namespace with its containers and tasks", b.Bytes())
}

// stacks signals hulld and collects the files it and its shims write.
func (d *dump) stacks(si client.ServerInfo, state string) {
	stacksGlob := filepath.Join(state, fmt.Sprintf("hulld.%d.stacks.*.log", si.Pid))
	eventsGlob := filepath.Join(state, fmt.Sprintf("hulld.%d.events.*.log", si.Pid))
	before := map[string]bool{}
	for _, g := range []string{stacksGlob, eventsGlob} {
		old, _ := filepath.Glob(g)
		for _, p := range old {
			before[p] = true
		}
	}
	bundles := d.bundles(state)
	signalled := time.Now()
	if err := d.signal(si); err != nil {
		d.miss("fresh goroutine stacks of hulld and its shims: %v; older dumps are included if there are any", err)
	}
	// The dumps are written asynchronously: wait, bounded, for hulld's
	// stacks and events and for a stacks file from every hull shim.
	deadline := signalled.Add(d.wait)
	var stacks, events string
	for {
		stacks, events = newest(stacksGlob, before), newest(eventsGlob, before)
		pending := stacks == "" || events == ""
		for _, b := range bundles {
			if b.expectStacks && freshStacks(b.dir, signalled) == "" {
				pending = true
			}
		}
		if !pending || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if stacks == "" {
		stacks = newest(stacksGlob, nil)
		if stacks != "" {
			d.miss("fresh hulld goroutine stacks within %s: including the older dump %s", d.wait, filepath.Base(stacks))
		}
	}
	if stacks != "" {
		d.addFile("hulld/stacks.log", "hulld's goroutine stacks", stacks)
	} else {
		d.miss("hulld's goroutine stacks: no %s appeared within %s", filepath.Base(stacksGlob), d.wait)
	}
	if events == "" {
		events = newest(eventsGlob, nil)
	}
	if events != "" {
		d.addFile("hulld/events.log", "hulld's recent events, one JSON object a line", events)
	} else {
		d.miss("hulld's recent events: no %s appeared within %s (hulld versions before the events log write none)", filepath.Base(eventsGlob), d.wait)
	}
	for _, b := range bundles {
		name := "shims/" + b.ns + "/" + b.id + "/"
		if rec, err := os.ReadFile(filepath.Join(b.dir, "hull-shim.json")); err == nil {
			d.add(name+"hull-shim.json", "which shim runs task "+b.ns+"/"+b.id, rec)
		}
		p := freshStacks(b.dir, signalled)
		if p == "" {
			p = freshStacks(b.dir, time.Time{})
		}
		switch {
		case p != "":
			d.addFile(name+filepath.Base(p), "goroutine stacks of the shim of task "+b.ns+"/"+b.id, p)
		case b.expectStacks:
			d.miss("stacks of the shim of task %s/%s: no shim.<pid>.stacks.log in %s within %s", b.ns, b.id, b.dir, d.wait)
		default:
			d.miss("stacks of the shim of task %s/%s: its runtime (%s) writes them only to its log, which hulld copies into its own log", b.ns, b.id, b.runtime)
		}
	}
}

// signal sends SIGUSR1 to hulld, which must be in our pid namespace.
func (d *dump) signal(si client.ServerInfo) error {
	if si.Pid == 0 {
		return fmt.Errorf("hulld did not tell its pid")
	}
	var st unix.Stat_t
	if si.Pidns != 0 && unix.Stat("/proc/self/ns/pid", &st) == nil && st.Ino != si.Pidns {
		return fmt.Errorf("hulld (pid %d) runs in another pid namespace (%d, ours is %d): run hullctl debug dump next to it", si.Pid, si.Pidns, st.Ino)
	}
	if err := unix.Kill(int(si.Pid), unix.SIGUSR1); err != nil {
		return fmt.Errorf("signal hulld (pid %d): %w (run as root on hulld's host)", si.Pid, err)
	}
	return nil
}

// taskBundle is a task's bundle directory under the runtime's state.
type taskBundle struct {
	ns, id, dir, runtime string
	expectStacks         bool
}

// bundles lists the task bundles under state and which runtime runs each.
func (d *dump) bundles(state string) []taskBundle {
	base := filepath.Join(state, runtimeStateDir)
	nss, err := os.ReadDir(base)
	if err != nil {
		if !os.IsNotExist(err) {
			d.miss("shim stacks: %v", err)
		}
		return nil
	}
	var out []taskBundle
	for _, ns := range nss {
		if !ns.IsDir() {
			continue
		}
		ids, _ := os.ReadDir(filepath.Join(base, ns.Name()))
		for _, id := range ids {
			if !id.IsDir() {
				continue
			}
			b := taskBundle{ns: ns.Name(), id: id.Name(), dir: filepath.Join(base, ns.Name(), id.Name()), runtime: "unknown"}
			var rec struct {
				Runtime string `json:"runtime"`
			}
			if data, err := os.ReadFile(filepath.Join(b.dir, "hull-shim.json")); err == nil && json.Unmarshal(data, &rec) == nil && rec.Runtime != "" {
				b.runtime = rec.Runtime
			}
			b.expectStacks = b.runtime == hullShimRuntime
			out = append(out, b)
		}
	}
	return out
}

// newest returns the most recently modified file matching glob that is not
// in skip; "" if none.
func newest(glob string, skip map[string]bool) string {
	paths, _ := filepath.Glob(glob)
	var best string
	var bestTime time.Time
	for _, p := range paths {
		if skip[p] {
			continue
		}
		fi, err := os.Stat(p)
		if err != nil || fi.Size() == 0 {
			continue
		}
		if best == "" || fi.ModTime().After(bestTime) {
			best, bestTime = p, fi.ModTime()
		}
	}
	return best
}

// freshStacks returns the shim stacks file in dir written at or after
// since; "" if none.
func freshStacks(dir string, since time.Time) string {
	paths, _ := filepath.Glob(filepath.Join(dir, "shim.*.stacks.log"))
	for _, p := range paths {
		// A little slack for filesystems with coarse timestamps.
		if fi, err := os.Stat(p); err == nil && fi.Size() > 0 && !fi.ModTime().Before(since.Add(-10*time.Millisecond)) {
			return p
		}
	}
	return ""
}

// write writes the archive beside out and renames it into place, so that a
// failure leaves no half archive under the name.
func (d *dump) write(out string) error {
	var readme bytes.Buffer
	fmt.Fprintf(&readme, "hull debug dump, made by hullctl %s at %s\n\nFiles:\n", version.Version, time.Now().UTC().Format(time.RFC3339))
	for _, f := range d.files {
		fmt.Fprintf(&readme, "  %s\n      %s\n", f.name, f.about)
	}
	if len(d.missing) > 0 {
		readme.WriteString("\nNot collected:\n")
		for _, m := range d.missing {
			fmt.Fprintf(&readme, "  - %s\n", m)
		}
	}
	files := append([]dumpFile{{"README.txt", "", readme.Bytes()}}, d.files...)

	f, err := os.CreateTemp(filepath.Dir(out), ".hullctl-dump-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	now := time.Now()
	for _, file := range files {
		if err := tw.WriteHeader(&tar.Header{Name: file.name, Mode: 0o600, Size: int64(len(file.data)), ModTime: now, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(file.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), out)
}
