package cni

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestValidatePortMappings(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pms     []PortMapping
		wantErr string // "" for valid; else a part of the message
	}{
		{"none", nil, ""},
		{"tcp default", []PortMapping{{ContainerPort: 80, HostPort: 8080}}, ""},
		{"all protocols, any case", []PortMapping{
			{Protocol: "tcp", ContainerPort: 1, HostPort: 65535},
			{Protocol: "UDP", ContainerPort: 65535, HostPort: 65535},
			{Protocol: "sctp", ContainerPort: 9, HostPort: 65535},
		}, ""},
		{"no host port twice", []PortMapping{{ContainerPort: 80}, {ContainerPort: 80}}, ""},
		{"same port, other IPs", []PortMapping{
			{ContainerPort: 80, HostPort: 80, HostIP: "10.0.0.1"},
			{ContainerPort: 80, HostPort: 80, HostIP: "10.0.0.2"},
			{ContainerPort: 80, HostPort: 80},
			{ContainerPort: 80, HostPort: 80, HostIP: "::1"},
		}, ""},
		{"same port, other protocol", []PortMapping{{ContainerPort: 53, HostPort: 53}, {Protocol: "udp", ContainerPort: 53, HostPort: 53}}, ""},
		{"unknown protocol", []PortMapping{{Protocol: "icmp", ContainerPort: 80, HostPort: 80}}, `protocol "icmp"`},
		{"container port 0", []PortMapping{{ContainerPort: 0, HostPort: 80}}, "container port 0"},
		{"container port too big", []PortMapping{{ContainerPort: 65536}}, "container port 65536"},
		{"negative container port", []PortMapping{{ContainerPort: -1}}, "container port -1"},
		{"host port too big", []PortMapping{{ContainerPort: 80, HostPort: 70000}}, "host port 70000"},
		{"negative host port", []PortMapping{{ContainerPort: 80, HostPort: -5}}, "host port -5"},
		{"host IP not an IP", []PortMapping{{ContainerPort: 80, HostPort: 80, HostIP: "localhost"}}, `host IP "localhost"`},
		{"host IP with zone", []PortMapping{{ContainerPort: 80, HostPort: 80, HostIP: "fe80::1%eth0"}}, `host IP "fe80::1%eth0"`},
		{"host IP CIDR", []PortMapping{{ContainerPort: 80, HostPort: 80, HostIP: "10.0.0.0/8"}}, `host IP "10.0.0.0/8"`},
		{"duplicate", []PortMapping{{ContainerPort: 80, HostPort: 8080}, {Protocol: "TCP", ContainerPort: 81, HostPort: 8080}}, "already mapped by port mapping 0"},
		{"duplicate spelled differently", []PortMapping{
			{ContainerPort: 80, HostPort: 8080, HostIP: "::ffff:10.0.0.1"},
			{ContainerPort: 81, HostPort: 8080, HostIP: "10.0.0.1"},
		}, "10.0.0.1:8080/tcp is already mapped"},
	} {
		err := ValidatePortMappings(tc.pms)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.wantErr != "" && (!errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: error %v, want InvalidArgument with %q", tc.name, err, tc.wantErr)
		}
	}
}

func FuzzValidatePortMappings(f *testing.F) {
	f.Add("tcp", int32(80), int32(8080), "", "udp", int32(80), int32(8080), "")
	f.Add("", int32(80), int32(8080), "10.0.0.1", "TCP", int32(81), int32(8080), "::ffff:10.0.0.1")
	f.Add("sctp", int32(0), int32(-1), "fe80::1%lo", "x", int32(65536), int32(65535), "1.2.3")
	f.Fuzz(func(t *testing.T, p1 string, c1, h1 int32, ip1, p2 string, c2, h2 int32, ip2 string) {
		pms := []PortMapping{{p1, c1, h1, ip1}, {p2, c2, h2, ip2}}
		err := ValidatePortMappings(pms)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("error of another class: %v", err)
			}
			return
		}
		// Whatever passes is something portmap can take.
		type key struct {
			ip    netip.Addr
			port  int32
			proto string
		}
		seen := map[key]bool{}
		for _, pm := range pms {
			proto := protocolOf(pm)
			if proto != "tcp" && proto != "udp" && proto != "sctp" {
				t.Fatalf("accepted protocol %q", pm.Protocol)
			}
			if pm.ContainerPort < 1 || pm.ContainerPort > 65535 || pm.HostPort < 0 || pm.HostPort > 65535 {
				t.Fatalf("accepted ports %+v", pm)
			}
			var ip netip.Addr
			if pm.HostIP != "" {
				a, err := netip.ParseAddr(pm.HostIP)
				if err != nil {
					t.Fatalf("accepted host IP %q", pm.HostIP)
				}
				ip = a.Unmap()
			}
			if pm.HostPort == 0 {
				continue
			}
			k := key{ip, pm.HostPort, proto}
			if seen[k] {
				t.Fatalf("accepted a duplicate: %+v", pms)
			}
			seen[k] = true
		}
	})
}

func TestParseBandwidth(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64 // 0: invalid
	}{
		{"1k", 1000},
		{"1000", 1000},
		{"10M", 10_000_000},
		{"1.5M", 1_500_000},
		{"1Ki", 1024},
		{"100Mi", 100 << 20},
		{"1.0000001k", 1001}, // rounded up
		{"1P", 1_000_000_000_000_000},
		{"1G", 1_000_000_000},
		{"999", 0},   // under 1kbit
		{"1.1P", 0},  // over 1Pbit
		{"1Ei", 0},   // over 1Pbit
		{"", 0},      // empty
		{"M", 0},     // no number
		{"-1M", 0},   // negative
		{"+1M", 0},   // signed
		{"1e6", 0},   // exponent form
		{"0x10M", 0}, // hex
		{"1/2M", 0},  // fraction
		{"1..5M", 0}, // two dots
		{"10 M", 0},  // space
		{"10m", 0},   // milli: never a rate
		{"10Mb", 0},  // unknown suffix
	} {
		got, err := parseBandwidth(tc.in)
		if tc.want == 0 {
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), `"`+tc.in+`"`) {
				t.Errorf("parseBandwidth(%q) = %d, %v; want InvalidArgument naming it", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseBandwidth(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func FuzzParseBandwidth(f *testing.F) {
	for _, s := range []string{"1k", "10M", "1.5Gi", "1P", "999", "1e6", "-1", ".5M", "5.M", "0x1P", "1/3M"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseBandwidth(s)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("error of another class: %v", err)
			}
			return
		}
		if v < 1_000 || v > 1_000_000_000_000_000 {
			t.Fatalf("parseBandwidth(%q) = %d, outside 1k-1P", s, v)
		}
	})
}
