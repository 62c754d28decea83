package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/internal/cmdline"
	"github.com/sealroot/sealroot/server/api"
)

// newUserRootCmds are the commands on users' per-user roots: which
// machine mounts each, the operator's free, and the root's lifecycle as
// for a machine's root.
func newUserRootCmds(e *env) []*cobra.Command {
	var yesFree, yesReset, yesRollback bool
	return []*cobra.Command{
		{
			Use:   "roots",
			Short: "List the user roots mounted now: user, machine, since",
			Args:  cmdline.ExactArgs(0),
			RunE:  func(c *cobra.Command, _ []string) error { return runUserRoots(c, e) },
		},
		addYes(&cobra.Command{
			Use:   "free NAME",
			Short: "Free a user's root from the machine holding it (gone or hung), so the user can log in elsewhere; that machine loses it",
			Args:  cmdline.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				if err := confirm(c, e, yesFree, fmt.Sprintf("free the root of user %s from the machine holding it", safe(args[0]))); err != nil {
					return err
				}
				return runUserFree(c, e, args[0])
			},
		}, &yesFree),
		addYes(&cobra.Command{
			Use:   "reset NAME",
			Short: "Put a user's root back to its image, keeping its snapshots (refused while a machine mounts it)",
			Args:  cmdline.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				if err := confirm(c, e, yesReset, fmt.Sprintf("reset the root of user %s, dropping its changes (snapshots are kept)", safe(args[0]))); err != nil {
					return err
				}
				return userRootDone(e, args[0], "reset the root of user %s", e.client().ResetUserRoot(c.Context(), args[0]))
			},
		}, &yesReset),
		{
			Use:   "snapshot NAME [SNAPSHOT]",
			Short: "Save a user's root as snapshot SNAPSHOT (default: the current UTC time)",
			Args:  cmdline.ArgsRange(1, 2),
			RunE:  func(c *cobra.Command, args []string) error { return runUserSnapshot(c, e, args) },
		},
		addYes(&cobra.Command{
			Use:   "rollback NAME SNAPSHOT",
			Short: "Replace a user's root with snapshot SNAPSHOT (refused while a machine mounts it)",
			Args:  cmdline.ExactArgs(2),
			RunE: func(c *cobra.Command, args []string) error {
				if err := confirm(c, e, yesRollback, fmt.Sprintf("replace the root of user %s with snapshot %s, dropping its current content", safe(args[0]), safe(args[1]))); err != nil {
					return err
				}
				err := e.client().RollbackUserRoot(c.Context(), args[0], args[1])
				return userRootDone(e, args[0], "rolled the root of user %s back to snapshot "+safe(args[1]), err)
			},
		}, &yesRollback),
		{
			Use:   "snapshots NAME",
			Short: "List the snapshots of a user's root: name, time, size, base image version",
			Args:  cmdline.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				ss, err := e.client().UserRootSnapshots(c.Context(), args[0])
				if err != nil {
					return err
				}
				return printSnapshots(e, ss)
			},
		},
	}
}

// userRootDone reports a done operation on user's root.
func userRootDone(e *env, user, format string, err error) error {
	if err != nil || e.JSON {
		return err
	}
	_, err = fmt.Fprintf(e.Stdout, format+"\n", safe(user))
	return err
}

func runUserRoots(c *cobra.Command, e *env) error {
	us, err := e.client().UserRoots(c.Context())
	if err != nil {
		return err
	}
	if e.JSON {
		if us == nil {
			us = []api.UserRoot{}
		}
		return e.printJSON(us)
	}
	tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tMACHINE\tNAME\tSINCE")
	for _, u := range us {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", safe(u.User), shortID(u.MachineID), orDash(safe(u.MachineName)), formatTime(u.Since))
	}
	return tw.Flush()
}

func runUserFree(c *cobra.Command, e *env, user string) error {
	u, err := e.client().FreeUserRoot(c.Context(), user)
	if err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(u)
	}
	_, err = fmt.Fprintf(e.Stdout, "freed the root of user %s from %s %s\n", safe(user), shortID(u.MachineID), orDash(safe(u.MachineName)))
	return err
}

func runUserSnapshot(c *cobra.Command, e *env, args []string) error {
	name := time.Now().UTC().Format("20060102T150405Z")
	if len(args) == 2 {
		name = args[1]
	}
	if err := e.client().SnapshotUserRoot(c.Context(), args[0], name); err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(map[string]string{"snapshot": name})
	}
	_, err := fmt.Fprintf(e.Stdout, "saved the root of user %s as snapshot %s\n", safe(args[0]), safe(name))
	return err
}
