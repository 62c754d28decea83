package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/internal/cmdline"
	"github.com/sealroot/sealroot/server/config"
	"github.com/sealroot/sealroot/server/storemigrate"
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
func migrateTarget(c *cobra.Command, f migrateFlags) (storemigrate.Options, error) {
	var o storemigrate.Options
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
			o = storemigrate.Options{Endpoints: sc.Endpoints, CertFile: sc.CertFile, KeyFile: sc.KeyFile, CAFile: sc.CAFile, Prefix: sc.Prefix}
		}
	case explicit || !errors.Is(err, fs.ErrNotExist):
		return o, err
	}
	if len(f.endpoints) > 0 {
		o.Endpoints = f.endpoints
	}
	for _, v := range []struct {
		dst *string
		v   string
	}{{&o.CertFile, f.certFile}, {&o.KeyFile, f.keyFile}, {&o.CAFile, f.caFile}, {&o.Prefix, f.prefix}} {
		if v.v != "" {
			*v.dst = v.v
		}
	}
	if o.Prefix == "" {
		o.Prefix = config.DefaultStorePrefix
	}
	switch {
	case stateDir == "":
		return o, cmdline.Usagef(c, "no state directory: give --state-dir or a configuration with state_dir")
	case len(o.Endpoints) == 0:
		return o, cmdline.Usagef(c, "no etcd store: give --endpoints or a configuration whose store section has backend \"etcd\"")
	case !strings.HasPrefix(o.Prefix, "/") || !strings.HasSuffix(o.Prefix, "/"):
		return o, cmdline.Usagef(c, "--prefix %q: want a path starting and ending with /", o.Prefix)
	case (o.CertFile == "") != (o.KeyFile == ""):
		return o, cmdline.Usagef(c, "--cert-file and --key-file go together")
	}
	o.DBPath, o.DryRun, o.Timeout = filepath.Join(stateDir, "state.db"), f.dryRun, f.timeout
	return o, nil
}

func migrateStore(c *cobra.Command, e *env, f migrateFlags) error {
	o, err := migrateTarget(c, f)
	if err != nil {
		return err
	}
	n, err := storemigrate.Run(c.Context(), o)
	if err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(n)
	}
	if o.DryRun {
		fmt.Fprintf(e.Stdout, "dry run: would copy %s\nfrom %s into %s (empty); nothing written\n", n, safe(o.DBPath), safe(o.Target()))
		return nil
	}
	fmt.Fprintf(e.Stdout, "copied %s\nfrom %s into %s\n", n, safe(o.DBPath), safe(o.Target()))
	fmt.Fprintf(e.Stdout, "next: set store.backend \"etcd\" (these endpoints and prefix) in every server's configuration, then start them\n")
	return nil
}
