package oci

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hullrt/hull/core/containers"
)

// userDB is the content of a root filesystem's /etc/passwd and /etc/group;
// a missing file is an empty list, as for an image that has none.
type userDB struct {
	passwd []passwdEntry
	groups []groupEntry
}

// loadUserDB reads /etc/passwd and /etc/group below root, and nothing else.
func loadUserDB(root string) (*userDB, error) {
	db := &userDB{}
	data, err := readRootFile(root, "/etc/passwd")
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
	case err != nil:
		return nil, err
	default:
		if db.passwd, err = parsePasswd(bytes.NewReader(data)); err != nil {
			return nil, fmt.Errorf("parse /etc/passwd: %w", err)
		}
	}
	data, err = readRootFile(root, "/etc/group")
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
	case err != nil:
		return nil, err
	default:
		if db.groups, err = parseGroup(bytes.NewReader(data)); err != nil {
			return nil, fmt.Errorf("parse /etc/group: %w", err)
		}
	}
	return db, nil
}

func (db *userDB) userByName(name string) (passwdEntry, bool) {
	for _, e := range db.passwd {
		if e.Name == name {
			return e, true
		}
	}
	return passwdEntry{}, false
}

func (db *userDB) userByID(uid uint32) (passwdEntry, bool) {
	for _, e := range db.passwd {
		if e.UID == uid {
			return e, true
		}
	}
	return passwdEntry{}, false
}

func (db *userDB) groupByName(name string) (groupEntry, bool) {
	for _, g := range db.groups {
		if g.Name == name {
			return g, true
		}
	}
	return groupEntry{}, false
}

// supplementaryGroups returns the gids of the groups that list user name as
// a member, in file order, without duplicates and without primary (which
// the process has anyway).
func (db *userDB) supplementaryGroups(name string, primary uint32) []uint32 {
	if name == "" {
		return nil
	}
	var out []uint32
	seen := map[uint32]bool{primary: true}
	for _, g := range db.groups {
		if seen[g.GID] {
			continue
		}
		for _, m := range g.Members {
			if m == name {
				out = append(out, g.GID)
				seen[g.GID] = true
				break
			}
		}
	}
	return out
}

// resolve turns a parsed user string into the process user: uid, gid and
// the supplementary groups of the user from /etc/group.
//
//   - A user name must be in /etc/passwd; otherwise it is a NotFound error
//     (never a fallback to root).
//   - A numeric uid need not be: its gid is then 0 (as in Docker) and it has
//     no supplementary groups. If it is, its passwd entry gives the
//     default gid and the name whose groups apply.
//   - A group, if given, replaces the primary gid; a group name must be in
//     /etc/group.
func (db *userDB) resolve(us userSpec) (specs.User, error) {
	var u specs.User
	var name string
	if us.User.Numeric {
		u.UID = us.User.ID
		if e, ok := db.userByID(us.User.ID); ok {
			u.GID = e.GID
			name = e.Name
		}
	} else {
		e, ok := db.userByName(us.User.Name)
		if !ok {
			return specs.User{}, fmt.Errorf("user %q not found in /etc/passwd: %w", us.User.Name, errdefs.ErrNotFound)
		}
		u.UID, u.GID, name = e.UID, e.GID, e.Name
	}
	if us.HasGroup {
		if us.Group.Numeric {
			u.GID = us.Group.ID
		} else {
			g, ok := db.groupByName(us.Group.Name)
			if !ok {
				return specs.User{}, fmt.Errorf("group %q not found in /etc/group: %w", us.Group.Name, errdefs.ErrNotFound)
			}
			u.GID = g.GID
		}
	}
	u.AdditionalGids = db.supplementaryGroups(name, u.GID)
	return u, nil
}

// withUserDB loads the container's user database and calls fn with it.
//
// Within one ApplyOpts the database of a snapshot is read once: the user
// and the groups are options of their own, and each read mounts the
// snapshot, which the options never change.
func withUserDB(ctx context.Context, client Client, c *containers.Container, s *Spec, fn func(*userDB) error) error {
	cache, _ := ctx.Value(userDBCacheKey{}).(*userDBCache)
	var key string
	if cache != nil && c != nil && c.SnapshotKey != "" {
		key = c.Snapshotter + "\x00" + c.SnapshotKey
		if db, ok := cache.dbs[key]; ok {
			return fn(db)
		}
	}
	return withRootfs(ctx, client, c, s, func(root string) error {
		db, err := loadUserDB(root)
		if err != nil {
			return err
		}
		if key != "" {
			cache.dbs[key] = db
		}
		return fn(db)
	})
}

// userDBCacheKey carries a *userDBCache in the context of one ApplyOpts.
type userDBCacheKey struct{}

// userDBCache holds the user databases read during one ApplyOpts, by
// snapshotter and snapshot key. Options run one after another, so it
// needs no lock.
type userDBCache struct{ dbs map[string]*userDB }

// withUserDBCache returns ctx with a new cache, unless it has one.
func withUserDBCache(ctx context.Context) context.Context {
	if _, ok := ctx.Value(userDBCacheKey{}).(*userDBCache); ok {
		return ctx
	}
	return context.WithValue(ctx, userDBCacheKey{}, &userDBCache{dbs: map[string]*userDB{}})
}

func ensureProcess(s *Spec) {
	if s.Process == nil {
		s.Process = &specs.Process{}
	}
}

// setUser resolves user against the container's rootfs and sets the
// process user to it, supplementary groups included.
func setUser(ctx context.Context, client Client, c *containers.Container, s *Spec, user string) error {
	us, err := parseUserSpec(user)
	if err != nil {
		return err
	}
	return withUserDB(ctx, client, c, s, func(db *userDB) error {
		u, err := db.resolve(us)
		if err != nil {
			return err
		}
		ensureProcess(s)
		// Umask and the like are not part of a user string; keep them.
		u.Umask = s.Process.User.Umask
		s.Process.User = u
		return nil
	})
}

// WithUser sets the process user from a user string as images and
// `docker run -u` write it: "name", "uid", "name:group", "uid:gid",
// "uid:group" or "name:gid". Names are resolved from the container's
// /etc/passwd and /etc/group, and the process always gets the user's
// supplementary groups from /etc/group, replacing any set before: a process
// without them could read files its groups are denied (CVE-2023-25173).
//
// An unknown name is a NotFound error; a negative id or one above 2^31-1 is
// an InvalidArgument error (such ids wrap to root in some runtimes).
// WithUser needs the container's rootfs: a snapshot, or an absolute root
// path in the spec; use WithUIDGID when there is none.
func WithUser(user string) SpecOpts {
	return func(ctx context.Context, client Client, c *containers.Container, s *Spec) error {
		return setUser(ctx, client, c, s, user)
	}
}

// WithUsername sets the process user to the user named name in the
// container's /etc/passwd, with its primary and supplementary groups. Unlike
// WithUser it never reads name as a number.
func WithUsername(name string) SpecOpts {
	return func(ctx context.Context, client Client, c *containers.Container, s *Spec) error {
		if name == "" {
			return fmt.Errorf("empty user name: %w", errdefs.ErrInvalidArgument)
		}
		return withUserDB(ctx, client, c, s, func(db *userDB) error {
			u, err := db.resolve(userSpec{User: idOrName{Name: name}})
			if err != nil {
				return err
			}
			ensureProcess(s)
			u.Umask = s.Process.User.Umask
			s.Process.User = u
			return nil
		})
	}
}

// WithUserID sets the process uid to uid, its gid to that of uid's entry
// in the container's /etc/passwd (0 if there is none) and its supplementary
// groups to that user's groups.
func WithUserID(uid uint32) SpecOpts {
	return func(ctx context.Context, client Client, c *containers.Container, s *Spec) error {
		if uid > maxID {
			return fmt.Errorf("uid %d is above %d: %w", uid, maxID, errdefs.ErrInvalidArgument)
		}
		return withUserDB(ctx, client, c, s, func(db *userDB) error {
			u, err := db.resolve(userSpec{User: idOrName{ID: uid, Numeric: true}})
			if err != nil {
				return err
			}
			ensureProcess(s)
			u.Umask = s.Process.User.Umask
			s.Process.User = u
			return nil
		})
	}
}

// WithUIDGID sets the process uid and gid without reading the rootfs, for
// containers that have none yet. It clears the supplementary groups, which
// belonged to whatever user was set before; add the new user's with
// WithAdditionalGIDs.
func WithUIDGID(uid, gid uint32) SpecOpts {
	return func(_ context.Context, _ Client, _ *containers.Container, s *Spec) error {
		if uid > maxID {
			return fmt.Errorf("uid %d is above %d: %w", uid, maxID, errdefs.ErrInvalidArgument)
		}
		if gid > maxID {
			return fmt.Errorf("gid %d is above %d: %w", gid, maxID, errdefs.ErrInvalidArgument)
		}
		ensureProcess(s)
		s.Process.User.UID = uid
		s.Process.User.GID = gid
		s.Process.User.AdditionalGids = nil
		return nil
	}
}

// WithAdditionalGIDs sets the process's supplementary groups to those of
// user (a name or a uid) in the container's /etc/group, leaving uid and gid
// as they are. An unknown user name is a NotFound error; a uid without a
// passwd entry has no groups.
func WithAdditionalGIDs(user string) SpecOpts {
	return func(ctx context.Context, client Client, c *containers.Container, s *Spec) error {
		who, err := parseIDOrName(user, "user")
		if err != nil {
			return err
		}
		return withUserDB(ctx, client, c, s, func(db *userDB) error {
			u, err := db.resolve(userSpec{User: who})
			if err != nil {
				return err
			}
			ensureProcess(s)
			// Exclude the process's own gid rather than the user's
			// passwd gid: that is the group it has already.
			var gids []uint32
			for _, g := range u.AdditionalGids {
				if g != s.Process.User.GID {
					gids = append(gids, g)
				}
			}
			if pe, ok := passwdOf(db, who); ok && pe.GID != s.Process.User.GID {
				// The user's primary group is one of its groups too.
				gids = append([]uint32{pe.GID}, gids...)
			}
			s.Process.User.AdditionalGids = gids
			return nil
		})
	}
}

func passwdOf(db *userDB, who idOrName) (passwdEntry, bool) {
	if who.Numeric {
		return db.userByID(who.ID)
	}
	return db.userByName(who.Name)
}
