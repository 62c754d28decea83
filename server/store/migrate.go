package store

import (
	"context"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrNotEmpty is returned by Migrate when the destination prefix holds
// any record (its schema version aside).
var ErrNotEmpty = errors.New("destination store is not empty")

// MigrateCounts says how many records Migrate copied.
type MigrateCounts struct {
	Machines, Secrets, Groups, Files, Users, Leases, Reservations int
	// BootLogs and Attempts (boot history) of the machines; UserLeases
	// of per-user roots.
	BootLogs, Attempts, UserLeases int
}

// Migrate copies every record of the bbolt store src into the etcd store
// dst, which must hold no machine (ErrNotEmpty): groups first (machines
// name them), then machines with their seen fields, boot history and boot
// logs, secrets (ciphertext as stored) and files, users, user-root leases
// and DHCP leases and reservations. Machines get
// fresh versions from dst's counter; no exchange is in flight across a
// migration, since the server is stopped. Run it with the server stopped:
// src must not change meanwhile.
func Migrate(ctx context.Context, src *DB, dst *Etcd) (MigrateCounts, error) {
	var n MigrateCounts
	if err := checkEmpty(ctx, dst.client.KV, dst.keys.prefix); err != nil {
		return n, fmt.Errorf("migrate: %w", err)
	}
	if err := migrateKeyring(ctx, src, dst); err != nil {
		return n, err
	}
	groups, err := src.Groups(ctx)
	if err != nil {
		return n, fmt.Errorf("migrate: groups: %w", err)
	}
	for _, g := range groups {
		if err := dst.PutGroup(ctx, g); err != nil {
			return n, fmt.Errorf("migrate: group %s: %w", g.Name, err)
		}
		if n.Files, err = migrateFiles(ctx, src, dst, FileOwner{Group: g.Name}, n.Files); err != nil {
			return n, err
		}
		n.Groups++
	}
	ms, err := src.Machines(ctx)
	if err != nil {
		return n, fmt.Errorf("migrate: machines: %w", err)
	}
	for _, m := range ms {
		if err := migrateMachine(ctx, src, dst, m, &n); err != nil {
			return n, fmt.Errorf("migrate: machine %s: %w", m.ID, err)
		}
	}
	users, err := src.Users(ctx)
	if err != nil {
		return n, fmt.Errorf("migrate: users: %w", err)
	}
	for _, u := range users {
		if err := dst.PutUser(ctx, u, true); err != nil && !errors.Is(err, ErrUserExists) {
			return n, fmt.Errorf("migrate: user %s: %w", u.Name, err)
		}
		n.Users++
	}
	leases, err := src.UserLeases(ctx)
	if err != nil {
		return n, fmt.Errorf("migrate: user leases: %w", err)
	}
	for _, l := range leases {
		if err := dst.copyUserLease(ctx, l); err != nil {
			return n, fmt.Errorf("migrate: %w", err)
		}
		n.UserLeases++
	}
	return n, migrateDHCP(ctx, src, dst, &n)
}

func migrateMachine(ctx context.Context, src *DB, dst *Etcd, m *Machine, n *MigrateCounts) error {
	if err := dst.CreateMachine(ctx, m); err != nil {
		return err
	}
	n.Machines++
	n.Attempts += len(m.History)
	logs, err := src.BootLogs(ctx, m.ID)
	if err != nil {
		return err
	}
	for _, l := range logs {
		if err := dst.PutBootLog(ctx, m.ID, l); err != nil {
			return fmt.Errorf("boot log: %w", err)
		}
		n.BootLogs++
	}
	secrets, err := src.Secrets(ctx, m.ID)
	if err != nil {
		return err
	}
	for name, ct := range secrets {
		if err := dst.PutSecret(ctx, m.ID, name, ct); err != nil {
			return fmt.Errorf("secret %q: %w", name, err)
		}
		n.Secrets++
	}
	n.Files, err = migrateFiles(ctx, src, dst, FileOwner{Machine: m.ID}, n.Files)
	return err
}

func migrateFiles(ctx context.Context, src *DB, dst *Etcd, o FileOwner, count int) (int, error) {
	fs, err := src.Files(ctx, o)
	if err != nil {
		return count, fmt.Errorf("migrate: files of %s: %w", o, err)
	}
	for _, f := range fs {
		if err := dst.PutFile(ctx, o, f); err != nil {
			return count, fmt.Errorf("migrate: file %s of %s: %w", f.Path, o, err)
		}
		count++
	}
	return count, nil
}

func migrateDHCP(ctx context.Context, src *DB, dst *Etcd, n *MigrateCounts) error {
	leases, err := src.DHCPLeases(ctx)
	if err != nil {
		return fmt.Errorf("migrate: dhcp leases: %w", err)
	}
	for _, l := range leases {
		if err := dst.PutDHCPLease(ctx, l); err != nil {
			return fmt.Errorf("migrate: dhcp lease %v: %w", l.Addr, err)
		}
		n.Leases++
	}
	rs, err := src.DHCPReservations(ctx)
	if err != nil {
		return fmt.Errorf("migrate: dhcp reservations: %w", err)
	}
	for _, r := range rs {
		if _, err := dst.Reserve(ctx, r); err != nil {
			return fmt.Errorf("migrate: dhcp reservation %s: %w", r.MAC, err)
		}
		n.Reservations++
	}
	return nil
}

// copyUserLease stores l as it is, for Migrate: its machine must exist.
func (s *Etcd) copyUserLease(ctx context.Context, l *UserLease) error {
	if err := checkUserKey(l.User); err != nil {
		return err
	}
	return s.txn(ctx, func(tx *etcdTx) error {
		if _, ok, err := tx.get(s.keys.machine(l.MachineID)); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("lease of user %s: machine %s: %w", l.User, l.MachineID, ErrNotFound)
		}
		return s.putLease(tx, l)
	})
}

// checkEmpty fails with ErrNotEmpty unless no key under prefix but the
// schema and counter records (meta/) exists.
func checkEmpty(ctx context.Context, kv clientv3.KV, prefix string) error {
	all, err := kv.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("etcd range %s: %w", prefix, err)
	}
	meta, err := kv.Get(ctx, etcdKeys{prefix}.prefix+"meta/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("etcd range %s: %w", prefix, err)
	}
	if n := all.Count - meta.Count; n > 0 {
		return fmt.Errorf("%d keys under prefix %s: %w", n, prefix, ErrNotEmpty)
	}
	return nil
}

// CheckEtcdEmpty connects to the cluster of cfg and fails with
// ErrNotEmpty when cfg.Prefix holds records; it writes nothing (a dry
// run of a migration).
func CheckEtcdEmpty(ctx context.Context, cfg EtcdConfig) error {
	c, err := newEtcdClient(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	return checkEmpty(ctx, c.KV, cfg.Prefix)
}

// Survey counts what Migrate would copy from src; it writes nothing.
func Survey(ctx context.Context, src *DB) (MigrateCounts, error) {
	var n MigrateCounts
	groups, err := src.Groups(ctx)
	if err != nil {
		return n, fmt.Errorf("survey: groups: %w", err)
	}
	owners := make([]FileOwner, 0, len(groups))
	for _, g := range groups {
		owners = append(owners, FileOwner{Group: g.Name})
	}
	n.Groups = len(groups)
	ms, err := src.Machines(ctx)
	if err != nil {
		return n, fmt.Errorf("survey: machines: %w", err)
	}
	for _, m := range ms {
		n.Machines++
		n.Attempts += len(m.History)
		logs, err := src.BootLogs(ctx, m.ID)
		if err != nil {
			return n, fmt.Errorf("survey: machine %s: %w", m.ID, err)
		}
		n.BootLogs += len(logs)
		secrets, err := src.Secrets(ctx, m.ID)
		if err != nil {
			return n, fmt.Errorf("survey: machine %s: %w", m.ID, err)
		}
		n.Secrets += len(secrets)
		owners = append(owners, FileOwner{Machine: m.ID})
	}
	for _, o := range owners {
		fs, err := src.Files(ctx, o)
		if err != nil {
			return n, fmt.Errorf("survey: files of %s: %w", o, err)
		}
		n.Files += len(fs)
	}
	users, err := src.Users(ctx)
	if err != nil {
		return n, fmt.Errorf("survey: users: %w", err)
	}
	n.Users = len(users)
	leases, err := src.UserLeases(ctx)
	if err != nil {
		return n, fmt.Errorf("survey: user leases: %w", err)
	}
	n.UserLeases = len(leases)
	dl, err := src.DHCPLeases(ctx)
	if err != nil {
		return n, fmt.Errorf("survey: dhcp leases: %w", err)
	}
	n.Leases = len(dl)
	rs, err := src.DHCPReservations(ctx)
	if err != nil {
		return n, fmt.Errorf("survey: dhcp reservations: %w", err)
	}
	n.Reservations = len(rs)
	return n, nil
}
