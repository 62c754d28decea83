// Package storemigrate is `sealroot migrate-store`: it moves a stopped
// server's bbolt state into an empty etcd store (store.Migrate), or with
// DryRun counts what would move (store.Survey) and checks the target,
// writing nothing. The CLI calls it without importing the store's records.
package storemigrate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/sealroot/sealroot/server/store"
)

// Errors Run wraps.
var (
	// ErrNotEmpty: the target prefix holds records; nothing was written.
	ErrNotEmpty = store.ErrNotEmpty
	// ErrInUse: the source database is locked by a running server.
	ErrInUse = store.ErrLocked
)

// Options are what to move where.
type Options struct {
	DBPath string // the source: a server's state_dir/state.db
	// The target etcd store, as the configuration's store section.
	Endpoints                 []string
	CertFile, KeyFile, CAFile string
	Prefix                    string
	DryRun                    bool          // count and check only
	Timeout                   time.Duration // bound on the target's first answer; 0: 30 s
}

// Counts says how many records were (or, in a dry run, would be) copied.
type Counts struct {
	Machines     int `json:"machines"`
	Attempts     int `json:"boot_attempts"`
	BootLogs     int `json:"boot_logs"`
	Secrets      int `json:"secrets"`
	Groups       int `json:"groups"`
	Files        int `json:"files"`
	Users        int `json:"users"`
	UserLeases   int `json:"user_leases"`
	DHCPLeases   int `json:"dhcp_leases"`
	Reservations int `json:"dhcp_reservations"`
}

func countsOf(n store.MigrateCounts) Counts {
	return Counts{Machines: n.Machines, Attempts: n.Attempts, BootLogs: n.BootLogs, Secrets: n.Secrets, Groups: n.Groups,
		Files: n.Files, Users: n.Users, UserLeases: n.UserLeases, DHCPLeases: n.Leases, Reservations: n.Reservations}
}

// String is the counts in one line.
func (n Counts) String() string {
	return fmt.Sprintf("%d machines (%d boot attempts, %d boot logs), %d secrets, %d groups, %d files, %d users, %d user-root leases, %d DHCP leases, %d DHCP reservations",
		n.Machines, n.Attempts, n.BootLogs, n.Secrets, n.Groups, n.Files, n.Users, n.UserLeases, n.DHCPLeases, n.Reservations)
}

// Target names the etcd store of o for messages.
func (o Options) Target() string {
	return fmt.Sprintf("etcd %s prefix %s", strings.Join(o.Endpoints, ","), o.Prefix)
}

// Run moves (or with DryRun surveys) o.DBPath into the etcd store of o.
// A target that does not answer within o.Timeout, or holds records, is
// refused before anything is written.
func Run(ctx context.Context, o Options) (Counts, error) {
	if _, err := os.Stat(o.DBPath); err != nil {
		return Counts{}, fmt.Errorf("source: %w", err)
	}
	src, err := store.Open(o.DBPath, nil)
	if errors.Is(err, store.ErrLocked) {
		return Counts{}, fmt.Errorf("source %s is in use: stop the server first (%w)", o.DBPath, err)
	}
	if err != nil {
		return Counts{}, fmt.Errorf("source: %w", err)
	}
	defer src.Close()
	ec := store.EtcdConfig{Endpoints: o.Endpoints, CertFile: o.CertFile, KeyFile: o.KeyFile, CAFile: o.CAFile, Prefix: o.Prefix}
	if err := checkTarget(ctx, o, ec); err != nil {
		return Counts{}, err
	}
	if o.DryRun {
		n, err := store.Survey(ctx, src)
		return countsOf(n), err
	}
	dst, err := store.OpenEtcd(ctx, ec, nil)
	if err != nil {
		return Counts{}, fmt.Errorf("target: %w", err)
	}
	defer dst.Close()
	n, err := store.Migrate(ctx, src, dst)
	if errors.Is(err, store.ErrNotEmpty) {
		return countsOf(n), refused(o, err)
	}
	if err != nil {
		return countsOf(n), fmt.Errorf("%w (the target holds a partial copy: delete its prefix before trying again; the source is unchanged)", err)
	}
	return countsOf(n), nil
}

// checkTarget fails unless the etcd store answers within o.Timeout (an
// unreachable cluster is an error, not a hang) and is empty.
func checkTarget(ctx context.Context, o Options, ec store.EtcdConfig) error {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := store.CheckEtcdEmpty(ctx, ec)
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("no answer in %v: %w", timeout, err)
	}
	if err != nil {
		return refused(o, err)
	}
	return nil
}

func refused(o Options, err error) error {
	if errors.Is(err, store.ErrNotEmpty) {
		return fmt.Errorf("target %s is not empty, nothing copied: %w", o.Target(), err)
	}
	return fmt.Errorf("target %s: %w", o.Target(), err)
}
