package store

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/sealroot/sealroot/wire"
)

// Group implements Store.
func (s *Etcd) Group(ctx context.Context, name string) (*Group, error) {
	if err := checkGroupName(name); err != nil {
		return nil, err
	}
	var g *Group
	err := s.view(ctx, func(tx *etcdTx) error {
		v, ok, err := tx.get(s.keys.group(name))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("group %s: %w", name, ErrNotFound)
		}
		g, err = decodeGroup(v)
		return err
	})
	return g, err
}

// Groups implements Store.
func (s *Etcd) Groups(ctx context.Context) ([]*Group, error) {
	var out []*Group
	err := s.view(ctx, func(tx *etcdTx) error {
		kvs, err := tx.scan(s.keys.groups())
		for _, e := range kvs {
			g, err := decodeGroup(e.value)
			if err != nil {
				return err
			}
			out = append(out, g)
		}
		return err
	})
	return out, err
}

// PutGroup implements Store: the group and its new version (its
// members' Version, see bumpGroup) are one transaction of a few
// operations, whatever the number of members.
func (s *Etcd) PutGroup(ctx context.Context, g *Group) error {
	if !validGroupName(g.Name) {
		return fmt.Errorf("group name %q: %w", g.Name, ErrBadGroupName)
	}
	v, err := json.Marshal(g)
	if err != nil {
		return err
	}
	return s.txn(ctx, func(tx *etcdTx) error {
		tx.put(s.keys.group(g.Name), v)
		return s.bumpGroup(tx, g.Name)
	})
}

// UpdateGroup implements Store: fn runs on the group read at one
// revision; the result commits only if the group is unchanged since, else
// fn runs again on the fresh record.
func (s *Etcd) UpdateGroup(ctx context.Context, name string, fn func(g *Group, found bool) error) (*Group, error) {
	if !validGroupName(name) {
		return nil, fmt.Errorf("group name %q: %w", name, ErrBadGroupName)
	}
	var out *Group
	err := s.txn(ctx, func(tx *etcdTx) error {
		g, found := &Group{Name: name}, false
		v, ok, err := tx.get(s.keys.group(name))
		if err != nil {
			return err
		}
		if ok {
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
		buf, err := json.Marshal(g)
		if err != nil {
			return err
		}
		tx.put(s.keys.group(name), buf)
		out = g
		return s.bumpGroup(tx, name)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteGroup implements Store.
func (s *Etcd) DeleteGroup(ctx context.Context, name string) error {
	if err := checkGroupName(name); err != nil {
		return err
	}
	return s.txn(ctx, func(tx *etcdTx) error {
		if _, ok, err := tx.get(s.keys.group(name)); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("group %s: %w", name, ErrNotFound)
		}
		members, err := s.groupMembers(tx, name)
		if err != nil {
			return err
		}
		if len(members) > 0 {
			return fmt.Errorf("group %s: %d machines: %w", name, len(members), ErrGroupInUse)
		}
		tx.delPrefix(s.keys.files([]byte("group:" + name)))
		tx.del(s.keys.group(name))
		tx.del(s.keys.groupVersion(name))
		return nil
	})
}

func checkSecretName(name string) error {
	if name == "" || len(name) > maxSecretNameLen {
		return fmt.Errorf("invalid secret name of %d bytes", len(name))
	}
	return nil
}

// PutSecret implements Store; the ciphertext is stored as given.
func (s *Etcd) PutSecret(ctx context.Context, machineID, name string, ciphertext []byte) error {
	if err := checkID(machineID); err != nil {
		return err
	}
	if err := checkSecretName(name); err != nil {
		return fmt.Errorf("put secret: %w", err)
	}
	return s.txn(ctx, func(tx *etcdTx) error {
		tx.put(s.keys.secrets(machineID)+name, ciphertext)
		if err := s.bumpVersion(tx, machineID); err != nil {
			return fmt.Errorf("put secret %q: %w", name, err)
		}
		return nil
	})
}

// Secret implements Store.
func (s *Etcd) Secret(ctx context.Context, machineID, name string) ([]byte, error) {
	if err := checkID(machineID); err != nil {
		return nil, err
	}
	var out []byte
	err := s.view(ctx, func(tx *etcdTx) error {
		var ok bool
		var err error
		if name != "" {
			out, ok, err = tx.get(s.keys.secrets(machineID) + name)
		}
		if err == nil && !ok {
			err = fmt.Errorf("secret %q of machine %s: %w", name, machineID, ErrNotFound)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Secrets implements Store.
func (s *Etcd) Secrets(ctx context.Context, machineID string) (map[string][]byte, error) {
	if err := checkID(machineID); err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	err := s.view(ctx, func(tx *etcdTx) error {
		if _, ok, err := tx.get(s.keys.machine(machineID)); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("secrets of machine %s: %w", machineID, ErrNotFound)
		}
		kvs, err := tx.scan(s.keys.secrets(machineID))
		for _, e := range kvs {
			out[strings.TrimPrefix(e.key, s.keys.secrets(machineID))] = e.value
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteSecret implements Store.
func (s *Etcd) DeleteSecret(ctx context.Context, machineID, name string) error {
	if err := checkID(machineID); err != nil {
		return err
	}
	return s.txn(ctx, func(tx *etcdTx) error {
		k := s.keys.secrets(machineID) + name
		if _, ok, err := tx.get(k); err != nil {
			return err
		} else if !ok || name == "" {
			return fmt.Errorf("delete secret %q of machine %s: %w", name, machineID, ErrNotFound)
		}
		tx.del(k)
		if err := s.bumpVersion(tx, machineID); err != nil {
			return fmt.Errorf("delete secret %q: %w", name, err)
		}
		return nil
	})
}

// fileOwnerExists fails with ErrNotFound unless o's record exists.
func (s *Etcd) fileOwnerExists(tx *etcdTx, o FileOwner) error {
	k := s.keys.machine(o.Machine)
	if o.Group != "" {
		k = s.keys.group(o.Group)
	}
	_, ok, err := tx.get(k)
	if err == nil && !ok {
		err = fmt.Errorf("%s: %w", o, ErrNotFound)
	}
	return err
}

// PutFile implements FileStore; the limits are decided against the
// owner's files inside the transaction that stores f.
func (s *Etcd) PutFile(ctx context.Context, owner FileOwner, f *File) error {
	key, err := owner.key()
	if err != nil {
		return err
	}
	if err := checkFile(f); err != nil {
		return fmt.Errorf("put file of %s: %w", owner, err)
	}
	v, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("put file %s of %s: %w", f.Path, owner, err)
	}
	return s.txn(ctx, func(tx *etcdTx) error {
		if err := s.fileOwnerExists(tx, owner); err != nil {
			return fmt.Errorf("put file %s: %w", f.Path, err)
		}
		kvs, err := tx.scan(s.keys.files(key))
		if err != nil {
			return err
		}
		if err := checkFileLimits(kvs, f); err != nil {
			return fmt.Errorf("put file %s of %s: %w", f.Path, owner, err)
		}
		tx.put(s.keys.files(key)+f.Path, v)
		return s.bumpOwner(tx, owner)
	})
}

// checkFileLimits is checkLimits over an etcd range.
func checkFileLimits(kvs []kv, f *File) error {
	count, total := 1, len(f.Content)
	for _, e := range kvs {
		old, err := decodeFile(e.value)
		if err != nil {
			return err
		}
		p := old.Path
		if p == f.Path {
			continue
		}
		if strings.HasPrefix(f.Path, p+"/") || strings.HasPrefix(p, f.Path+"/") {
			return fmt.Errorf("clashes with file %s (one would be a directory of the other): %w", p, ErrFilesLimit)
		}
		count++
		total += len(old.Content)
	}
	switch {
	case count > wire.MaxFiles:
		return fmt.Errorf("%d files, at most %d: %w", count, wire.MaxFiles, ErrFilesLimit)
	case total > wire.MaxFilesTotal:
		return fmt.Errorf("%d bytes of files, at most %d: %w", total, wire.MaxFilesTotal, ErrFilesLimit)
	}
	return nil
}

func (s *Etcd) bumpOwner(tx *etcdTx, o FileOwner) error {
	if o.Group != "" {
		return s.bumpGroup(tx, o.Group)
	}
	if err := s.bumpVersion(tx, o.Machine); err != nil {
		return fmt.Errorf("files of %s: %w", o, err)
	}
	return nil
}

// Files implements FileStore.
func (s *Etcd) Files(ctx context.Context, owner FileOwner) ([]*File, error) {
	key, err := owner.key()
	if err != nil {
		return nil, err
	}
	var out []*File
	err = s.view(ctx, func(tx *etcdTx) error {
		if err := s.fileOwnerExists(tx, owner); err != nil {
			return fmt.Errorf("files: %w", err)
		}
		kvs, err := tx.scan(s.keys.files(key))
		for _, e := range kvs {
			f, err := decodeFile(e.value)
			if err != nil {
				return err
			}
			out = append(out, f)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteFile implements FileStore.
func (s *Etcd) DeleteFile(ctx context.Context, owner FileOwner, p string) error {
	key, err := owner.key()
	if err != nil {
		return err
	}
	return s.txn(ctx, func(tx *etcdTx) error {
		k := s.keys.files(key) + p
		if _, ok, err := tx.get(k); err != nil {
			return err
		} else if !ok || p == "" {
			return fmt.Errorf("delete file %s of %s: %w", p, owner, ErrNotFound)
		}
		tx.del(k)
		return s.bumpOwner(tx, owner)
	})
}

// PutUser implements UserStore.
func (s *Etcd) PutUser(ctx context.Context, u *User, create bool) error {
	if err := checkUserKey(u.Name); err != nil {
		return err
	}
	return s.txn(ctx, func(tx *etcdTx) error {
		k := s.keys.users() + u.Name
		old, ok, err := tx.get(k)
		if err != nil {
			return err
		}
		v, err := userRecord(u, old, ok, create)
		if err != nil {
			return err
		}
		tx.put(k, v)
		return nil
	})
}

// User implements UserStore.
func (s *Etcd) User(ctx context.Context, name string) (*User, error) {
	if err := checkUserKey(name); err != nil {
		return nil, err
	}
	var u *User
	err := s.view(ctx, func(tx *etcdTx) error {
		v, ok, err := tx.get(s.keys.users() + name)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("user %s: %w", name, ErrNotFound)
		}
		u = &User{}
		return json.Unmarshal(v, u)
	})
	return u, err
}

// Users implements UserStore.
func (s *Etcd) Users(ctx context.Context) ([]*User, error) {
	var out []*User
	err := s.view(ctx, func(tx *etcdTx) error {
		kvs, err := tx.scan(s.keys.users())
		for _, e := range kvs {
			u := &User{}
			if err := json.Unmarshal(e.value, u); err != nil {
				return fmt.Errorf("user %s: %w", e.key, err)
			}
			out = append(out, u)
		}
		return err
	})
	return out, err
}

// DeleteUser implements UserStore.
func (s *Etcd) DeleteUser(ctx context.Context, name string) error {
	if err := checkUserKey(name); err != nil {
		return err
	}
	return s.txn(ctx, func(tx *etcdTx) error {
		k := s.keys.users() + name
		if _, ok, err := tx.get(k); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("user %s: %w", name, ErrNotFound)
		}
		tx.del(k)
		return nil
	})
}

// DHCPLeases returns every stored lease (shared by every server).
func (s *Etcd) DHCPLeases(ctx context.Context) ([]DHCPLease, error) {
	var out []DHCPLease
	err := s.view(ctx, func(tx *etcdTx) error {
		kvs, err := tx.scan(s.keys.leases())
		for _, e := range kvs {
			var l DHCPLease
			if err := json.Unmarshal(e.value, &l); err != nil {
				return fmt.Errorf("dhcp lease %s: %w", e.key, ErrCorrupt)
			}
			out = append(out, l)
		}
		return err
	})
	return out, err
}

// PutDHCPLease records l, replacing the record of its address and any
// other record of its MAC, in one transaction.
func (s *Etcd) PutDHCPLease(ctx context.Context, l DHCPLease) error {
	return s.UpdateDHCPLeases(ctx, func([]DHCPLease) ([]DHCPLease, error) { return []DHCPLease{l}, nil })
}

// UpdateDHCPLeases calls fn with every lease and records the leases it
// returns, in one etcd transaction that commits only if no lease was
// written since the read (see DHCPStore): two servers deciding on the
// same address at once each see the other's lease or retry.
func (s *Etcd) UpdateDHCPLeases(ctx context.Context, fn func([]DHCPLease) ([]DHCPLease, error)) error {
	return s.txn(ctx, func(tx *etcdTx) error {
		kvs, err := tx.scan(s.keys.leases())
		if err != nil {
			return err
		}
		ls := make([]DHCPLease, 0, len(kvs))
		for _, e := range kvs {
			var l DHCPLease
			if err := json.Unmarshal(e.value, &l); err != nil {
				return fmt.Errorf("dhcp lease %s: %w", e.key, ErrCorrupt)
			}
			ls = append(ls, l)
		}
		puts, err := fn(ls)
		if err != nil {
			return err
		}
		cur := make(map[netip.Addr]string, len(ls)) // address -> MAC, as written so far
		for _, l := range ls {
			cur[l.Addr] = l.MAC
		}
		for _, l := range puts {
			b, err := leaseJSON(l)
			if err != nil {
				return err
			}
			for a, mac := range cur {
				if l.MAC != "" && mac == l.MAC && a != l.Addr {
					tx.del(s.keys.leases() + a.String())
					delete(cur, a)
				}
			}
			cur[l.Addr] = l.MAC
			tx.put(s.keys.leases()+l.Addr.String(), b)
		}
		return nil
	})
}

// DHCPReservations returns every reservation.
func (s *Etcd) DHCPReservations(ctx context.Context) ([]DHCPReservation, error) {
	var out []DHCPReservation
	err := s.view(ctx, func(tx *etcdTx) error {
		kvs, err := tx.scan(s.keys.reservations())
		for _, e := range kvs {
			var r DHCPReservation
			if err := json.Unmarshal(e.value, &r); err != nil {
				return fmt.Errorf("dhcp reservation %s: %w", e.key, ErrCorrupt)
			}
			out = append(out, r)
		}
		return err
	})
	return out, err
}

// Reserve gives r.MAC the address r.Addr; ErrReserved when another MAC
// holds the address, decided in the transaction that stores it.
func (s *Etcd) Reserve(ctx context.Context, r DHCPReservation) (*DHCPReservation, error) {
	hw, err := net.ParseMAC(r.MAC)
	if err != nil || len(hw) != 6 || !r.Addr.Is4() {
		return nil, fmt.Errorf("reservation %q %v: %w", r.MAC, r.Addr, ErrBadReservation)
	}
	r.MAC = hw.String()
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	err = s.txn(ctx, func(tx *etcdTx) error {
		kvs, err := tx.scan(s.keys.reservations())
		if err != nil {
			return err
		}
		for _, e := range kvs {
			var other DHCPReservation
			if json.Unmarshal(e.value, &other) == nil && other.Addr == r.Addr && other.MAC != r.MAC {
				return fmt.Errorf("%v is reserved for %s: %w", r.Addr, other.MAC, ErrReserved)
			}
		}
		tx.put(s.keys.reservations()+r.MAC, b)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// Unreserve removes the reservation of mac.
func (s *Etcd) Unreserve(ctx context.Context, mac string) error {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return fmt.Errorf("reservation %q: %w", mac, ErrBadReservation)
	}
	return s.txn(ctx, func(tx *etcdTx) error {
		k := s.keys.reservations() + hw.String()
		if _, ok, err := tx.get(k); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("reservation %s: %w", hw, ErrNotFound)
		}
		tx.del(k)
		return nil
	})
}
