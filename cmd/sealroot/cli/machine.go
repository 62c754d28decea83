package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/store"
)

// MACHINE arguments are a full ID, a unique ID prefix of at least 8 hex
// digits, or a machine name; the server resolves them.

func newMachineCmd(e *env) *cobra.Command {
	return newGroupCmd("machine", "Inspect, approve and revoke machines",
		&cobra.Command{
			Use:   "list",
			Short: "List machines",
			Args:  exactArgs(0),
			RunE:  func(c *cobra.Command, _ []string) error { return runMachineList(c, e) },
		},
		&cobra.Command{
			Use:   "show MACHINE",
			Short: "Show a machine's record and boot state",
			Args:  exactArgs(1),
			RunE:  func(c *cobra.Command, args []string) error { return runMachineShow(c, e, args[0]) },
		},
		newMachineApproveCmd(e),
		newMachineRevokeCmd(e),
		&cobra.Command{
			Use:   "forget MACHINE",
			Short: "Delete a machine and its secrets; its next boot is unknown",
			Args:  exactArgs(1),
			RunE:  func(c *cobra.Command, args []string) error { return runMachineForget(c, e, args[0]) },
		},
	)
}

func runMachineList(c *cobra.Command, e *env) error {
	ms, err := e.client().Machines(c.Context())
	if err != nil {
		return err
	}
	if e.JSON {
		if ms == nil {
			ms = []*store.Machine{}
		}
		return e.printJSON(ms)
	}
	tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSTATE\tLAST-SEEN\tBOOTS")
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", shortID(m.ID), orDash(safe(m.Name)), m.State,
			formatTime(m.LastSeen), m.BootCount)
	}
	return tw.Flush()
}

func runMachineShow(c *cobra.Command, e *env, ref string) error {
	m, err := e.client().Machine(c.Context(), ref)
	if err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(m)
	}
	return writeMachine(e.Stdout, m)
}

type machineApproveArgs struct {
	name   string
	policy string
}

func newMachineApproveCmd(e *env) *cobra.Command {
	var args machineApproveArgs
	c := &cobra.Command{
		Use:   "approve MACHINE",
		Short: "Approve a pending machine, pinning the boot state it reported",
		Long: `Approve a pending or needs-reapproval machine: pin the boot state it last
reported and release its credentials from its next boot on.`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, pos []string) error { return runMachineApprove(c, e, pos[0], args) },
	}
	c.Flags().StringVar(&args.name, "name", "", "rename the machine to `name`")
	c.Flags().StringVar(&args.policy, "policy", "", "boot state `policy`: pinned or identity-only (default: keep)")
	return c
}

func runMachineApprove(c *cobra.Command, e *env, ref string, args machineApproveArgs) error {
	policy := store.Policy(args.policy)
	switch policy {
	case "", store.PolicyPinned, store.PolicyIdentityOnly:
	default:
		return usagef(c, "--policy must be %s or %s, not %q", store.PolicyPinned, store.PolicyIdentityOnly, args.policy)
	}
	m, err := e.client().Approve(c.Context(), ref, api.ApproveOptions{Name: args.name, Policy: policy})
	if err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(m)
	}
	_, err = fmt.Fprintf(e.Stdout, "approved %s %s (policy %s)\n", shortID(m.ID), orDash(safe(m.Name)), m.Policy)
	return err
}

func newMachineRevokeCmd(e *env) *cobra.Command {
	var reason string
	c := &cobra.Command{
		Use:   "revoke MACHINE",
		Short: "Refuse a machine from now on",
		Args:  exactArgs(1),
		RunE: func(c *cobra.Command, pos []string) error {
			return runMachineRevoke(c, e, pos[0], reason)
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why, for the record")
	return c
}

func runMachineRevoke(c *cobra.Command, e *env, ref, reason string) error {
	m, err := e.client().Revoke(c.Context(), ref, reason)
	if err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(m)
	}
	_, err = fmt.Fprintf(e.Stdout, "revoked %s %s\n", shortID(m.ID), orDash(safe(m.Name)))
	return err
}

func runMachineForget(c *cobra.Command, e *env, ref string) error {
	if err := e.client().Forget(c.Context(), ref); err != nil {
		return err
	}
	if e.JSON {
		return nil
	}
	_, err := fmt.Fprintf(e.Stdout, "forgot %s\n", safe(ref))
	return err
}
