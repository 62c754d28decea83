package store

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"

	bolt "go.etcd.io/bbolt"
)

// groupNamePattern is a group name: short, printable, no separators.
var groupNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// validGroupName reports whether name can name a group.
func validGroupName(name string) bool { return groupNamePattern.MatchString(name) }

// checkGroupName refuses a lookup of a name no group can have.
func checkGroupName(name string) error {
	if !validGroupName(name) {
		return fmt.Errorf("group %q: %w", name, ErrNotFound)
	}
	return nil
}

// Group returns the group with the given name, or ErrNotFound.
func (db *DB) Group(ctx context.Context, name string) (*Group, error) {
	if err := checkGroupName(name); err != nil {
		return nil, err
	}
	var g *Group
	err := db.view(ctx, func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketGroups).Get([]byte(name))
		if v == nil {
			return fmt.Errorf("group %s: %w", name, ErrNotFound)
		}
		var err error
		g, err = decodeGroup(v)
		return err
	})
	return g, err
}

// Groups returns every group, sorted by name.
func (db *DB) Groups(ctx context.Context) ([]*Group, error) {
	var out []*Group
	err := db.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGroups).ForEach(func(_, v []byte) error {
			g, err := decodeGroup(v)
			if err == nil {
				out = append(out, g)
			}
			return err
		})
	})
	return out, err
}

// PutGroup creates or replaces a group and gives its machines a new
// Version; a malformed name gives ErrBadGroupName.
func (db *DB) PutGroup(ctx context.Context, g *Group) error {
	if !validGroupName(g.Name) {
		return fmt.Errorf("group name %q: %w", g.Name, ErrBadGroupName)
	}
	return db.update(ctx, func(tx *bolt.Tx) error { return db.putGroup(tx, g) })
}

// UpdateGroup implements Store.
func (db *DB) UpdateGroup(ctx context.Context, name string, fn func(g *Group, found bool) error) (*Group, error) {
	if !validGroupName(name) {
		return nil, fmt.Errorf("group name %q: %w", name, ErrBadGroupName)
	}
	var out *Group
	err := db.update(ctx, func(tx *bolt.Tx) error {
		g, found := &Group{Name: name}, false
		if v := tx.Bucket(bucketGroups).Get([]byte(name)); v != nil {
			var err error
			if g, err = decodeGroup(v); err != nil {
				return err
			}
			found = true
		}
		if err := fn(g, found); err != nil {
			return err
		}
		if g.Name != name {
			return fmt.Errorf("update group %s: the update changed the name to %q", name, g.Name)
		}
		out = g
		return db.putGroup(tx, g)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// putGroup stores g and gives its members a new Version.
func (db *DB) putGroup(tx *bolt.Tx, g *Group) error {
	v, err := json.Marshal(g)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketGroups).Put([]byte(g.Name), v); err != nil {
		return err
	}
	members, err := groupMembers(tx, g.Name)
	if err != nil {
		return err
	}
	for _, id := range members {
		if err := db.bumpVersion(tx, id); err != nil {
			return fmt.Errorf("group %s: %w", g.Name, err)
		}
	}
	return nil
}

// groupMembers returns the IDs of the machines in group name.
func groupMembers(tx *bolt.Tx, name string) ([]string, error) {
	var ids []string
	err := tx.Bucket(bucketMachines).ForEach(func(k, v []byte) error {
		var m struct {
			Group string `json:"group"`
		}
		if err := json.Unmarshal(v, &m); err != nil {
			return fmt.Errorf("%w: machine record: %v", ErrCorrupt, err)
		}
		if m.Group == name {
			ids = append(ids, string(k))
		}
		return nil
	})
	return ids, err
}

// DeleteGroup removes a group unless a machine is in it.
func (db *DB) DeleteGroup(ctx context.Context, name string) error {
	if err := checkGroupName(name); err != nil {
		return err
	}
	return db.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketGroups)
		if b.Get([]byte(name)) == nil {
			return fmt.Errorf("group %s: %w", name, ErrNotFound)
		}
		members, err := groupMembers(tx, name)
		if err != nil {
			return err
		}
		if len(members) > 0 {
			return fmt.Errorf("group %s: %d machines: %w", name, len(members), ErrGroupInUse)
		}
		if err := deleteFiles(tx, FileOwner{Group: name}); err != nil {
			return fmt.Errorf("delete group %s: %w", name, err)
		}
		return b.Delete([]byte(name))
	})
}

func decodeGroup(v []byte) (*Group, error) {
	g := &Group{}
	if err := json.Unmarshal(v, g); err != nil {
		return nil, fmt.Errorf("%w: group record: %v", ErrCorrupt, err)
	}
	return g, nil
}
