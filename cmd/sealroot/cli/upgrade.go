package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/internal/cmdline"
	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/wire"
)

// Image versions, upgrades, rollouts and snapshots.

func newMachineUpgradeCmd(e *env) *cobra.Command {
	var to string
	c := &cobra.Command{
		Use: "upgrade MACHINE",
		Short: "Move a machine's root to an image version: the root starts afresh on the new base, " +
			"the old root is kept as a snapshot (rollback returns to it)",
		Args: cmdline.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error { return runMachineUpgrade(c, e, args[0], to) },
	}
	c.Flags().StringVar(&to, "to", "", "image version NAME@vN, or NAME for its latest (default: what the machine's plan names)")
	return c
}

func runMachineUpgrade(c *cobra.Command, e *env, ref, to string) error {
	u, err := e.client().UpgradeRoot(c.Context(), ref, to)
	if err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(u)
	}
	return printUpgrade(e, *u)
}

func printUpgrade(e *env, u api.Upgrade) error {
	var err error
	if u.Skipped != "" {
		_, err = fmt.Fprintf(e.Stdout, "%s: not moved to %s: %s\n", shortID(u.Machine), safe(u.To), safe(u.Skipped))
	} else {
		_, err = fmt.Fprintf(e.Stdout, "%s: root moved from %s to %s; the old root is snapshot %s (`sealroot machine rollback %s %s` returns to it)\n",
			shortID(u.Machine), safe(u.From), safe(u.To), safe(u.KeptAs), shortID(u.Machine), safe(u.KeptAs))
	}
	return err
}

func newImageRolloutCmd(e *env) *cobra.Command {
	var group string
	var canary int
	c := &cobra.Command{
		Use:   "rollout NAME@vN --group GROUP [--canary K]",
		Short: "Move a group's machines to an image version, each keeping its old root as a snapshot; --canary moves only K",
		Args:  cmdline.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if group == "" {
				return cmdline.Usagef(c, "--group is required")
			}
			return runImageRollout(c, e, args[0], group, canary)
		},
	}
	c.Flags().StringVar(&group, "group", "", "the group to move")
	c.Flags().IntVar(&canary, "canary", 0, "move at most K machines and leave the group's plan as it is (0: all, then the group's plan names the version)")
	return c
}

func runImageRollout(c *cobra.Command, e *env, ref, group string, canary int) error {
	ro, err := e.client().Rollout(c.Context(), group, api.RolloutRequest{Image: ref, Canary: canary})
	if err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(ro)
	}
	return printRollout(e, ro)
}

func printRollout(e *env, ro *api.Rollout) error {
	for _, u := range ro.Machines {
		if err := printUpgrade(e, u); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(e.Stdout, "group %s: %d machines left on other versions; group root: %s\n",
		safe(ro.Group), ro.Remaining, formatRootPlan(ro.GroupRoot))
	return err
}

type groupUpgradeArgs struct {
	to       string
	canary   int
	machines []string
	yes      bool
}

func newGroupUpgradeCmd(e *env) *cobra.Command {
	var a groupUpgradeArgs
	c := &cobra.Command{
		Use: "upgrade GROUP [--to NAME@vN] [--canary N | --machines M,...] [--yes]",
		Short: "Move a group to an image version, saying first what will happen: persistent roots start afresh " +
			"on the new base and keep the old root as a snapshot; a volatile group switches at its members' next boot",
		Long: `Move the machines of GROUP to an image version (--to; default: the latest version
of the group's image). sealroot first prints what will happen to each member,
then asks (--yes answers in scripts):

  - a member with a persistent root (iSCSI volume, NFS upper) starts afresh on
    the new base; its old root is kept as a snapshot (before-NAME-vN), which
    ` + "`sealroot machine rollback`" + ` returns to;
  - a member that has not booted yet gets the new version at its first boot;
  - a volatile group has no roots to move: its plan changes and every member
    boots the new version from its next boot.

--canary N moves at most N members still on another version, --machines only
the members named; both leave the group's plan as it is, so the rest stay
where they are until a full upgrade. A full upgrade then sets the group's plan
to the version.`,
		Args: cmdline.ExactArgs(1),
		RunE: func(c *cobra.Command, pos []string) error { return runGroupUpgrade(c, e, pos[0], a) },
	}
	c.Flags().StringVar(&a.to, "to", "", "image version NAME@vN, or NAME for its latest (default: the latest version of the group's image)")
	c.Flags().IntVar(&a.canary, "canary", 0, "move at most N members and leave the group's plan as it is")
	c.Flags().StringSliceVar(&a.machines, "machines", nil, "move only these members (IDs, ID prefixes or names) and leave the group's plan as it is")
	return addYes(c, &a.yes)
}

func runGroupUpgrade(c *cobra.Command, e *env, group string, a groupUpgradeArgs) error {
	req := api.RolloutRequest{Image: a.to, Canary: a.canary, Machines: a.machines, DryRun: true}
	plan, err := e.client().Rollout(c.Context(), group, req)
	if err != nil {
		return err
	}
	if !e.JSON {
		printRolloutPlan(e, plan, a.canary > 0 || len(a.machines) > 0)
	}
	if err := confirm(c, e, a.yes, fmt.Sprintf("upgrade group %s to %s", safe(group), safe(plan.Image))); err != nil {
		return err
	}
	req.DryRun, req.Image = false, plan.Image
	ro, err := e.client().Rollout(c.Context(), group, req)
	if err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(ro)
	}
	return printRollout(e, ro)
}

// printRolloutPlan says what a rollout will do, before it is done.
func printRolloutPlan(e *env, ro *api.Rollout, partial bool) {
	w := e.Stdout
	fmt.Fprintf(w, "upgrading group %s to %s will:\n", safe(ro.Group), safe(ro.Image))
	for _, u := range ro.Machines {
		if u.Skipped != "" {
			fmt.Fprintf(w, "  %s: leave it as it is: %s\n", shortID(u.Machine), safe(u.Skipped))
			continue
		}
		fmt.Fprintf(w, "  %s: start its root afresh on %s; its root on %s is kept as snapshot %s\n",
			shortID(u.Machine), safe(u.To), safe(u.From), safe(u.KeptAs))
	}
	if ro.Remaining > 0 {
		fmt.Fprintf(w, "  leave %d other members on their versions\n", ro.Remaining)
	}
	if partial {
		fmt.Fprintf(w, "  keep the group's root: %s\n", formatRootPlan(ro.GroupRoot))
		return
	}
	fmt.Fprintf(w, "  set the group's root to: %s\n", formatRootPlan(ro.GroupRoot))
	if ro.GroupRoot.Kind == wire.RootVolatile {
		fmt.Fprintf(w, "  (volatile: every member boots %s from its next boot)\n", safe(ro.Image))
	}
}

func newMachineSnapshotsCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "snapshots MACHINE",
		Short: "List a machine's snapshots: name, time, size, base image version",
		Args:  cmdline.ExactArgs(1),
		RunE:  func(c *cobra.Command, args []string) error { return runMachineSnapshots(c, e, args[0]) },
	}
}

func runMachineSnapshots(c *cobra.Command, e *env, ref string) error {
	ss, err := e.client().Snapshots(c.Context(), ref)
	if err != nil {
		return err
	}
	return printSnapshots(e, ss)
}

// printSnapshots lists snapshots: name, time, size, base image version.
func printSnapshots(e *env, ss []api.Snapshot) error {
	if e.JSON {
		if ss == nil {
			ss = []api.Snapshot{}
		}
		return e.printJSON(ss)
	}
	tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCREATED\tSIZE\tBASE")
	for _, s := range ss {
		base := "sha256:" + shortDigest(s.Base)
		if s.Image != "" {
			base = safe(s.Image)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", safe(s.Name), formatTime(s.Created), s.Size, base)
	}
	return tw.Flush()
}

func newMachineSnapshotRmCmd(e *env) *cobra.Command {
	var yes bool
	return addYes(&cobra.Command{
		Use:   "snapshot-rm MACHINE NAME",
		Short: "Delete a machine's snapshot",
		Args:  cmdline.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			if err := confirm(c, e, yes, fmt.Sprintf("delete snapshot %s of %s", safe(args[1]), safe(args[0]))); err != nil {
				return err
			}
			if err := e.client().DeleteSnapshot(c.Context(), args[0], args[1]); err != nil {
				return err
			}
			if e.JSON {
				return nil
			}
			_, err := fmt.Fprintf(e.Stdout, "deleted snapshot %s of %s\n", safe(args[1]), safe(args[0]))
			return err
		},
	}, &yes)
}
