package cli

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/internal/cmdline"
	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/wire"
)

// MACHINE arguments are a full ID, a unique ID prefix of at least 8 hex
// digits, or a machine name; the server resolves them.

func newMachineCmd(e *env) *cobra.Command {
	var yes bool
	return cmdline.Group("machine", "Inspect, approve and revoke machines",
		newMachineListCmd(e),
		&cobra.Command{
			Use:   "show MACHINE",
			Short: "Show a machine's record and boot state",
			Args:  cmdline.ExactArgs(1),
			RunE:  func(c *cobra.Command, args []string) error { return runMachineShow(c, e, args[0]) },
		},
		newMachineLogCmd(e),
		newMachineApproveCmd(e),
		newMachineRevokeCmd(e),
		newMachineForgetCmd(e),
		addYes(&cobra.Command{
			Use:   "reset MACHINE",
			Short: "Put a machine's root (iSCSI volume or NFS root) back to its image, keeping its snapshots; it loses its root until it boots again",
			Args:  cmdline.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				if err := confirm(c, e, yes, fmt.Sprintf("reset the root of %s, dropping its changes (snapshots are kept)", safe(args[0]))); err != nil {
					return err
				}
				return runMachineReset(c, e, args[0])
			},
		}, &yes),
		&cobra.Command{
			Use:   "snapshot MACHINE [NAME]",
			Short: "Save a machine's root as snapshot NAME (default: the current UTC time)",
			Args:  cmdline.ArgsRange(1, 2),
			RunE:  func(c *cobra.Command, args []string) error { return runMachineSnapshot(c, e, args) },
		},
		addYes(&cobra.Command{
			Use:   "rollback MACHINE NAME",
			Short: "Replace a machine's root with snapshot NAME (and its base); the current root is lost unless snapshotted first",
			Args:  cmdline.ExactArgs(2),
			RunE: func(c *cobra.Command, args []string) error {
				if err := confirm(c, e, yes, fmt.Sprintf("replace the root of %s with snapshot %s, dropping its current content", safe(args[0]), safe(args[1]))); err != nil {
					return err
				}
				return runMachineRollback(c, e, args[0], args[1])
			},
		}, &yes),
		addYes(&cobra.Command{
			Use:   "delete-root MACHINE",
			Short: "Delete a machine's root and its snapshots from the server; its next boot starts from its image",
			Args:  cmdline.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				if err := confirm(c, e, yes, fmt.Sprintf("delete the root of %s and all its snapshots", safe(args[0]))); err != nil {
					return err
				}
				return runMachineDeleteRoot(c, e, args[0])
			},
		}, &yes),
		newMachineSnapshotsCmd(e),
		newMachineSnapshotRmCmd(e),
		newMachineUpgradeCmd(e),
		newMachineSetRootCmd(e),
		&cobra.Command{
			Use:   "set-group MACHINE GROUP",
			Short: `Put a machine in GROUP, whose root it mounts from its next boot ("" takes it out)`,
			Args:  cmdline.ExactArgs(2),
			RunE:  func(c *cobra.Command, args []string) error { return runMachineSetGroup(c, e, args[0], args[1]) },
		},
		newFilesCmd(e, "machine"),
		newMenuCmd(e, "machine"),
	)
}

func newMachineListCmd(e *env) *cobra.Command {
	var pending bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List machines",
		Long: `List machines. With --pending, only those waiting for approval, with what
matches them to a box: MAC addresses, IP address, SMBIOS vendor, product and
serial number, first and last seen, and the fingerprint the machine's screen
shows. Pending machines claiming the same MAC, serial or SMBIOS UUID are
flagged: hints are unauthenticated.`,
		Args: cmdline.ExactArgs(0),
		RunE: func(c *cobra.Command, _ []string) error { return runMachineList(c, e, pending) },
	}
	c.Flags().BoolVar(&pending, "pending", false, "only machines waiting for approval, with their hardware hints")
	return c
}

func runMachineList(c *cobra.Command, e *env, pending bool) error {
	ms, err := e.client().Machines(c.Context())
	if err != nil {
		return err
	}
	if pending {
		ms = slices.DeleteFunc(ms, func(m *api.Machine) bool { return m.State != api.StatePending })
	}
	if pending && !e.JSON {
		return writePending(e, ms)
	}
	if e.JSON {
		if ms == nil {
			ms = []*api.Machine{}
		}
		return e.printJSON(ms)
	}
	tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSTATE\tLAST-SEEN\tBOOTS\tLAST-BOOT\tLAST-OUTCOME")
	for _, m := range ms {
		at, outcome := lastBoot(m)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", shortID(m.ID), orDash(safe(m.Name)), m.State,
			formatTime(m.LastSeen), m.BootCount, at, outcome)
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
	// A server without the route (or a failing tunnel) leaves link nil:
	// show then says what the record alone tells.
	link, _ := e.client().RootLink(c.Context(), m.ID)
	if err := writeMachine(e.Stdout, m, link); err != nil {
		return err
	}
	return writeServing(c, e, m)
}

// writeServing prints what the server serves m now: its DHCP leases, iSCSI
// sessions and NFS export. A server without these views prints nothing.
func writeServing(c *cobra.Command, e *env, m *api.Machine) error {
	var b strings.Builder
	if ls, err := e.client().DHCPLeases(c.Context()); err == nil {
		for _, l := range ls {
			if l.MAC != "" && slices.Contains(m.Hints.MACs, l.MAC) {
				fmt.Fprintf(&b, "  dhcp lease   %s for %s until %s\n", safe(l.Addr), safe(l.MAC), formatTime(l.Expiry))
			}
		}
	}
	if ss, err := e.client().ISCSISessions(c.Context()); err == nil {
		for _, s := range ss {
			if s.MachineID == m.ID {
				fmt.Fprintf(&b, "  iscsi        %s from %s since %s: read %s, written %s, %d commands, %d errors\n",
					safe(s.Target), safe(s.Remote), formatTime(s.Since), formatBytes(s.ReadBytes), formatBytes(s.WrittenBytes), s.Commands, s.Errors)
			}
		}
	}
	if es, err := e.client().NFSExports(c.Context()); err == nil {
		for _, x := range es {
			if x.MachineID == m.ID {
				fmt.Fprintf(&b, "  nfs export   %s to %s\n", safe(x.Path), orDash(safe(x.Client)))
			}
		}
	}
	if b.Len() == 0 {
		return nil
	}
	_, err := fmt.Fprint(e.Stdout, "Serving now:\n"+b.String())
	return err
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
reported and release its credentials from its next boot on. MACHINE is the
fingerprint the machine's screen shows (or a unique prefix of it, at least
8 hex digits; an ambiguous prefix is refused), or the machine's name.`,
		Args: cmdline.ExactArgs(1),
		RunE: func(c *cobra.Command, pos []string) error { return runMachineApprove(c, e, pos[0], args) },
	}
	c.Flags().StringVar(&args.name, "name", "", "rename the machine to `name`")
	c.Flags().StringVar(&args.policy, "policy", "", "boot state `policy`: pinned, predicted or identity-only (default: keep)")
	return c
}

func runMachineApprove(c *cobra.Command, e *env, ref string, args machineApproveArgs) error {
	ref = strings.TrimPrefix(ref, "sha256:") // as machine show prints the fingerprint
	policy := api.Policy(args.policy)
	if !policy.Valid() {
		return cmdline.Usagef(c, "--policy must be one of %v, not %q", api.Policies, args.policy)
	}
	m, err := e.client().Approve(c.Context(), ref, api.ApproveOptions{Name: args.name, Policy: policy})
	if err != nil {
		return err
	}
	warnUnmeasured(e, m)
	if e.JSON {
		return e.printJSON(m)
	}
	_, err = fmt.Fprintf(e.Stdout, "approved %s %s (policy %s)\n", shortID(m.ID), orDash(safe(m.Name)), m.Policy)
	return err
}

// warnUnmeasured tells the operator when the approved boot state does not
// measure the initramfs and command line: the server refuses such boots
// (check boot-measurement) under every policy but identity-only.
func warnUnmeasured(e *env, m *api.Machine) {
	if m.Policy == api.PolicyIdentityOnly || m.Unmeasured == "" {
		return
	}
	fmt.Fprintf(e.Stderr, "warning: the server will refuse this machine's boots: %s\n", m.Unmeasured)
}

func newMachineRevokeCmd(e *env) *cobra.Command {
	var reason string
	c := &cobra.Command{
		Use:   "revoke MACHINE",
		Short: "Refuse a machine from now on",
		Args:  cmdline.ExactArgs(1),
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

func newMachineForgetCmd(e *env) *cobra.Command {
	var yes, keepRoot bool
	c := &cobra.Command{
		Use:   "forget MACHINE",
		Short: "Delete a machine, its secrets and (unless --keep-root) its roots and snapshots; its next boot is unknown",
		Args:  cmdline.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			what := fmt.Sprintf("forget %s, its secrets and its roots with their snapshots", safe(args[0]))
			if keepRoot {
				what = fmt.Sprintf("forget %s and its secrets (its roots stay on the server)", safe(args[0]))
			}
			if err := confirm(c, e, yes, what); err != nil {
				return err
			}
			return runMachineForget(c, e, args[0], keepRoot)
		},
	}
	c.Flags().BoolVar(&keepRoot, "keep-root", false, "keep the machine's roots and snapshots on the server")
	return addYes(c, &yes)
}

func runMachineForget(c *cobra.Command, e *env, ref string, keepRoot bool) error {
	f, err := e.client().ForgetMachine(c.Context(), ref, keepRoot)
	if err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(f)
	}
	what := "no roots on the server"
	switch {
	case keepRoot:
		what = "its roots kept on the server"
	case f.RootDeleted:
		what = "its roots and snapshots deleted"
	}
	_, err = fmt.Fprintf(e.Stdout, "forgot %s %s; %s\n", shortID(f.Machine), safe(ref), what)
	return err
}

func runMachineReset(c *cobra.Command, e *env, ref string) error {
	if err := e.client().ResetVolume(c.Context(), ref); err != nil {
		return err
	}
	if e.JSON {
		return nil
	}
	_, err := fmt.Fprintf(e.Stdout, "reset the root of %s\n", safe(ref))
	return err
}

func runMachineSnapshot(c *cobra.Command, e *env, args []string) error {
	name := time.Now().UTC().Format("20060102T150405Z")
	if len(args) == 2 {
		name = args[1]
	}
	if err := e.client().SnapshotVolume(c.Context(), args[0], name); err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(map[string]string{"snapshot": name})
	}
	_, err := fmt.Fprintf(e.Stdout, "saved the root of %s as snapshot %s\n", safe(args[0]), safe(name))
	return err
}

func runMachineSetGroup(c *cobra.Command, e *env, ref, group string) error {
	m, err := e.client().SetGroup(c.Context(), ref, group)
	if err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(m)
	}
	if group == "" {
		_, err = fmt.Fprintf(e.Stdout, "%s %s is in no group; its own root: %s\n", shortID(m.ID), orDash(safe(m.Name)), formatRootPlan(m.Root))
		return err
	}
	_, err = fmt.Fprintf(e.Stdout, "%s %s is in group %s\n", shortID(m.ID), orDash(safe(m.Name)), safe(group))
	return err
}

func runMachineDeleteRoot(c *cobra.Command, e *env, ref string) error {
	if err := e.client().DeleteRoot(c.Context(), ref); err != nil {
		return err
	}
	if e.JSON {
		return nil
	}
	_, err := fmt.Fprintf(e.Stdout, "deleted the root of %s\n", safe(ref))
	return err
}

func runMachineRollback(c *cobra.Command, e *env, ref, name string) error {
	if err := e.client().RollbackVolume(c.Context(), ref, name); err != nil {
		return err
	}
	if e.JSON {
		return nil
	}
	_, err := fmt.Fprintf(e.Stdout, "rolled the root of %s back to snapshot %s\n", safe(ref), safe(name))
	return err
}

type machineSetRootArgs struct {
	kind, image, init, via string
	perUser                bool
}

// flags adds the root flags to c; --kind defaults to kind.
func (a *machineSetRootArgs) flags(c *cobra.Command, kind string) {
	c.Flags().StringVar(&a.kind, "kind", kind, "root `kind`: iscsi, nfs, volatile or none")
	c.Flags().StringVar(&a.image, "image", "", "base image `name` (iscsi, nfs, volatile)")
	c.Flags().StringVar(&a.init, "init", "", "`program` to switch_root to (default /sbin/init)")
	c.Flags().StringVar(&a.via, "via", "", "volatile roots: read the shared base over `nfs` (default) or iscsi")
	c.Flags().BoolVar(&a.perUser, "per-user", false, "iscsi and nfs roots: each user who logs in on the console gets their own root over the image")
}

// plan is the root plan the flags describe.
func (a machineSetRootArgs) plan(c *cobra.Command) (wire.RootPlan, error) {
	root := wire.RootPlan{Kind: a.kind, Init: a.init}
	if a.kind != wire.RootNone && a.image == "" {
		return root, cmdline.Usagef(c, "--kind %s needs --image NAME", a.kind)
	}
	if a.via != "" && a.kind != wire.RootVolatile {
		return root, cmdline.Usagef(c, "--via is for --kind volatile")
	}
	if a.perUser && a.kind != wire.RootISCSI && a.kind != wire.RootNFS {
		return root, cmdline.Usagef(c, "--per-user is for --kind iscsi or nfs")
	}
	if a.image != "" {
		root.Params = map[string]string{wire.ImageParam: a.image}
	}
	if a.via != "" {
		root.Params[wire.VolatileVia] = a.via
	}
	if a.perUser {
		root.Params[wire.PerUserParam] = "true"
	}
	return root, nil
}

func newMachineSetRootCmd(e *env) *cobra.Command {
	var args machineSetRootArgs
	c := &cobra.Command{
		Use:   "set-root MACHINE",
		Short: "Set the root a machine mounts from its next boot on",
		Args:  cmdline.ExactArgs(1),
		RunE:  func(c *cobra.Command, pos []string) error { return runMachineSetRoot(c, e, pos[0], args) },
	}
	args.flags(c, wire.RootISCSI)
	return c
}

func runMachineSetRoot(c *cobra.Command, e *env, ref string, args machineSetRootArgs) error {
	root, err := args.plan(c)
	if err != nil {
		return err
	}
	m, err := e.client().SetRoot(c.Context(), ref, root)
	if err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(m)
	}
	_, err = fmt.Fprintf(e.Stdout, "root of %s %s: %s %s%s\n", shortID(m.ID), orDash(safe(m.Name)), m.Root.Kind,
		safe(m.Root.Params[wire.ImageParam]), perUserNote(m.Root))
	return err
}
