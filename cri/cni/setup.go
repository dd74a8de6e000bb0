package cni

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	gocni "github.com/containerd/go-cni"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/hullrt/hull/cri/netns"
)

// Pod is what the plugins are told about a pod.
type Pod struct {
	// ID is the sandbox ID, CNI's container ID.
	ID string
	// Name, Namespace and UID are the Kubernetes pod's, passed as CNI_ARGS.
	Name, Namespace, UID string
	// NetNSPath is the pod's network namespace (netns.NetNS.Path).
	NetNSPath string
	// PortMappings go to the portMappings capability; those without a host
	// port need no plugin and are left out.
	PortMappings []PortMapping
	// CgroupParent goes to the cgroupPath capability.
	CgroupParent string
	// Annotations: kubernetes.io/ingress-bandwidth and egress-bandwidth go to
	// the bandwidth capability.
	Annotations map[string]string
	// DNS goes to the dns capability.
	DNS *DNS
}

// DNS is the pod's resolver configuration for the "dns" capability.
type DNS struct{ Servers, Searches, Options []string }

// Result is what Setup made.
type Result struct {
	// IPs are all pod IPs, primary first (Config.IPPref).
	IPs []net.IP
	// Interfaces maps the pod's interface names to their MACs, for the
	// verbose status.
	Interfaces map[string]string
	// Raw is go-cni's form of the result, for PodSandboxStatus verbose info
	// (JSON-marshalable).
	Raw any
}

// rollbackTimeout bounds the cleanup after a failed Setup, which must run
// even when Setup's own context is what ended it.
const rollbackTimeout = 2 * time.Minute

// Setup adds the pod to every loaded network (plus loopback). On error every
// network is removed again, so that no IP, veth or iptables rule is left; the
// error names the network and plugin. Not ready: FailedPrecondition with
// Status's reason.
func (n *Network) Setup(ctx context.Context, pod Pod) (*Result, error) {
	if pod.ID == "" {
		return nil, fmt.Errorf("cni setup: pod %q has no sandbox id: %w", pod.Name, errdefs.ErrInvalidArgument)
	}
	if pod.NetNSPath == "" {
		return nil, fmt.Errorf("cni setup of pod %s: no network namespace path: %w", pod.ID, errdefs.ErrInvalidArgument)
	}
	if err := ValidatePortMappings(pod.PortMappings); err != nil {
		return nil, err
	}
	caps, err := capabilities(pod)
	if err != nil {
		return nil, err
	}
	nets, err := n.current()
	if err != nil {
		return nil, err
	}
	rt := func(nw network) *libcni.RuntimeConf {
		return &libcni.RuntimeConf{
			ContainerID:    pod.ID,
			NetNS:          pod.NetNSPath,
			IfName:         nw.ifName,
			Args:           podArgs(pod),
			CapabilityArgs: caps,
		}
	}

	results := make([]*types100.Result, len(nets))
	errs := make([]error, len(nets))
	add := func(i int) {
		results[i], errs[i] = n.add(ctx, nets[i], rt(nets[i]))
	}
	if n.cfg.SetupSerially {
		for i := range nets {
			if add(i); errs[i] != nil {
				break
			}
		}
	} else {
		var wg sync.WaitGroup
		for i := range nets {
			wg.Go(func() { add(i) })
		}
		wg.Wait()
	}
	if err := errors.Join(errs...); err != nil {
		err = fmt.Errorf("cni setup of pod %s: %w", pod.ID, err)
		if ctx.Err() != nil {
			err = fmt.Errorf("%w: %w", err, ctx.Err())
		} else {
			err = fmt.Errorf("%w: %w", err, errdefs.ErrUnknown)
		}
		return nil, n.undo(ctx, nets, pod, err)
	}
	res, err := n.result(nets, results)
	if err != nil {
		return nil, n.undo(ctx, nets, pod, err)
	}
	return res, nil
}

// undo removes a pod whose Setup failed with err from every network, also
// from those whose ADD failed: a plugin chain that broke halfway has made an
// IP or a veth already. It runs even when ctx is what ended Setup.
func (n *Network) undo(ctx context.Context, nets []network, pod Pod, err error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	if derr := n.remove(ctx, nets, pod, pod.NetNSPath); derr != nil {
		return fmt.Errorf("%w; undoing it failed too: %v", err, derr)
	}
	return err
}

// add runs one network's ADD.
func (n *Network) add(ctx context.Context, nw network, rt *libcni.RuntimeConf) (*types100.Result, error) {
	r, err := n.runner.AddNetworkList(ctx, nw.list, rt)
	if err != nil {
		return nil, fmt.Errorf("network %q (%s): %w", nw.list.Name, nw.ifName, err)
	}
	res, err := types100.NewResultFromResult(r)
	if err != nil {
		return nil, fmt.Errorf("network %q (%s): convert result: %w", nw.list.Name, nw.ifName, err)
	}
	return res, nil
}

// Teardown removes the pod from the networks. It is idempotent and works
// when the netns file is already gone (CNI DEL with an empty netns path so
// that IPAM still frees the IP and portmap removes its rules).
//
// The networks are those loaded now and those the result cache says the pod
// was added to, with the arguments it was added with: a config changed or
// removed since Setup must not leave the pod's IP behind. With no config
// loaded and nothing cached there is nothing to do.
func (n *Network) Teardown(ctx context.Context, pod Pod) error {
	if pod.ID == "" {
		return fmt.Errorf("cni teardown: pod %q has no sandbox id: %w", pod.Name, errdefs.ErrInvalidArgument)
	}
	nsPath := pod.NetNSPath
	if nsPath != "" {
		closed, err := netns.Load(nsPath).Closed()
		if err != nil {
			return fmt.Errorf("cni teardown of pod %s: %w", pod.ID, err)
		}
		if closed {
			nsPath = ""
		}
	}
	nets, _ := n.current()
	return n.remove(ctx, nets, pod, nsPath)
}

// remove deletes the pod from nets and from every network the cache holds
// for it, returning all failures.
func (n *Network) remove(ctx context.Context, nets []network, pod Pod, nsPath string) error {
	cached, err := n.runner.GetCachedAttachments(pod.ID)
	if err != nil {
		return fmt.Errorf("cni teardown of pod %s: read result cache: %w", pod.ID, err)
	}
	type job struct {
		nw network
		rt *libcni.RuntimeConf
	}
	var jobs []job
	done := map[[2]string]bool{}
	// Cached first: their arguments are the ones ADD got.
	for _, a := range cached {
		key := [2]string{a.Network, a.IfName}
		if done[key] {
			continue
		}
		list := cachedList(nets, a)
		if list == nil {
			continue // unreadable: the loaded config (if any) is tried below
		}
		done[key] = true
		jobs = append(jobs, job{
			nw: network{list: list, ifName: a.IfName},
			rt: &libcni.RuntimeConf{ContainerID: pod.ID, NetNS: nsPath, IfName: a.IfName, Args: a.CniArgs, CapabilityArgs: a.CapabilityArgs},
		})
	}
	caps, err := capabilities(pod)
	if err != nil {
		// Bad bandwidth annotations must not keep the IP: DEL without them.
		p := pod
		p.Annotations = nil
		caps, _ = capabilities(p)
	}
	for _, nw := range nets {
		if done[[2]string{nw.list.Name, nw.ifName}] {
			continue
		}
		jobs = append(jobs, job{
			nw: nw,
			rt: &libcni.RuntimeConf{ContainerID: pod.ID, NetNS: nsPath, IfName: nw.ifName, Args: podArgs(pod), CapabilityArgs: caps},
		})
	}
	var errs []error
	// Loopback was added first; take it down last.
	for _, j := range slices.Backward(jobs) {
		if err := n.del(ctx, j.nw, j.rt); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("cni teardown of pod %s: %w: %w", pod.ID, err, ctx.Err())
		}
		return fmt.Errorf("cni teardown of pod %s: %w: %w", pod.ID, err, errdefs.ErrUnknown)
	}
	return nil
}

// cachedList is the config a cached attachment was made with: the loaded one
// when it has the same name and bytes (it then also has plugins kept in
// files of their own), else the cached bytes.
func cachedList(nets []network, a *libcni.NetworkAttachment) *libcni.NetworkConfigList {
	for _, nw := range nets {
		if nw.list.Name == a.Network && string(nw.list.Bytes) == string(a.Config) {
			return nw.list
		}
	}
	list, err := libcni.ConfListFromBytes(a.Config)
	if err != nil || list.Name != a.Network {
		return nil
	}
	return list
}

// del runs one network's DEL. When the conflist's DEL stops at a failing
// plugin, the plugins before it in the list (which made the veth and the IP)
// never ran; so each plugin is then run on its own, in reverse order, and the
// result cache is kept only if one of them failed too.
func (n *Network) del(ctx context.Context, nw network, rt *libcni.RuntimeConf) error {
	err := n.runner.DelNetworkList(ctx, nw.list, rt)
	if err == nil || ctx.Err() != nil {
		return wrapNet(nw, err)
	}
	prev, _ := n.runner.GetNetworkListCachedResult(nw.list, rt)
	var errs []error
	for _, p := range slices.Backward(nw.list.Plugins) {
		if perr := n.delPlugin(ctx, nw, p, prev, rt); perr != nil {
			errs = append(errs, fmt.Errorf("plugin type=%q failed (delete): %w", p.Network.Type, perr))
		}
	}
	if len(errs) > 0 {
		return wrapNet(nw, errors.Join(errs...))
	}
	// Every plugin is done: drop the cache entry. A list with no plugins
	// makes DelNetworkList do just that.
	empty := &libcni.NetworkConfigList{Name: nw.list.Name, CNIVersion: nw.list.CNIVersion}
	return wrapNet(nw, n.runner.DelNetworkList(ctx, empty, rt))
}

func wrapNet(nw network, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("network %q (%s): %w", nw.list.Name, nw.ifName, err)
}

// delPlugin runs DEL for one plugin of a list, with the list's name and
// version, the cached result as prevResult, and the capabilities the plugin
// declares, as CNI says a runtime calls a plugin in a chain.
func (n *Network) delPlugin(ctx context.Context, nw network, p *libcni.PluginConfig, prev types.Result, rt *libcni.RuntimeConf) error {
	path, err := n.exec.FindInPath(p.Network.Type, n.runner.Path)
	if err != nil {
		// Not installed (any more): there is nothing that could run its DEL,
		// and waiting for it must not keep the other plugins' state.
		slog.WarnContext(ctx, "cni plugin missing, skipping its delete", "network", nw.list.Name, "plugin", p.Network.Type, "id", rt.ContainerID, "error", err)
		return nil
	}
	inject := map[string]any{"name": nw.list.Name, "cniVersion": nw.list.CNIVersion}
	if prev != nil {
		if ok, _ := version.GreaterThanOrEqualTo(nw.list.CNIVersion, "0.4.0"); ok {
			inject["prevResult"] = prev
		}
	}
	rc := map[string]any{}
	for name, on := range p.Network.Capabilities {
		if v, ok := rt.CapabilityArgs[name]; ok && on {
			rc[name] = v
		}
	}
	if len(rc) > 0 {
		inject["runtimeConfig"] = rc
	}
	conf, err := libcni.InjectConf(p, inject)
	if err != nil {
		return err
	}
	args := &invoke.Args{
		Command:     "DEL",
		ContainerID: rt.ContainerID,
		NetNS:       rt.NetNS,
		PluginArgs:  rt.Args,
		IfName:      rt.IfName,
		Path:        strings.Join(n.runner.Path, ":"),
	}
	return invoke.ExecPluginWithoutResult(ctx, path, conf.Bytes, args, n.exec)
}

// podArgs are the CNI_ARGS the kubelet's runtimes pass; IgnoreUnknown keeps
// plugins that know none of them from failing.
func podArgs(pod Pod) [][2]string {
	return [][2]string{
		{"IgnoreUnknown", "1"},
		{"K8S_POD_NAMESPACE", pod.Namespace},
		{"K8S_POD_NAME", pod.Name},
		{"K8S_POD_INFRA_CONTAINER_ID", pod.ID},
		{"K8S_POD_UID", pod.UID},
	}
}

// capabilities are the runtime values plugins may ask for; libcni passes each
// only to plugins whose config declares it.
func capabilities(pod Pod) (map[string]any, error) {
	caps := map[string]any{}
	pms := make([]gocni.PortMapping, 0, len(pod.PortMappings))
	for _, pm := range pod.PortMappings {
		// portmap refuses host port 0; such a mapping only documents a port.
		if pm.HostPort == 0 {
			continue
		}
		pms = append(pms, gocni.PortMapping{
			HostPort:      pm.HostPort,
			ContainerPort: pm.ContainerPort,
			Protocol:      protocolOf(pm),
			HostIP:        pm.HostIP,
		})
	}
	caps["portMappings"] = portMappingsJSON(pms)
	bw, err := bandwidthOf(pod.Annotations)
	if err != nil {
		return nil, err
	}
	if bw != nil {
		caps["bandwidth"] = bw
	}
	if pod.DNS != nil {
		caps["dns"] = dnsJSON{Servers: pod.DNS.Servers, Searches: pod.DNS.Searches, Options: pod.DNS.Options}
	}
	if pod.CgroupParent != "" {
		caps["cgroupPath"] = pod.CgroupParent
	}
	return caps, nil
}

// The JSON forms of the capabilities, in the field names of CNI's
// conventions. go-cni's types have no tags and marshal as "HostPort"; plugins
// decode case-insensitively, but the cache and verbose output read better.
type (
	portMappingJSON struct {
		HostPort      int32  `json:"hostPort"`
		ContainerPort int32  `json:"containerPort"`
		Protocol      string `json:"protocol"`
		HostIP        string `json:"hostIP,omitempty"`
	}
	bandwidthJSON struct {
		IngressRate  uint64 `json:"ingressRate,omitempty"`
		IngressBurst uint64 `json:"ingressBurst,omitempty"`
		EgressRate   uint64 `json:"egressRate,omitempty"`
		EgressBurst  uint64 `json:"egressBurst,omitempty"`
	}
	dnsJSON struct {
		Servers  []string `json:"servers,omitempty"`
		Searches []string `json:"searches,omitempty"`
		Options  []string `json:"options,omitempty"`
	}
)

func portMappingsJSON(pms []gocni.PortMapping) []portMappingJSON {
	out := make([]portMappingJSON, 0, len(pms))
	for _, pm := range pms {
		out = append(out, portMappingJSON(pm))
	}
	return out
}

// maxBurst is the burst (bits) given with a rate: the annotations carry no
// burst, and the bandwidth plugin needs one; 4Gbit, as the kubelet's
// runtimes use.
const maxBurst = math.MaxUint32

// bandwidthOf reads the bandwidth annotations; nil when there are none.
func bandwidthOf(annotations map[string]string) (*bandwidthJSON, error) {
	in, hasIn := annotations[IngressBandwidthAnnotation]
	eg, hasEg := annotations[EgressBandwidthAnnotation]
	if !hasIn && !hasEg {
		return nil, nil
	}
	bw := &bandwidthJSON{}
	if hasIn {
		rate, err := parseBandwidth(in)
		if err != nil {
			return nil, fmt.Errorf("annotation %s: %w", IngressBandwidthAnnotation, err)
		}
		bw.IngressRate, bw.IngressBurst = rate, maxBurst
	}
	if hasEg {
		rate, err := parseBandwidth(eg)
		if err != nil {
			return nil, fmt.Errorf("annotation %s: %w", EgressBandwidthAnnotation, err)
		}
		bw.EgressRate, bw.EgressBurst = rate, maxBurst
	}
	return bw, nil
}

// result turns the plugins' results into a Result: pod IPs from the default
// network (the first from ConfDir; loopback's are not pod IPs), interfaces
// inside the pod from all of them.
func (n *Network) result(nets []network, results []*types100.Result) (*Result, error) {
	raw := &gocni.Result{Interfaces: map[string]*gocni.Config{}}
	out := &Result{Interfaces: map[string]string{}}
	var ips []net.IP
	defaultIf := n.cfg.InterfacePrefix + "0"
	for i, r := range results {
		for _, intf := range r.Interfaces {
			raw.Interfaces[intf.Name] = &gocni.Config{Mac: intf.Mac, Sandbox: intf.Sandbox, PciID: intf.PciID, SocketPath: intf.SocketPath}
			if intf.Sandbox != "" {
				out.Interfaces[intf.Name] = intf.Mac
			}
		}
		for _, ipc := range r.IPs {
			if ipc == nil {
				continue
			}
			name := nets[i].ifName
			if ipc.Interface != nil {
				idx := *ipc.Interface
				if idx < 0 || idx >= len(r.Interfaces) {
					return nil, fmt.Errorf("network %q: result names interface %d of %d: %w", nets[i].list.Name, idx, len(r.Interfaces), errdefs.ErrUnknown)
				}
				name = r.Interfaces[idx].Name
			}
			c := raw.Interfaces[name]
			if c == nil {
				c = &gocni.Config{}
				raw.Interfaces[name] = c
			}
			c.IPConfigs = append(c.IPConfigs, &gocni.IPConfig{IP: ipc.Address.IP, Gateway: ipc.Gateway})
			if nets[i].ifName == defaultIf && name == defaultIf {
				ips = append(ips, ipc.Address.IP)
			}
		}
		raw.DNS = append(raw.DNS, r.DNS)
		raw.Routes = append(raw.Routes, r.Routes...)
	}
	out.IPs = orderIPs(ips, n.cfg.IPPref)
	if len(out.IPs) == 0 {
		// Not an error for CNI, but a pod without an IP is no use to the
		// kubelet; say so rather than let it find out later.
		return nil, fmt.Errorf("cni setup: network on %s returned no IP: %w", defaultIf, errdefs.ErrUnknown)
	}
	out.Raw = raw
	return out, nil
}

// orderIPs puts the preferred family's first IP in front and keeps the
// others in CNI's order.
func orderIPs(ips []net.IP, pref string) []net.IP {
	want := func(ip net.IP) bool {
		switch pref {
		case IPPrefIPv4:
			return ip.To4() != nil
		case IPPrefIPv6:
			return ip.To4() == nil
		}
		return true
	}
	i := slices.IndexFunc(ips, want)
	if i <= 0 {
		return ips
	}
	out := append([]net.IP{ips[i]}, ips[:i]...)
	return append(out, ips[i+1:]...)
}
