package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/internal/cmdline"
	"github.com/sealroot/sealroot/server/config"
	"github.com/sealroot/sealroot/server/store"
)

// migrateFlags are migrate-store's flags; each overrides the
// configuration file's value.
type migrateFlags struct {
	config, stateDir          string
	endpoints                 []string
	certFile, keyFile, caFile string
	prefix                    string
	dryRun                    bool
	timeout                   time.Duration
}

func newMigrateStoreCmd(e *env) *cobra.Command {
	var f migrateFlags
	c := &cobra.Command{
		Use:   "migrate-store [--config FILE] [--state-dir DIR] [--endpoints URL,...] [--prefix P] [--dry-run]",
		Short: "Copy a stopped server's bbolt state (state_dir/state.db) into an empty etcd store",
		Long: `Copy a single server's state from its bbolt database (state_dir/state.db) into
the etcd store several servers share: groups, machines with their boot history
and boot logs, secrets (the age ciphertexts as stored), files, users, user-root
leases, DHCP leases and reservations. The server must be stopped (its database
is locked while it runs). The etcd store is the configuration's store section
(--config, default ` + DefaultConfig + `) or the flags, which override it; its
prefix must hold no record, else nothing is written. --dry-run prints what would
be copied and checks the target, writing nothing. Afterwards set store.backend
"etcd" in every server's configuration and start them. The keys in state_dir
(CA, server certificate, age identity of the secrets) are not in the store.`,
		Args: cmdline.ExactArgs(0),
		RunE: func(c *cobra.Command, _ []string) error {
			return migrateStore(c, e, f)
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.config, "config", "", "the server's configuration `file` (default "+DefaultConfig+" when it exists)")
	fl.StringVar(&f.stateDir, "state-dir", "", "the state `directory` holding state.db (default: the configuration's state_dir)")
	fl.StringSliceVar(&f.endpoints, "endpoints", nil, "etcd client `URLs` (default: the configuration's store.endpoints)")
	fl.StringVar(&f.certFile, "cert-file", "", "TLS client certificate `file` for etcd")
	fl.StringVar(&f.keyFile, "key-file", "", "key `file` of --cert-file")
	fl.StringVar(&f.caFile, "ca-file", "", "CA `file` of the etcd members' certificates")
	fl.StringVar(&f.prefix, "prefix", "", "etcd key `prefix` (default: the configuration's, else "+config.DefaultStorePrefix+")")
	fl.BoolVar(&f.dryRun, "dry-run", false, "print what would be copied, write nothing")
	fl.DurationVar(&f.timeout, "timeout", 30*time.Second, "how long to wait for etcd to answer the check of the target")
	return c
}

// migrateTarget resolves the source database and the etcd store from the
// configuration file and the flags.
func migrateTarget(c *cobra.Command, f migrateFlags) (string, store.EtcdConfig, error) {
	var ec store.EtcdConfig
	stateDir := f.stateDir
	path, explicit := f.config, f.config != ""
	if !explicit {
		path = DefaultConfig
	}
	cfg, err := config.LoadConfig(path)
	switch {
	case err == nil:
		if stateDir == "" {
			stateDir = cfg.StateDir
		}
		if sc := cfg.Store; sc != nil && sc.Backend == config.StoreEtcd {
			ec = store.EtcdConfig{Endpoints: sc.Endpoints, CertFile: sc.CertFile, KeyFile: sc.KeyFile, CAFile: sc.CAFile, Prefix: sc.Prefix}
		}
	case explicit || !errors.Is(err, fs.ErrNotExist):
		return "", ec, err
	}
	if len(f.endpoints) > 0 {
		ec.Endpoints = f.endpoints
	}
	for _, o := range []struct {
		dst *string
		v   string
	}{{&ec.CertFile, f.certFile}, {&ec.KeyFile, f.keyFile}, {&ec.CAFile, f.caFile}, {&ec.Prefix, f.prefix}} {
		if o.v != "" {
			*o.dst = o.v
		}
	}
	if ec.Prefix == "" {
		ec.Prefix = config.DefaultStorePrefix
	}
	switch {
	case stateDir == "":
		return "", ec, cmdline.Usagef(c, "no state directory: give --state-dir or a configuration with state_dir")
	case len(ec.Endpoints) == 0:
		return "", ec, cmdline.Usagef(c, "no etcd store: give --endpoints or a configuration whose store section has backend \"etcd\"")
	case !strings.HasPrefix(ec.Prefix, "/") || !strings.HasSuffix(ec.Prefix, "/"):
		return "", ec, cmdline.Usagef(c, "--prefix %q: want a path starting and ending with /", ec.Prefix)
	case (ec.CertFile == "") != (ec.KeyFile == ""):
		return "", ec, cmdline.Usagef(c, "--cert-file and --key-file go together")
	}
	return filepath.Join(stateDir, "state.db"), ec, nil
}

func migrateStore(c *cobra.Command, e *env, f migrateFlags) error {
	ctx := c.Context()
	dbPath, ec, err := migrateTarget(c, f)
	if err != nil {
		return err
	}
	if _, err := os.Stat(dbPath); err != nil {
		return fmt.Errorf("source: %w", err)
	}
	src, err := store.Open(dbPath, nil)
	if errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("source %s is in use: stop the server first (%w)", dbPath, err)
	}
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	defer src.Close()
	target := fmt.Sprintf("etcd %s prefix %s", strings.Join(ec.Endpoints, ","), ec.Prefix)
	if f.dryRun {
		n, err := store.Survey(ctx, src)
		if err != nil {
			return err
		}
		if err := checkTarget(ctx, target, ec, f.timeout); err != nil {
			return err
		}
		if e.JSON {
			return e.printJSON(n)
		}
		fmt.Fprintf(e.Stdout, "dry run: would copy %s\nfrom %s into %s (empty); nothing written\n", countsLine(n), safe(dbPath), safe(target))
		return nil
	}
	if err := checkTarget(ctx, target, ec, f.timeout); err != nil {
		return err
	}
	dst, err := store.OpenEtcd(ctx, ec, nil)
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	defer dst.Close()
	n, err := store.Migrate(ctx, src, dst)
	if errors.Is(err, store.ErrNotEmpty) {
		return migrateRefused(target, err)
	}
	if err != nil {
		return fmt.Errorf("%w (the target holds a partial copy: delete its prefix before trying again)", err)
	}
	if e.JSON {
		return e.printJSON(n)
	}
	fmt.Fprintf(e.Stdout, "copied %s\nfrom %s into %s\n", countsLine(n), safe(dbPath), safe(target))
	fmt.Fprintf(e.Stdout, "next: set store.backend \"etcd\" (these endpoints and prefix) in every server's configuration, then start them\n")
	return nil
}

// checkTarget fails unless the etcd store of ec answers within timeout
// (an unreachable cluster is an error, not a hang) and is empty.
func checkTarget(ctx context.Context, target string, ec store.EtcdConfig, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := store.CheckEtcdEmpty(ctx, ec)
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("no answer in %v: %w", timeout, err)
	}
	if err != nil {
		return migrateRefused(target, err)
	}
	return nil
}

func migrateRefused(target string, err error) error {
	if errors.Is(err, store.ErrNotEmpty) {
		return fmt.Errorf("target %s is not empty, nothing copied: %w", target, err)
	}
	return fmt.Errorf("target %s: %w", target, err)
}

func countsLine(n store.MigrateCounts) string {
	return fmt.Sprintf("%d machines (%d boot attempts, %d boot logs), %d secrets, %d groups, %d files, %d users, %d user-root leases, %d DHCP leases, %d DHCP reservations",
		n.Machines, n.Attempts, n.BootLogs, n.Secrets, n.Groups, n.Files, n.Users, n.UserLeases, n.Leases, n.Reservations)
}
