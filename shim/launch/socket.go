package launch

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
)

// maxSunPath is the room for a socket path in sockaddr_un (108 bytes with
// the terminating NUL).
const maxSunPath = 107

// SocketPath is where the shim for (address, namespace, group) listens: a
// filesystem socket (never abstract, which any process in the network
// namespace could connect to) under <dir of address>/s, named by a hash so
// that it is short and the same for every member of a group. If that is
// too long for sun_path it falls back to <tmp>/hull-shim/<hash>.
func SocketPath(address, namespace, group string) string {
	sum := sha256.Sum256([]byte(address + "\x00" + namespace + "\x00" + group))
	name := hex.EncodeToString(sum[:16])
	p := filepath.Join(filepath.Dir(address), "s", name)
	if len(p) > maxSunPath || address == "" {
		p = filepath.Join(os.TempDir(), "hull-shim", name)
	}
	return p
}

// GroupID returns the group a container's shim is shared by, from the
// spec's annotations (io.containerd.runc.v2.group, or the CRI sandbox id),
// or id when it is in no group.
func GroupID(specJSON []byte, id string) string {
	var spec struct {
		Annotations map[string]string `json:"annotations"`
	}
	if json.Unmarshal(specJSON, &spec) != nil {
		return id
	}
	for _, k := range []string{"io.containerd.runc.v2.group", "io.kubernetes.cri.sandbox-id"} {
		if g := spec.Annotations[k]; g != "" {
			return g
		}
	}
	return id
}

// Listen creates the socket at path with a private parent directory
// (0700, owned by us) and mode 0600. A stale socket nobody answers on is
// replaced; one that answers is an error wrapping ErrAlreadyExists.
func Listen(path string) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Geteuid() || fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("socket directory %s is not private to uid %d (mode %v): %w", dir, os.Geteuid(), fi.Mode().Perm(), errdefs.ErrPermissionDenied)
	}
	if Answers(path) {
		return nil, fmt.Errorf("shim socket %s: %w", path, errdefs.ErrAlreadyExists)
	}
	os.Remove(path)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	l.SetUnlinkOnClose(true)
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// Answers reports whether something accepts connections on the socket.
func Answers(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Address is the socket path as the shim prints it.
func Address(path string) string { return "unix://" + path }

// TrimAddress turns a printed address back into a path.
func TrimAddress(a string) string { return strings.TrimPrefix(strings.TrimSpace(a), "unix://") }
