package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/internal/cmdline"
	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/wire"
)

// menuArgs are the flags of `menu set`.
type menuArgs struct {
	images    []string
	localDisk bool
	def       string
	timeout   time.Duration
}

// newMenuCmd is `sealroot machine menu` (noun "machine", arg MACHINE) or
// `sealroot group menu` (noun "group", arg GROUP).
func newMenuCmd(e *env, noun string) *cobra.Command {
	arg := strings.ToUpper(noun)
	owner := func(ref string) api.FileOwner {
		if noun == "group" {
			return api.FileOwner{Group: ref}
		}
		return api.FileOwner{Machine: ref}
	}
	var args menuArgs
	set := &cobra.Command{
		Use:   "set " + arg,
		Short: "Set the boot menu the agent shows on the " + noun + "'s console(s)",
		Long: `Set the boot menu of the ` + noun + `'s machines: after attestation the agent
shows the entries on its console(s) and takes the default when the timeout
passes. A machine's own menu wins over its group's. The menu is shown only
when a machine is offered more than one entry; the server honours only a
choice it offered.

Each --image boots a volatile root over that image: a fresh copy-on-write
overlay in the machine's memory, so nothing one image's boot writes ever
lies over another image's base. The ` + noun + `'s root must be volatile.
--local-disk sets the firmware's one-time BootNext to the local disk and
reboots; it is offered to UEFI machines only (BIOS has no BootNext).
--default is an image name or "local-disk"; default the first entry.
--timeout is at most 1m; typing a number and Enter chooses before it.`,
		Args: cmdline.ExactArgs(1),
		RunE: func(c *cobra.Command, pos []string) error { return runMenuSet(c, e, owner(pos[0]), args) },
	}
	set.Flags().StringArrayVar(&args.images, "image", nil, "an image the machine may boot (repeat for several)")
	set.Flags().BoolVar(&args.localDisk, "local-disk", false, "offer the local disk (UEFI machines)")
	set.Flags().StringVar(&args.def, "default", "", `the entry taken on timeout: an image name or "local-disk"`)
	set.Flags().DurationVar(&args.timeout, "timeout", 10*time.Second, "how long the menu waits for a choice (at most 1m)")
	return cmdline.Group("menu", "The boot menu of the "+noun+"'s machines",
		set,
		&cobra.Command{
			Use:   "show " + arg,
			Short: "Show the " + noun + "'s boot menu",
			Args:  cmdline.ExactArgs(1),
			RunE:  func(c *cobra.Command, pos []string) error { return runMenuShow(c, e, owner(pos[0])) },
		},
		&cobra.Command{
			Use:   "rm " + arg,
			Short: "Remove the " + noun + "'s boot menu",
			Args:  cmdline.ExactArgs(1),
			RunE:  func(c *cobra.Command, pos []string) error { return runMenuRm(c, e, owner(pos[0])) },
		},
	)
}

func runMenuSet(c *cobra.Command, e *env, owner api.FileOwner, args menuArgs) error {
	if args.timeout <= 0 {
		return fmt.Errorf("--timeout %v: want a positive duration", args.timeout)
	}
	m := api.Menu{Images: args.images, LocalDisk: args.localDisk, TimeoutMillis: args.timeout.Milliseconds()}
	switch args.def {
	case "":
	case wire.EntryLocalDiskID:
		m.Default = wire.EntryLocalDiskID
	default:
		m.Default = wire.ImageEntryID(args.def)
	}
	out, err := e.client().SetMenu(c.Context(), owner, m)
	if err != nil {
		return err
	}
	return printMenu(e, owner, out)
}

func runMenuShow(c *cobra.Command, e *env, owner api.FileOwner) error {
	m, err := e.client().Menu(c.Context(), owner)
	if err != nil {
		return err
	}
	return printMenu(e, owner, m)
}

func printMenu(e *env, owner api.FileOwner, m *api.Menu) error {
	if e.JSON {
		return e.printJSON(m)
	}
	_, err := fmt.Fprintf(e.Stdout, "menu of %s: %s\n", safe(owner.String()), formatMenu(m))
	return err
}

// formatMenu is "image A, image B, local disk; default ID after 10s".
func formatMenu(m *api.Menu) string {
	var entries []string
	for _, im := range m.Images {
		entries = append(entries, "image "+safe(im))
	}
	if m.LocalDisk {
		entries = append(entries, "local disk")
	}
	return fmt.Sprintf("%s; default %s after %v", strings.Join(entries, ", "), safe(m.Default),
		time.Duration(m.TimeoutMillis)*time.Millisecond)
}

func runMenuRm(c *cobra.Command, e *env, owner api.FileOwner) error {
	if err := e.client().DeleteMenu(c.Context(), owner); err != nil {
		return err
	}
	if e.JSON {
		return nil
	}
	_, err := fmt.Fprintf(e.Stdout, "removed the menu of %s\n", safe(owner.String()))
	return err
}
