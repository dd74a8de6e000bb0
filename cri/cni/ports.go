package cni

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/containerd/errdefs"
)

// PortMapping forwards a host port to a port of the pod.
type PortMapping struct {
	// Protocol is "tcp", "udp" or "sctp" (in any case); "" is tcp.
	Protocol string
	// ContainerPort is the pod's port, 1-65535.
	ContainerPort int32
	// HostPort is the host's port, 1-65535; 0 forwards nothing.
	HostPort int32
	// HostIP limits the forward to one host address; "" is all of them.
	HostIP string
}

// protocolOf is the mapping's protocol as CNI's portMappings spell it.
func protocolOf(pm PortMapping) string {
	if pm.Protocol == "" {
		return "tcp"
	}
	return strings.ToLower(pm.Protocol)
}

// ValidatePortMappings rejects what no CNI plugin could do: InvalidArgument
// naming the mapping (protocol other than tcp/udp/sctp, container port
// outside 1-65535, host port outside 0-65535, a HostIP that is not an IP,
// the same host IP:port:protocol twice).
func ValidatePortMappings(pms []PortMapping) error {
	type hostKey struct {
		ip    netip.Addr // the zero Addr for "" (every address)
		port  int32
		proto string
	}
	seen := make(map[hostKey]int, len(pms))
	for i, pm := range pms {
		proto := protocolOf(pm)
		switch proto {
		case "tcp", "udp", "sctp":
		default:
			return fmt.Errorf("port mapping %d (%s): protocol %q is not tcp, udp or sctp: %w", i, describe(pm), pm.Protocol, errdefs.ErrInvalidArgument)
		}
		if pm.ContainerPort < 1 || pm.ContainerPort > 65535 {
			return fmt.Errorf("port mapping %d (%s): container port %d is outside 1-65535: %w", i, describe(pm), pm.ContainerPort, errdefs.ErrInvalidArgument)
		}
		if pm.HostPort < 0 || pm.HostPort > 65535 {
			return fmt.Errorf("port mapping %d (%s): host port %d is outside 0-65535: %w", i, describe(pm), pm.HostPort, errdefs.ErrInvalidArgument)
		}
		var ip netip.Addr
		if pm.HostIP != "" {
			a, err := netip.ParseAddr(pm.HostIP)
			// A zone ("fe80::1%eth0") names no address iptables can match.
			if err != nil || a.Zone() != "" {
				return fmt.Errorf("port mapping %d (%s): host IP %q is not an IP address: %w", i, describe(pm), pm.HostIP, errdefs.ErrInvalidArgument)
			}
			ip = a.Unmap()
		}
		if pm.HostPort == 0 {
			continue // forwards nothing, so it cannot clash
		}
		k := hostKey{ip: ip, port: pm.HostPort, proto: proto}
		if j, dup := seen[k]; dup {
			return fmt.Errorf("port mapping %d (%s): host %s is already mapped by port mapping %d: %w", i, describe(pm), hostAddr(pm), j, errdefs.ErrInvalidArgument)
		}
		seen[k] = i
	}
	return nil
}

// describe names a mapping the way an error message reader knows it.
func describe(pm PortMapping) string {
	return fmt.Sprintf("%s -> %d/%s", hostAddr(pm), pm.ContainerPort, pm.Protocol)
}

func hostAddr(pm PortMapping) string {
	ip := pm.HostIP
	if strings.Contains(ip, ":") {
		ip = "[" + ip + "]"
	}
	return fmt.Sprintf("%s:%d/%s", ip, pm.HostPort, protocolOf(pm))
}
