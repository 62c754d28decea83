package cli

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/internal/cmdline"
	"github.com/sealroot/sealroot/server/api"
)

// Views of what the server serves now: tunnel peers, iSCSI sessions,
// DHCP leases and NFS exports. Each prints a table, or with --json the
// API's list.

func newTunnelCmd(e *env) *cobra.Command {
	return cmdline.Group("tunnel", "The WireGuard tunnel's peers (`wg show` cannot see the embedded device)",
		&cobra.Command{
			Use:   "list",
			Short: "List installed peers: machine, tunnel address, endpoint, last handshake, bytes",
			Args:  cmdline.ExactArgs(0),
			RunE: func(c *cobra.Command, _ []string) error {
				ps, err := e.client().TunnelPeers(c.Context())
				if err != nil {
					return err
				}
				if e.JSON {
					return e.printJSON(nonNil(ps))
				}
				return writeTunnelPeers(e.Stdout, ps, time.Now())
			},
		})
}

func writeTunnelPeers(w io.Writer, ps []api.TunnelPeer, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MACHINE\tNAME\tADDRESS\tENDPOINT\tHANDSHAKE\tRX\tTX")
	for _, p := range ps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", shortID(p.MachineID), orDash(safe(p.Name)), safe(p.Address),
			orDash(safe(p.Endpoint)), handshakeAge(p.LastHandshake, now), formatBytes(uint64(p.RxBytes)), formatBytes(uint64(p.TxBytes)))
	}
	return tw.Flush()
}

// handshakeAge is "42s ago", or "never".
func handshakeAge(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return now.Sub(t).Round(time.Second).String() + " ago"
}

func newISCSICmd(e *env) *cobra.Command {
	return cmdline.Group("iscsi", "The iSCSI target's sessions",
		&cobra.Command{
			Use:   "sessions",
			Short: "List logged-in sessions: initiator, target, machine, bytes, commands, errors",
			Args:  cmdline.ExactArgs(0),
			RunE: func(c *cobra.Command, _ []string) error {
				ss, err := e.client().ISCSISessions(c.Context())
				if err != nil {
					return err
				}
				if e.JSON {
					return e.printJSON(nonNil(ss))
				}
				return writeISCSISessions(e.Stdout, ss)
			},
		})
}

func writeISCSISessions(w io.Writer, ss []api.ISCSISession) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MACHINE\tINITIATOR\tTARGET\tREMOTE\tSINCE\tREAD\tWRITTEN\tCOMMANDS\tERRORS")
	for _, s := range ss {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", orDash(shortID(s.MachineID)), safe(s.Initiator),
			safe(s.Target), safe(s.Remote), formatTime(s.Since), formatBytes(s.ReadBytes), formatBytes(s.WrittenBytes),
			s.Commands, s.Errors)
	}
	return tw.Flush()
}

func newNFSCmd(e *env) *cobra.Command {
	return cmdline.Group("nfs", "The NFS roots nfs-ganesha serves",
		&cobra.Command{
			Use:   "exports",
			Short: "List exported roots: machine, path, client",
			Args:  cmdline.ExactArgs(0),
			RunE: func(c *cobra.Command, _ []string) error {
				es, err := e.client().NFSExports(c.Context())
				if err != nil {
					return err
				}
				if e.JSON {
					return e.printJSON(nonNil(es))
				}
				tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "MACHINE\tPATH\tCLIENT")
				for _, x := range es {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", shortID(x.MachineID), safe(x.Path), orDash(safe(x.Client)))
				}
				return tw.Flush()
			},
		})
}

func newDHCPLeasesCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "leases",
		Short: "List full-mode DHCP leases: address, MAC, expiry, reserved",
		Args:  cmdline.ExactArgs(0),
		RunE: func(c *cobra.Command, _ []string) error {
			ls, err := e.client().DHCPLeases(c.Context())
			if err != nil {
				return err
			}
			if e.JSON {
				return e.printJSON(nonNil(ls))
			}
			tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ADDRESS\tMAC\tEXPIRES\tRESERVED")
			for _, l := range ls {
				mac := safe(l.MAC)
				if mac == "" {
					mac = "(quarantined)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\n", safe(l.Addr), mac, formatTime(l.Expiry), l.Reserved)
			}
			return tw.Flush()
		},
	}
}

// nonNil is s, or an empty list: --json prints [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// formatBytes is n in B, KiB, MiB or GiB.
func formatBytes(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}
