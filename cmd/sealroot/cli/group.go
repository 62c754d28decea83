package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/internal/cmdline"
	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/wire"
)

func newGroupsCmd(e *env) *cobra.Command {
	var args machineSetRootArgs
	setRoot := &cobra.Command{
		Use:   "set-root GROUP",
		Short: "Create a group, or set the root its machines mount from their next boot",
		Args:  cmdline.ExactArgs(1),
		RunE:  func(c *cobra.Command, pos []string) error { return runGroupSetRoot(c, e, pos[0], args) },
	}
	args.flags(setRoot, wire.RootVolatile)
	return cmdline.Group("group", "Groups of machines that share a root (thin clients, kiosks, workers)",
		&cobra.Command{
			Use:   "list",
			Short: "List groups and their roots",
			Args:  cmdline.ExactArgs(0),
			RunE:  func(c *cobra.Command, _ []string) error { return runGroupList(c, e) },
		},
		setRoot,
		&cobra.Command{
			Use:   "rm GROUP",
			Short: "Remove a group that has no machines",
			Args:  cmdline.ExactArgs(1),
			RunE:  func(c *cobra.Command, pos []string) error { return runGroupRm(c, e, pos[0]) },
		},
		newFilesCmd(e, "group"),
		newGroupUpgradeCmd(e),
		newMenuCmd(e, "group"),
	)
}

func runGroupList(c *cobra.Command, e *env) error {
	gs, err := e.client().Groups(c.Context())
	if err != nil {
		return err
	}
	if e.JSON {
		if gs == nil {
			gs = []*api.Group{}
		}
		return e.printJSON(gs)
	}
	tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tROOT")
	for _, g := range gs {
		fmt.Fprintf(tw, "%s\t%s\n", safe(g.Name), formatRootPlan(g.Root))
	}
	return tw.Flush()
}

func runGroupSetRoot(c *cobra.Command, e *env, name string, args machineSetRootArgs) error {
	root, err := args.plan(c)
	if err != nil {
		return err
	}
	g, err := e.client().SetGroupRoot(c.Context(), name, root)
	if err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(g)
	}
	_, err = fmt.Fprintf(e.Stdout, "root of group %s: %s\n", safe(g.Name), formatRootPlan(g.Root))
	return err
}

func runGroupRm(c *cobra.Command, e *env, name string) error {
	if err := e.client().DeleteGroup(c.Context(), name); err != nil {
		return err
	}
	if e.JSON {
		return nil
	}
	_, err := fmt.Fprintf(e.Stdout, "removed group %s\n", safe(name))
	return err
}
