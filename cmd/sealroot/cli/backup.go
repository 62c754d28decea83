package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/internal/atomicfile"
	"github.com/sealroot/sealroot/server/backup"
)

func newBackupCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use: "backup FILE",
		Short: "Write a backup of the running server's state to FILE (mode 0600): store, keys (age identity, CA), " +
			"configuration, image and root records; not base images or machines' written data",
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			dst := args[0]
			tmp, err := os.CreateTemp(filepath.Dir(dst), ".sealroot-backup-")
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name())
			err = e.client().Backup(c.Context(), tmp)
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
			return err
		},
	}
}

func newRestoreCmd(e *env) *cobra.Command {
	var stateDir string
	c := &cobra.Command{
		Use:   "restore FILE --state-dir DIR",
		Short: "Rebuild a server's state directory DIR (absent or empty) from backup FILE; run sealroot serve on it afterwards",
		Args:  exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if stateDir == "" {
				return usagef(c, "--state-dir is required")
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
			for _, x := range m.Excluded {
				fmt.Fprintf(e.Stdout, "not in the backup: %s\n", x)
			}
			return nil
		},
	}
	c.Flags().StringVar(&stateDir, "state-dir", "", "the state directory to create")
	return c
}
