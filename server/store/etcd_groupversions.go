package store

import (
	"fmt"
	"strconv"
	"strings"
)

// A group's root, menu or files change what its members' releases are
// decided on, so their Version must change with them. bbolt gives every
// member a new version in the transaction that changes the group; on etcd
// that would be one write (and one compare) per member, and etcd refuses a
// transaction of more than 128 operations (--max-txn-ops), so a group of
// a hundred machines could not be changed at all. Instead the group gets a
// version of its own, from the same counter as the machines:
//
//	<p>group_versions/<name> -> the group's last version
//
// and a member's Version is the larger of its record's and its group's.
// The counter only grows, so any change of either gives the member a
// Version it never had, and every transaction that reads a member reads
// its group's version key too: a group change commits against it like a
// change of the record itself.

func (k etcdKeys) groupVersions() string        { return k.prefix + "group_versions/" }
func (k etcdKeys) groupVersion(n string) string { return k.groupVersions() + n }

// bumpGroup gives group name a new version inside tx.
func (s *Etcd) bumpGroup(tx *etcdTx, name string) error {
	v, err := tx.nextSeq(s.keys.seq())
	if err != nil {
		return fmt.Errorf("group %s: %w", name, err)
	}
	tx.put(s.keys.groupVersion(name), []byte(strconv.FormatUint(v, 10)))
	return nil
}

// applyGroupVersion raises m.Version to its group's version, read in tx.
func (s *Etcd) applyGroupVersion(tx *etcdTx, m *Machine) error {
	if m.Group == "" {
		return nil
	}
	v, ok, err := tx.get(s.keys.groupVersion(m.Group))
	if err != nil || !ok {
		return err
	}
	return raiseVersion(m, m.Group, v)
}

// groupVersionsOf returns every group's version, read in tx.
func (s *Etcd) groupVersionsOf(tx *etcdTx) (map[string][]byte, error) {
	kvs, err := tx.scan(s.keys.groupVersions())
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(kvs))
	for _, e := range kvs {
		out[strings.TrimPrefix(e.key, s.keys.groupVersions())] = e.value
	}
	return out, nil
}

func raiseVersion(m *Machine, group string, v []byte) error {
	n, err := strconv.ParseUint(string(v), 10, 64)
	if err != nil {
		return fmt.Errorf("version of group %s %q: %w", group, v, ErrCorrupt)
	}
	m.Version = max(m.Version, n)
	return nil
}
