package cni

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
)

// TemplateData is what ConfTemplate is rendered with.
type TemplateData struct {
	// PodCIDR is the first of the node's pod CIDRs.
	PodCIDR string
	// PodCIDRRanges are all of them, IPv4 and IPv6 on dual-stack nodes.
	PodCIDRRanges []string
	// Routes are default routes ("0.0.0.0/0", "::/0") for the families of
	// the ranges, in their order.
	Routes []string
}

// UpdatePodCIDR renders ConfTemplate with .PodCIDR (the first),
// .PodCIDRRanges, .Routes (default routes for the families present) into
// ConfDir; no-op without a template, or when cidrs are unchanged. The next
// Status or Setup loads the result.
func (n *Network) UpdatePodCIDR(cidrs []string) error {
	if n.cfg.ConfTemplate == "" {
		return nil
	}
	var data TemplateData
	for _, c := range cidrs {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return fmt.Errorf("pod CIDR %q: %w", c, errdefs.ErrInvalidArgument)
		}
		data.PodCIDRRanges = append(data.PodCIDRRanges, p.String())
		route := "0.0.0.0/0"
		if p.Addr().Is6() {
			route = "::/0"
		}
		if !slices.Contains(data.Routes, route) {
			data.Routes = append(data.Routes, route)
		}
	}
	if len(data.PodCIDRRanges) == 0 {
		return nil
	}
	data.PodCIDR = data.PodCIDRRanges[0]

	n.mu.Lock()
	defer n.mu.Unlock()
	if slices.Equal(n.podCIDRs, data.PodCIDRRanges) {
		return nil
	}
	text, err := os.ReadFile(n.cfg.ConfTemplate)
	if err != nil {
		return fmt.Errorf("read cni config template: %w", err)
	}
	out, err := renderTemplate(filepath.Base(n.cfg.ConfTemplate), string(text), data)
	if err != nil {
		return fmt.Errorf("render cni config template %s: %v: %w", n.cfg.ConfTemplate, err, errdefs.ErrInvalidArgument)
	}
	if err := writeFileAtomic(filepath.Join(n.cfg.ConfDir, TemplateConfName), out); err != nil {
		return err
	}
	n.podCIDRs = data.PodCIDRRanges
	return nil
}

// writeFileAtomic replaces path so that a reader (go-cni, or another CNI
// runtime on the node) never sees half a config. The temporary file's name
// ends in ".tmp", which no loader takes for a config.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create cni config dir: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write cni config %s: %w", path, err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Chmod(0o644)
	}
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write cni config %s: %w", path, werr)
	}
	return nil
}
