package cli

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/internal/cmdline"
	"github.com/sealroot/sealroot/server/api"
)

func newStatusCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the server at a glance: services, machines by state, exchanges in flight, tunnels, iSCSI sessions, DHCP leases, NFS exports, certificates, versions",
		Args:  cmdline.ExactArgs(0),
		RunE:  func(c *cobra.Command, _ []string) error { return runStatus(c, e) },
	}
}

func runStatus(c *cobra.Command, e *env) error {
	st, err := e.client().Status(c.Context())
	if err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(st)
	}
	return writeStatus(e, st, time.Now())
}

func writeStatus(e *env, st *api.Status, now time.Time) error {
	tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
	ready := "ready"
	if !st.Ready {
		ready = "NOT READY"
	}
	fmt.Fprintf(tw, "Server:\t%s (%s), %s %s, up since %s\n", safe(st.Server), ready, safe(st.Version), safe(st.GoVersion), formatTime(st.Started))
	fmt.Fprintln(tw, "Services:")
	for _, s := range st.Services {
		line := "  " + safe(s.Name) + "\t" + orDash(safe(s.Addr))
		if s.Detail != "" {
			line += "\t" + safe(s.Detail)
		}
		fmt.Fprintln(tw, line)
	}
	var states []string
	for _, s := range []api.State{api.StateApproved, api.StatePending, api.StateNeedsReapproval, api.StateRevoked} {
		states = append(states, fmt.Sprintf("%d %s", st.Machines[s], s))
	}
	fmt.Fprintf(tw, "Machines:\t%s\n", strings.Join(states, ", "))
	fmt.Fprintf(tw, "In flight:\t%d attestations\n", st.InFlight)
	if len(st.UnknownRefused) > 0 {
		var parts []string
		for _, check := range slices.Sorted(maps.Keys(st.UnknownRefused)) {
			parts = append(parts, fmt.Sprintf("%d %s", st.UnknownRefused[check], safe(check)))
		}
		fmt.Fprintf(tw, "Unknown refused:\t%s\n", strings.Join(parts, ", "))
	}
	if len(st.Noise) > 0 {
		var parts []string
		for _, kind := range slices.Sorted(maps.Keys(st.Noise)) {
			parts = append(parts, fmt.Sprintf("%d %s", st.Noise[kind], safe(kind)))
		}
		fmt.Fprintf(tw, "Noise:\t%s\n", strings.Join(parts, ", "))
	}
	if sc := st.Served; sc != nil {
		fmt.Fprintf(tw, "Tunnel peers:\t%d (%d with a handshake)\n", sc.TunnelPeers, sc.TunnelPeersHandshaken)
		fmt.Fprintf(tw, "iSCSI sessions:\t%d\n", sc.ISCSISessions)
		fmt.Fprintf(tw, "DHCP leases:\t%d\n", sc.DHCPLeases)
		if sc.Ganesha != "" {
			fmt.Fprintf(tw, "NFS exports:\t%d (nfs-ganesha %s, %d restarts)\n", sc.NFSExports, safe(sc.Ganesha), sc.GaneshaRestarts)
		}
	}
	fmt.Fprintf(tw, "Event streams:\t%d\n", st.EventStreams)
	fmt.Fprintln(tw, "Certificates:")
	for _, cert := range st.Certificates {
		left := cert.NotAfter.Sub(now).Round(time.Hour)
		warn := ""
		switch {
		case left <= 0:
			warn = "  EXPIRED"
		case left < 30*24*time.Hour:
			warn = "  EXPIRES SOON"
		}
		fmt.Fprintf(tw, "  %s\t%s\texpires %s (in %d days)%s\n", safe(cert.Role), safe(cert.Subject),
			formatTime(cert.NotAfter), int(left.Hours()/24), warn)
	}
	return tw.Flush()
}
