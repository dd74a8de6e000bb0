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

// hashLen is the length of hull's shim socket names: 16 bytes of sha256
// in hex.
const hashLen = 32

// SocketDir is the directory for the shim sockets of the daemon at
// address when the daemon names none: <dir of address>/s (for containerd,
// /run/containerd/s, where its own shims put theirs), or SocketDirIn's
// fallback. hulld names its own (SocketDirIn of its state directory) in
// the bootstrap parameters and when it launches hull's shim; this is for
// hull's shim under a daemon that does not, and for finding the sockets of
// shims an earlier hulld started there.
func SocketDir(address string, nameLen int) string {
	if address == "" {
		return SocketDirIn("", nameLen)
	}
	return SocketDirIn(filepath.Dir(address), nameLen)
}

// SocketDirIn is the shim socket directory under base: base/s, unless that
// leaves less than nameLen bytes of sun_path for a socket's name (or base
// is empty); then <tmp>/hull-shim, short enough for any shim. Shims of
// containerd 2.3+ name their sockets by a 64-character hash, hull's by a
// 32-character one.
func SocketDirIn(base string, nameLen int) string {
	dir := filepath.Join(base, "s")
	if base == "" || len(dir)+1+nameLen > maxSunPath {
		dir = filepath.Join(os.TempDir(), "hull-shim")
	}
	return dir
}

// IsSocketName reports whether name is one a shim gives its socket: hull's
// 32 or containerd 2.3+'s 64 hexadecimal digits. Sweeping stale sockets
// touches no other file, whatever else shares the directory.
func IsSocketName(name string) bool {
	if len(name) != hashLen && len(name) != 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// SocketPath is where the shim for (address, namespace, group) listens: a
// filesystem socket (never abstract, which any process in the network
// namespace could connect to) in dir, named by a hash so that it is short
// and the same for every member of a group. An empty dir, or one too long
// for sun_path, means SocketDir's choice.
func SocketPath(dir, address, namespace, group string) string {
	sum := sha256.Sum256([]byte(address + "\x00" + namespace + "\x00" + group))
	name := hex.EncodeToString(sum[:hashLen/2])
	if dir == "" || len(dir)+1+hashLen > maxSunPath {
		dir = SocketDir(address, hashLen)
	}
	return filepath.Join(dir, name)
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

// PrivateDir makes sure dir exists, belongs to this process's uid and is
// private to it (0700): a socket in a directory others can write could be
// replaced by theirs.
func PrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Geteuid() || fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("socket directory %s is not private to uid %d (mode %v): %w", dir, os.Geteuid(), fi.Mode().Perm(), errdefs.ErrPermissionDenied)
	}
	return nil
}

// Listen creates the socket at path with a private parent directory
// (0700, owned by us) and mode 0600. A stale socket nobody answers on is
// replaced; one that answers is an error wrapping ErrAlreadyExists.
func Listen(path string) (*net.UnixListener, error) {
	if err := PrivateDir(filepath.Dir(path)); err != nil {
		return nil, err
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
