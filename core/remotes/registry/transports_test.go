package registry

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hullrt/hull/core/remotes/hosts"
)

// countDials restarts f's server so that it counts the connections it
// accepts.
func countDials(t *testing.T, f *fakeRegistry) *atomic.Int32 {
	t.Helper()
	var dials atomic.Int32
	f.srv.Close()
	f.srv = httptest.NewUnstartedServer(f)
	f.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dials.Add(1)
		}
	}
	f.srv.Start()
	t.Cleanup(f.srv.Close)
	return &dials
}

// Resolvers that share Transports reuse one connection one after the
// other, whatever their credentials; Resolvers with their own dial each.
func TestTransportsShareConnections(t *testing.T) {
	f := newFakeRegistry(t)
	dials := countDials(t, f)
	blob := f.addBlob(testRepo, []byte("shared"))
	ref := "docker.io/" + testRepo + ":latest"

	shared := NewTransports()
	t.Cleanup(shared.CloseIdleConnections)
	for i := range 3 {
		r := NewResolver(Options{
			Hosts:      hostList(f.host(allCaps)),
			Transports: shared,
			Credentials: func(context.Context, string) (string, string, error) {
				return fmt.Sprintf("user%d", i), "secret", nil
			},
		})
		if got := fetchAll(t, mustFetcher(t, r, ref), blob); string(got) != "shared" {
			t.Fatalf("resolver %d fetched %q", i, got)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("3 resolvers sharing transports dialled %d times, want 1", n)
	}

	dials.Store(0)
	for range 2 {
		r := newTestResolver(t, Options{Hosts: hostList(f.host(allCaps))})
		fetchAll(t, mustFetcher(t, r, ref), blob)
	}
	if n := dials.Load(); n != 2 {
		t.Errorf("2 resolvers with transports of their own dialled %d times, want 2", n)
	}
}

// A client is shared by hosts of equivalent configurations only: the same
// TLSID (whichever tls.Config carries it), or the same tls.Config when
// there is no ID; never across proxies, timeouts or idle bounds.
func TestTransportsKeys(t *testing.T) {
	tr := NewTransports()
	base := hosts.Host{Scheme: "https", Host: "r.example", Path: "/v2", TLS: &tls.Config{}, TLSID: "id1", DialTimeout: defaultDialTimeout}
	same := base
	same.TLS = &tls.Config{} // another reading of the same files
	c := tr.clients(base, 0, 8).normal
	if tr.clients(same, 0, 8).normal != c {
		t.Error("hosts with one TLSID and two tls.Configs got two clients")
	}
	proxied := base
	proxied.Proxy = &url.URL{Scheme: "http", Host: "proxy.example:3128"}
	noID1, noID2 := base, base
	noID1.TLSID, noID2.TLSID = "", ""
	noID2.TLS = &tls.Config{}
	otherID := base
	otherID.TLSID = "id2"
	for name, h := range map[string]hosts.Host{"another TLSID": otherID, "a proxy": proxied, "no TLSID": noID1} {
		if tr.clients(h, 0, 8).normal == c {
			t.Errorf("%s shares the client of %+v", name, base)
		}
	}
	if tr.clients(noID1, 0, 8).normal == tr.clients(noID2, 0, 8).normal {
		t.Error("two tls.Configs without TLSID share a client")
	}
	if tr.clients(noID1, 0, 8).normal != tr.clients(noID1, 0, 8).normal {
		t.Error("one tls.Config without TLSID got two clients")
	}
	if tr.clients(base, defaultFirstByteTimeout, 8).normal == c || tr.clients(base, 0, 16).normal == c {
		t.Error("another header timeout or idle bound shares a client")
	}
}

// A proxy that hosts.toml names for a host carries its requests.
func TestHostProxy(t *testing.T) {
	f := newFakeRegistry(t)
	blob := f.addBlob(testRepo, []byte("through the proxy"))
	var (
		mu   sync.Mutex
		seen []string
	)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.RequestURI)
		mu.Unlock()
		// A plain http request through a proxy names the whole URL;
		// this proxy serves it from the registry itself.
		if r.URL.Host != f.addr() {
			http.Error(w, "not proxying "+r.URL.Host, http.StatusBadGateway)
			return
		}
		f.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	h := f.host(allCaps)
	h.Proxy, _ = url.Parse(proxy.URL)
	r := newTestResolver(t, Options{Hosts: hostList(h)})
	if got := fetchAll(t, mustFetcher(t, r, "docker.io/"+testRepo+":latest"), blob); string(got) != "through the proxy" {
		t.Fatalf("fetched %q", got)
	}
	mu.Lock()
	defer mu.Unlock()
	want := "GET http://" + f.addr() + "/v2/" + testRepo + "/blobs/" + blob.Digest.String()
	if len(seen) != 1 || !strings.HasPrefix(seen[0], want) {
		t.Errorf("the proxy saw %q, want %q", seen, want)
	}
}
