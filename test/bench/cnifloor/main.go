// Command cnifloor is a measuring stick for the benchmarks, not a part of
// hull: it times what every CRI runtime on CNI pays to network a pod,
// go-cni (containerd's CNI library) adding a fresh network namespace to the
// loopback network and to a bridge conflist (bridge, host-local, portmap,
// as the benchmarks' daemons are configured), with no runtime around it.
// Run it in a network namespace of its own (unshare --net): the bridge it
// makes is that namespace's.
//
// Usage:
//
//	cnifloor BINDIR WORKDIR ROUNDS
//
// It prints one line, "median-ms N", the median time of ROUNDS setups; each
// namespace is torn down (CNI DEL) and removed before the next.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	gocni "github.com/containerd/go-cni"

	"github.com/hullrt/hull/cri/netns"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "cnifloor:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 3 {
		return fmt.Errorf("usage: cnifloor BINDIR WORKDIR ROUNDS")
	}
	bin, work := args[0], args[1]
	rounds, err := strconv.Atoi(args[2])
	if err != nil || rounds < 1 {
		return fmt.Errorf("rounds %q: not a positive number", args[2])
	}
	confDir, nsDir := filepath.Join(work, "net.d"), filepath.Join(work, "netns")
	for _, d := range []string{confDir, nsDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	conf := `{
  "cniVersion": "1.0.0",
  "name": "cnifloor",
  "plugins": [
    {
      "type": "bridge", "bridge": "cnifloor0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": { "type": "host-local", "ranges": [[{ "subnet": "10.99.0.0/16" }]], "routes": [{ "dst": "0.0.0.0/0" }],
                "dataDir": "` + filepath.Join(work, "ipam") + `" }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}`
	if err := os.WriteFile(filepath.Join(confDir, "10-cnifloor.conflist"), []byte(conf), 0o644); err != nil {
		return err
	}
	l, err := gocni.New(gocni.WithPluginDir([]string{bin}), gocni.WithPluginConfDir(confDir), gocni.WithMinNetworkCount(2))
	if err != nil {
		return err
	}
	if err := l.Load(gocni.WithLoNetwork, gocni.WithDefaultConf); err != nil {
		return err
	}
	ctx := context.Background()
	var took []time.Duration
	for i := range rounds {
		ns, err := netns.New(nsDir)
		if err != nil {
			return err
		}
		id := fmt.Sprintf("cnifloor-%d", i)
		start := time.Now()
		_, err = l.Setup(ctx, id, ns.Path())
		took = append(took, time.Since(start))
		if err != nil {
			ns.Remove()
			return fmt.Errorf("setup: %w", err)
		}
		if err := l.Remove(ctx, id, ns.Path()); err != nil {
			return fmt.Errorf("remove: %w", err)
		}
		if err := ns.Remove(); err != nil {
			return err
		}
	}
	slices.Sort(took)
	fmt.Printf("median-ms %.2f\n", float64(took[len(took)/2])/float64(time.Millisecond))
	return nil
}
