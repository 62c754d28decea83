package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/internal/cmdline"
	"github.com/sealroot/sealroot/server/api"
)

func newDHCPCmd(e *env) *cobra.Command {
	var yes bool
	return cmdline.Group("dhcp", "Leases and reserved addresses of the full-mode DHCP server",
		&cobra.Command{
			Use:   "reserve MAC IP",
			Short: "Give the machine with hardware address MAC the address IP from its next DHCP exchange",
			Args:  cmdline.ExactArgs(2),
			RunE: func(c *cobra.Command, args []string) error {
				r, err := e.client().Reserve(c.Context(), args[0], args[1])
				if err != nil {
					return err
				}
				if e.JSON {
					return e.printJSON(r)
				}
				_, err = fmt.Fprintf(e.Stdout, "reserved %s for %s\n", safe(r.Addr), safe(r.MAC))
				return err
			},
		},
		newDHCPLeasesCmd(e),
		&cobra.Command{
			Use:   "list",
			Short: "List reservations",
			Args:  cmdline.ExactArgs(0),
			RunE: func(c *cobra.Command, _ []string) error {
				rs, err := e.client().Reservations(c.Context())
				if err != nil {
					return err
				}
				if e.JSON {
					if rs == nil {
						rs = []api.Reservation{}
					}
					return e.printJSON(rs)
				}
				tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "MAC\tADDRESS")
				for _, r := range rs {
					fmt.Fprintf(tw, "%s\t%s\n", safe(r.MAC), safe(r.Addr))
				}
				return tw.Flush()
			},
		},
		addYes(&cobra.Command{
			Use:   "rm MAC",
			Short: "Remove MAC's reservation; its lease runs out normally",
			Args:  cmdline.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				if err := confirm(c, e, yes, "remove the DHCP reservation of "+safe(args[0])); err != nil {
					return err
				}
				if err := e.client().Unreserve(c.Context(), args[0]); err != nil {
					return err
				}
				if e.JSON {
					return nil
				}
				_, err := fmt.Fprintf(e.Stdout, "removed the reservation of %s\n", safe(args[0]))
				return err
			},
		}, &yes),
	)
}
