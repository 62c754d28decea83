package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/internal/atomicfile"
	"github.com/sealroot/sealroot/internal/cmdline"
	"github.com/sealroot/sealroot/server/backup"
)

func newBackupCmd(e *env) *cobra.Command {
	var withRoots bool
	c := &cobra.Command{
		Use: "backup FILE [--with-roots]",
		Short: "Write a backup of the running server's state to FILE (mode 0600): store, keys (age identity, CA), " +
			"configuration, image and root records; with --with-roots also the machines' roots and their bases",
		Long: `Write a backup of the running server's state to FILE (mode 0600). It holds the
store, the keys (the age identity that decrypts every secret, the CA and its
key), the configuration, the audit log and the image and root records: keep
it as safe as the server itself.

--with-roots adds the machines' roots (volume disks and snapshots, sparse:
holes stay holes; NFS uppers with owners, modes, whiteouts and extended
attributes such as trusted.overlay.*) and the bases they are made on. Each
root is held still while it is copied: a root its machine is using (an
iSCSI session logged in, an active NFS export) or that is booting (attesting,
or given its root less than 2 minutes ago and not logged in yet) is left out
and named, with the reason; a boot that starts during the copy of its root
waits for it to end; power the machine off first to include it (a machine powered off
without logging out counts as running until the target's pings end its
session, about 15 s; an NFS machine until its tunnel peer has had no handshake
for 3 minutes). A root that is not in use is withdrawn for the copy; its
machine gets it back at its next boot.`,
		Args: cmdline.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			dst := args[0]
			tmp, err := os.CreateTemp(filepath.Dir(dst), ".sealroot-backup-")
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name())
			err = e.client().Backup(c.Context(), tmp, withRoots)
			if err == nil {
				err = tmp.Sync()
			}
			if err = errors.Join(err, tmp.Close()); err != nil {
				return err
			}
			if err := os.Rename(tmp.Name(), dst); err != nil {
				return err
			}
			if err := atomicfile.SyncDir(filepath.Dir(dst)); err != nil {
				return err
			}
			if e.JSON {
				return e.printJSON(map[string]string{"backup": dst})
			}
			_, err = fmt.Fprintf(e.Stdout, "wrote backup %s (it holds the server's keys: keep it as safe as the server)\n", safe(dst))
			if err != nil || !withRoots {
				return err
			}
			return printBackupRoots(e, dst)
		},
	}
	c.Flags().BoolVar(&withRoots, "with-roots", false, "also hold the machines' roots (volumes, NFS uppers, their snapshots) and their bases")
	return c
}

// printBackupRoots reports which roots the backup at p holds and which
// it left out, from its manifest.
func printBackupRoots(e *env, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	m, err := backup.ReadManifest(f)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "roots of %d machines, on %d bases\n", len(m.Roots), len(m.Bases))
	for _, s := range m.Skipped {
		fmt.Fprintf(e.Stdout, "left out the roots of %s: %s\n", shortID(s.Machine), safe(s.Reason))
	}
	return nil
}

func newRestoreCmd(e *env) *cobra.Command {
	var stateDir string
	c := &cobra.Command{
		Use:   "restore FILE --state-dir DIR",
		Short: "Rebuild a server's state directory DIR (absent or empty) from backup FILE; run sealroot serve on it afterwards",
		Args:  cmdline.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if stateDir == "" {
				return cmdline.Usagef(c, "--state-dir is required")
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			m, err := backup.Restore(f, stateDir)
			if err != nil {
				return err
			}
			if e.JSON {
				return e.printJSON(m)
			}
			fmt.Fprintf(e.Stdout, "restored %d files and state.db (schema %d, backup of %s) into %s\n",
				len(m.Files), m.SchemaVersion, formatTime(m.Created), safe(stateDir))
			if len(m.Roots) > 0 {
				fmt.Fprintf(e.Stdout, "restored the roots of %d machines and %d bases\n", len(m.Roots), len(m.Bases))
			}
			for _, s := range m.Skipped {
				fmt.Fprintf(e.Stdout, "not in the backup: the roots of %s (%s)\n", shortID(s.Machine), safe(s.Reason))
			}
			for _, x := range m.Excluded {
				fmt.Fprintf(e.Stdout, "not in the backup: %s\n", x)
			}
			return nil
		},
	}
	c.Flags().StringVar(&stateDir, "state-dir", "", "the state directory to create")
	return c
}
