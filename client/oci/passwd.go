package oci

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// maxID is the largest uid or gid hull accepts. The kernel's ids are 32-bit
// unsigned, but (uid_t)-1 means "unchanged" to setresuid and values above
// 2^31-1 turn negative in runtimes that hold them in an int32; rejecting
// them avoids a wrap to 0, i.e. root (CVE-2024-40635).
const maxID = math.MaxInt32

// maxUserFileSize bounds how much of /etc/passwd or /etc/group is read, so
// that an image cannot make the client allocate without limit.
const maxUserFileSize = 16 << 20

// passwdEntry is one valid line of /etc/passwd; only the fields hull uses.
type passwdEntry struct {
	Name string
	UID  uint32
	GID  uint32
}

// groupEntry is one valid line of /etc/group.
type groupEntry struct {
	Name    string
	GID     uint32
	Members []string
}

// parseID parses a uid or gid field strictly: decimal digits only, no sign,
// no spaces, at most maxID. A field that fails is never read as 0, so a
// malformed line cannot turn a user into root (CVE-2026-46680).
func parseID(s string) (uint32, bool) {
	if s == "" {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || v > maxID {
		return 0, false
	}
	return uint32(v), true
}

// readLines calls fn for each line of r that is not empty or a comment,
// with the trailing newline (and a CR) removed. It reads at most
// maxUserFileSize bytes and fails if there are more.
func readLines(r io.Reader, fn func(line string)) error {
	br := bufio.NewReader(io.LimitReader(r, maxUserFileSize+1))
	total := 0
	for {
		line, err := br.ReadString('\n')
		total += len(line)
		if total > maxUserFileSize {
			return fmt.Errorf("file is larger than %d bytes: %w", maxUserFileSize, errdefs.ErrInvalidArgument)
		}
		line = strings.TrimRight(line, "\r\n")
		if line != "" && !strings.HasPrefix(line, "#") {
			fn(line)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// validName reports whether a passwd or group name field is usable: not
// empty, and not a NIS compat entry ("+name", "-name") that refers to
// another database this parser does not read.
func validName(name string) bool {
	return name != "" && name[0] != '+' && name[0] != '-'
}

// parsePasswd parses /etc/passwd ("name:password:uid:gid:gecos:home:shell").
// Malformed lines (too few fields, an empty or invalid name, uid or gid) are
// skipped rather than failing the whole file, as libc does, but they never
// produce an entry.
func parsePasswd(r io.Reader) ([]passwdEntry, error) {
	var out []passwdEntry
	err := readLines(r, func(line string) {
		f := strings.Split(line, ":")
		if len(f) < 4 || !validName(f[0]) {
			return
		}
		uid, ok := parseID(f[2])
		if !ok {
			return
		}
		gid, ok := parseID(f[3])
		if !ok {
			return
		}
		out = append(out, passwdEntry{Name: f[0], UID: uid, GID: gid})
	})
	return out, err
}

// parseGroup parses /etc/group ("name:password:gid:member,member"), skipping
// malformed lines like parsePasswd.
func parseGroup(r io.Reader) ([]groupEntry, error) {
	var out []groupEntry
	err := readLines(r, func(line string) {
		f := strings.Split(line, ":")
		if len(f) < 3 || !validName(f[0]) {
			return
		}
		gid, ok := parseID(f[2])
		if !ok {
			return
		}
		g := groupEntry{Name: f[0], GID: gid}
		if len(f) > 3 {
			for _, m := range strings.Split(f[3], ",") {
				if m = strings.TrimSpace(m); m != "" {
					g.Members = append(g.Members, m)
				}
			}
		}
		out = append(out, g)
	})
	return out, err
}

// idOrName is one side of a user string: a number or a name.
type idOrName struct {
	Name    string
	ID      uint32
	Numeric bool
}

// userSpec is a parsed user string: "user" or "user:group".
type userSpec struct {
	User     idOrName
	Group    idOrName
	HasGroup bool
}

// parseIDOrName reads s as a number when it looks like one and as a name
// otherwise. Anything that looks numeric but is not a valid id (negative,
// too large) is an error rather than a name, so "-1" or "4294967296" can
// never be looked up and fall back to something else.
func parseIDOrName(s, what string) (idOrName, error) {
	if s == "" {
		return idOrName{}, fmt.Errorf("empty %s: %w", what, errdefs.ErrInvalidArgument)
	}
	if looksNumeric(s) {
		id, ok := parseID(s)
		if !ok {
			return idOrName{}, fmt.Errorf("%s %q is not a valid id (0 to %d): %w", what, s, maxID, errdefs.ErrInvalidArgument)
		}
		return idOrName{ID: id, Numeric: true}, nil
	}
	if strings.ContainsAny(s, ":\n\x00") {
		return idOrName{}, fmt.Errorf("%s %q is not a valid name: %w", what, s, errdefs.ErrInvalidArgument)
	}
	return idOrName{Name: s}, nil
}

// looksNumeric reports whether s is an optionally signed run of digits.
func looksNumeric(s string) bool {
	if s != "" && (s[0] == '-' || s[0] == '+') {
		s = s[1:]
	}
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parseUserSpec parses the user strings of WithUser and image configs:
// "name", "uid", "name:group", "uid:gid", "uid:group", "name:gid".
func parseUserSpec(s string) (userSpec, error) {
	user, group, hasGroup := strings.Cut(s, ":")
	var us userSpec
	var err error
	if us.User, err = parseIDOrName(user, "user"); err != nil {
		return userSpec{}, fmt.Errorf("user %q: %w", s, err)
	}
	if hasGroup {
		if us.Group, err = parseIDOrName(group, "group"); err != nil {
			return userSpec{}, fmt.Errorf("user %q: %w", s, err)
		}
		us.HasGroup = true
	}
	return us, nil
}
