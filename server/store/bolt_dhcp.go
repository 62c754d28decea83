package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	bolt "go.etcd.io/bbolt"
)

// DHCPLease is a full-mode DHCP lease: the address a MAC holds until
// Expiry. MAC "" is an address quarantined after a DECLINE or a probe
// that found it in use.
type DHCPLease struct {
	MAC    string     `json:"mac"`
	Addr   netip.Addr `json:"addr"`
	Expiry time.Time  `json:"expiry"`
}

// DHCPReservation gives a MAC a fixed address.
type DHCPReservation struct {
	MAC  string     `json:"mac"`
	Addr netip.Addr `json:"addr"`
}

// Errors of reservations.
var (
	// ErrReserved means the address is reserved for another MAC.
	ErrReserved = errors.New("address reserved for another MAC")
	// ErrBadReservation means a reservation's MAC or address is malformed.
	ErrBadReservation = errors.New("invalid DHCP reservation")
)

// DHCPLeases returns every stored lease.
func (db *DB) DHCPLeases(ctx context.Context) ([]DHCPLease, error) {
	var out []DHCPLease
	err := db.view(ctx, func(tx *bolt.Tx) error {
		var err error
		out, err = boltLeases(tx.Bucket(bucketLeases))
		return err
	})
	return out, err
}

func boltLeases(bk *bolt.Bucket) ([]DHCPLease, error) {
	var out []DHCPLease
	err := bk.ForEach(func(k, v []byte) error {
		var l DHCPLease
		if err := json.Unmarshal(v, &l); err != nil {
			return fmt.Errorf("dhcp lease %s: %w", k, ErrCorrupt)
		}
		out = append(out, l)
		return nil
	})
	return out, err
}

// PutDHCPLease records l, replacing the record of its address and any
// other record of its MAC.
func (db *DB) PutDHCPLease(ctx context.Context, l DHCPLease) error {
	return db.UpdateDHCPLeases(ctx, func([]DHCPLease) ([]DHCPLease, error) { return []DHCPLease{l}, nil })
}

// UpdateDHCPLeases calls fn with every lease and records the leases it
// returns, in one write transaction (see DHCPStore).
func (db *DB) UpdateDHCPLeases(ctx context.Context, fn func([]DHCPLease) ([]DHCPLease, error)) error {
	err := db.update(ctx, func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketLeases)
		ls, err := boltLeases(bk)
		if err != nil {
			return err
		}
		puts, err := fn(ls)
		if err != nil {
			return err
		}
		if len(puts) == 0 {
			return errNoLeaseChange // nothing to commit: no fsync
		}
		for _, l := range puts {
			if err := boltPutLease(bk, l); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, errNoLeaseChange) {
		return nil
	}
	return err
}

// errNoLeaseChange rolls back a lease decision that wrote nothing (a
// DISCOVER or a REQUEST of a lease still held): a boot storm's three
// exchanges per machine would otherwise each cost a commit.
var errNoLeaseChange = errors.New("no lease changed")

// boltPutLease writes l's record and deletes any other record of its MAC.
func boltPutLease(bk *bolt.Bucket, l DHCPLease) error {
	b, err := leaseJSON(l)
	if err != nil {
		return err
	}
	if l.MAC != "" {
		c := bk.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var old DHCPLease
			if json.Unmarshal(v, &old) == nil && old.MAC == l.MAC && old.Addr != l.Addr {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
	}
	return bk.Put([]byte(l.Addr.String()), b)
}

// DHCPReservations returns every reservation.
func (db *DB) DHCPReservations(ctx context.Context) ([]DHCPReservation, error) {
	var out []DHCPReservation
	err := db.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketReserved).ForEach(func(k, v []byte) error {
			var r DHCPReservation
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("dhcp reservation %s: %w", k, ErrCorrupt)
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

// Reserve gives r.MAC the address r.Addr, replacing the MAC's previous
// reservation; it fails with ErrReserved when another MAC holds the
// address. The MAC is stored in its canonical form.
func (db *DB) Reserve(ctx context.Context, r DHCPReservation) (*DHCPReservation, error) {
	hw, err := net.ParseMAC(r.MAC)
	if err != nil || len(hw) != 6 || !r.Addr.Is4() {
		return nil, fmt.Errorf("reservation %q %v: %w", r.MAC, r.Addr, ErrBadReservation)
	}
	r.MAC = hw.String()
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	err = db.update(ctx, func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketReserved)
		err := bk.ForEach(func(k, v []byte) error {
			var other DHCPReservation
			if json.Unmarshal(v, &other) == nil && other.Addr == r.Addr && other.MAC != r.MAC {
				return fmt.Errorf("%v is reserved for %s: %w", r.Addr, other.MAC, ErrReserved)
			}
			return nil
		})
		if err != nil {
			return err
		}
		return bk.Put([]byte(r.MAC), b)
	})
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// Unreserve removes the reservation of mac.
func (db *DB) Unreserve(ctx context.Context, mac string) error {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return fmt.Errorf("reservation %q: %w", mac, ErrBadReservation)
	}
	return db.update(ctx, func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketReserved)
		if bk.Get([]byte(hw.String())) == nil {
			return fmt.Errorf("reservation %s: %w", hw, ErrNotFound)
		}
		return bk.Delete([]byte(hw.String()))
	})
}

// WriteTo writes a consistent copy of the whole database to w (one read
// transaction: writers go on meanwhile); the copy opens with Open.
func (db *DB) WriteTo(w io.Writer) (int64, error) {
	var n int64
	err := db.bolt.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}
