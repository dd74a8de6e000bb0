package launch

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestSocketPath(t *testing.T) {
	p := SocketPath("", "/run/hull/hull.sock", "default", "c1")
	if !strings.HasPrefix(p, "/run/hull/s/") || len(filepath.Base(p)) != 32 {
		t.Fatalf("%q", p)
	}
	if p != SocketPath("", "/run/hull/hull.sock", "default", "c1") {
		t.Fatal("not deterministic")
	}
	if p == SocketPath("", "/run/hull/hull.sock", "other", "c1") || p == SocketPath("", "/run/hull/hull.sock", "default", "c2") {
		t.Fatal("namespace or id not in the hash")
	}
	long := "/" + strings.Repeat("d", 100) + "/containerd.sock"
	if lp := SocketPath("", long, "default", "c1"); len(lp) > maxSunPath || !strings.HasPrefix(lp, os.TempDir()) {
		t.Fatalf("long address gave %q", lp)
	}
}

func TestSocketDir(t *testing.T) {
	if d := SocketDir("/run/hull/hull.sock", 64); d != "/run/hull/s" {
		t.Errorf("short address: %q", d)
	}
	// Room for a 64-character name beside the address, but not more.
	fits := "/" + strings.Repeat("d", maxSunPath-1-64-len("/")-len("/s")) + "/x.sock"
	if d := SocketDir(fits, 64); d != filepath.Join(filepath.Dir(fits), "s") || len(d)+1+64 != maxSunPath {
		t.Errorf("address that just fits: %q (%d)", d, len(d)+1+64)
	}
	if d := SocketDir("/a"+fits, 64); d != filepath.Join(os.TempDir(), "hull-shim") {
		t.Errorf("address one byte too long: %q", d)
	}
	if d := SocketDir("", 64); d != filepath.Join(os.TempDir(), "hull-shim") {
		t.Errorf("no address: %q", d)
	}
	// A directory the daemon names is used while the name fits.
	if p := SocketPath("/state/s", "/run/hull/hull.sock", "default", "c1"); filepath.Dir(p) != "/state/s" {
		t.Errorf("given directory ignored: %q", p)
	}
	if p := SocketPath("/"+strings.Repeat("d", 90), "/run/hull/hull.sock", "default", "c1"); filepath.Dir(p) != "/run/hull/s" {
		t.Errorf("too long a directory: %q", p)
	}
}

func TestGroupID(t *testing.T) {
	if g := GroupID([]byte(`{"annotations":{"io.containerd.runc.v2.group":"g"}}`), "c1"); g != "g" {
		t.Fatal(g)
	}
	if g := GroupID([]byte(`{"annotations":{"io.kubernetes.cri.sandbox-id":"sb"}}`), "c1"); g != "sb" {
		t.Fatal(g)
	}
	if g := GroupID([]byte(`{}`), "c1"); g != "c1" {
		t.Fatal(g)
	}
	if g := GroupID([]byte(`not json`), "c1"); g != "c1" {
		t.Fatal(g)
	}
}

func TestListenPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	l, err := Listen(filepath.Join(dir, "x"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fi, _ := os.Stat(filepath.Join(dir, "x"))
	di, _ := os.Stat(dir)
	if fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
		t.Fatalf("socket %v dir %v", fi.Mode(), di.Mode())
	}
	if _, err := Listen(filepath.Join(dir, "x")); err == nil {
		t.Fatal("second listener on an answering socket")
	}
	// A directory others can enter is refused.
	open := filepath.Join(t.TempDir(), "open")
	os.Mkdir(open, 0o755)
	if _, err := Listen(filepath.Join(open, "x")); err == nil {
		t.Fatal("socket in a 0755 directory accepted")
	}
}

func FuzzGroupID(f *testing.F) {
	f.Add([]byte(`{"annotations":{"io.containerd.runc.v2.group":"g"}}`), "c1")
	f.Fuzz(func(t *testing.T, spec []byte, id string) {
		if g := GroupID(spec, id); g == "" && id != "" {
			t.Fatal("empty group")
		}
	})
}

func TestServingProcessRunsOnOneProcessorUnlessTheUserChose(t *testing.T) {
	env := ChildEnv([]string{"PATH=/bin"})
	want := []string{"PATH=/bin", ListenerFDEnv + "=3", "GOMAXPROCS=1", DefaultProcsEnv + "=none"}
	if strings.Join(env, " ") != strings.Join(want, " ") {
		t.Fatalf("child env %q, want %q", env, want)
	}
	env = ChildEnv([]string{"GOMAXPROCS=4"})
	if strings.Join(env, " ") != "GOMAXPROCS=4 "+ListenerFDEnv+"=3" {
		t.Fatalf("a GOMAXPROCS the user set was changed: %q", env)
	}
	// hulld's GOMAXPROCS=2 for every shim is its default, which hull's
	// shim overrides for itself (the last of a name wins in exec).
	env = ChildEnv([]string{"GOMAXPROCS=2", DefaultProcsEnv + "=2"})
	if strings.Join(env, " ") != "GOMAXPROCS=2 "+DefaultProcsEnv+"=2 "+ListenerFDEnv+"=3 GOMAXPROCS=1" {
		t.Fatalf("the daemon's default GOMAXPROCS: %q", env)
	}
}

// Launch starts the serving process with the listening socket, records it
// in the bundle, and a second container of the same group gets the same
// socket without a second process.
func TestLaunchStartsOneServerPerGroup(t *testing.T) {
	dir := t.TempDir()
	// A stand-in for the shim: it holds the socket it was given (fd 3)
	// open, as the real one serves it, and reports its environment.
	fake := filepath.Join(dir, "fake-shim")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\nenv > env.out\nexec sleep 30\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	sockDir := filepath.Join(dir, "run")
	if err := os.Mkdir(sockDir, 0o700); err != nil {
		t.Fatal(err)
	}
	bundle := func(name, group string) string {
		b := filepath.Join(dir, name)
		os.Mkdir(b, 0o700)
		spec := `{"annotations":{"io.containerd.runc.v2.group":"` + group + `"}}`
		if err := os.WriteFile(filepath.Join(b, "config.json"), []byte(spec), 0o600); err != nil {
			t.Fatal(err)
		}
		return b
	}
	params := func(id, b string) Params {
		return Params{Namespace: "ns", Address: filepath.Join(sockDir, "hull.sock"), ID: id, Bundle: b,
			Options: []byte("opts"), Binary: fake, Env: []string{"PATH=" + os.Getenv("PATH"), "TTRPC_ADDRESS=x"}}
	}
	b1 := bundle("c1", "g")
	addr, proc, err := Launch(params("c1", b1))
	if err != nil || proc == nil {
		t.Fatalf("first launch: %q %v %v", addr, proc, err)
	}
	t.Cleanup(func() { proc.Kill(); proc.Wait() })
	if want := Address(SocketPath("", filepath.Join(sockDir, "hull.sock"), "ns", "g")); addr != want {
		t.Fatalf("address %q, want %q", addr, want)
	}
	for name, want := range map[string]string{"address": addr, "options.pb": "opts", "shim.pid": strconv.Itoa(proc.Pid)} {
		if got, err := os.ReadFile(filepath.Join(b1, name)); err != nil || string(got) != want {
			t.Errorf("bundle file %s: %q %v, want %q", name, got, err, want)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	var env []byte
	for len(env) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		env, _ = os.ReadFile(filepath.Join(b1, "env.out"))
	}
	for _, kv := range []string{"TTRPC_ADDRESS=x", ListenerFDEnv + "=3", "GOMAXPROCS=1", DefaultProcsEnv + "=none"} {
		if !strings.Contains(string(env), kv+"\n") {
			t.Errorf("the serving process's environment lacks %s:\n%s", kv, env)
		}
	}

	b2 := bundle("c2", "g")
	addr2, proc2, err := Launch(params("c2", b2))
	if err != nil || proc2 != nil || addr2 != addr {
		t.Fatalf("second member of the group: %q %v %v, want %q and no new process", addr2, proc2, err, addr)
	}
	if got, _ := os.ReadFile(filepath.Join(b2, "address")); string(got) != addr {
		t.Fatalf("second bundle's address file: %q", got)
	}

	// A bundle without a spec is an error, and nothing is started.
	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o700)
	if _, p, err := Launch(params("c3", empty)); err == nil || p != nil {
		t.Fatalf("launch without config.json: %v %v", p, err)
	}
}

// When the bundle cannot record the started serving process (shim.pid or
// address), Launch kills and reaps it and removes its socket: nobody could
// find that process again to stop it.
func TestLaunchKillsTheServerWhenTheBundleCannotRecordIt(t *testing.T) {
	for _, file := range []string{"shim.pid", "address"} {
		t.Run(file, func(t *testing.T) {
			dir := t.TempDir()
			// The shell blocks opening a FIFO nobody writes: no child
			// process (a forked child carries the shell's command line
			// until it execs, which a kill can catch it before), and the
			// command line with the bundle's id stays findable in /proc
			// while the shell lives.
			fifo := filepath.Join(dir, "never")
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				t.Fatal(err)
			}
			fake := filepath.Join(dir, "fake-shim")
			if err := os.WriteFile(fake, []byte("#!/bin/sh\nread line < '"+fifo+"'\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			sockDir := filepath.Join(dir, "run")
			if err := os.Mkdir(sockDir, 0o700); err != nil {
				t.Fatal(err)
			}
			b := filepath.Join(dir, "bundle")
			os.Mkdir(b, 0o700)
			if err := os.WriteFile(filepath.Join(b, "config.json"), []byte(`{}`), 0o600); err != nil {
				t.Fatal(err)
			}
			// A non-empty directory where the file goes: the rename that
			// writes it fails.
			if err := os.MkdirAll(filepath.Join(b, file, "x"), 0o700); err != nil {
				t.Fatal(err)
			}
			id := "c-" + strconv.Itoa(os.Getpid()) + "-" + file
			addr := filepath.Join(sockDir, "hull.sock")
			_, proc, err := Launch(Params{Namespace: "ns", Address: addr, ID: id, Bundle: b, Binary: fake,
				Env: []string{"PATH=" + os.Getenv("PATH")}})
			if proc != nil {
				t.Cleanup(func() { proc.Kill(); proc.Wait() })
			}
			if err == nil {
				t.Fatalf("launch with an unwritable %s succeeded", file)
			}
			if proc != nil {
				t.Errorf("launch failed (%v) but handed back the process %d", err, proc.Pid)
			}
			if pids := processesWithArg(t, id); len(pids) > 0 {
				for _, pid := range pids {
					syscall.Kill(pid, syscall.SIGKILL)
				}
				t.Fatalf("the serving process %v outlived the failed launch", pids)
			}
			if _, err := os.Stat(SocketPath("", addr, "ns", id)); !os.IsNotExist(err) {
				t.Errorf("the failed launch left its socket: %v", err)
			}
		})
	}
}

// processesWithArg lists live processes with arg in their command line.
// A zombie's command line reads empty, so only unreaped-and-running ones
// count, which is what a leak is.
func processesWithArg(t *testing.T, arg string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		for _, a := range strings.Split(string(cmdline), "\x00") {
			if a == arg {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}
