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

type auditArgs struct {
	machine string
	since   string
}

func newAuditCmd(e *env) *cobra.Command {
	var args auditArgs
	c := &cobra.Command{
		Use:   "audit",
		Short: "Print the audit log: every attestation verdict and operator action",
		Long: `Print the server's audit log, oldest first. ACTOR is "server" for the server's
own decisions and "operator:<uid>" for operator actions; CHECK names the check
that decided. --since takes an RFC 3339 time or a duration back from now (1h).`,
		Args: cmdline.ExactArgs(0),
		RunE: func(c *cobra.Command, _ []string) error { return runAudit(c, e, args) },
	}
	c.Flags().StringVar(&args.machine, "machine", "", "only records of `MACHINE` (a forgotten one by its ID prefix)")
	c.Flags().StringVar(&args.since, "since", "", "only records from `T` on (RFC 3339, or a duration such as 24h)")
	return c
}

func runAudit(c *cobra.Command, e *env, args auditArgs) error {
	q := api.AuditQuery{Machine: args.machine}
	if args.since != "" {
		t, err := parseSince(args.since, time.Now())
		if err != nil {
			return cmdline.Usagef(c, "--since: %v", err)
		}
		q.Since = t
	}
	es, err := e.client().Audit(c.Context(), q)
	if err != nil {
		return err
	}
	if e.JSON {
		if es == nil {
			es = []*api.AuditEntry{}
		}
		return e.printJSON(es)
	}
	return writeAuditTable(e.Stdout, es)
}

// parseSince reads an RFC 3339 time or a duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a positive duration", s)
	}
	return now.Add(-d), nil
}

func writeAuditTable(w io.Writer, es []*api.AuditEntry) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tACTOR\tMACHINE\tACTION\tOUTCOME\tCHECK\tREASON")
	for _, a := range es {
		writeAuditLine(tw, a)
	}
	return tw.Flush()
}

func writeAuditLine(w io.Writer, a *api.AuditEntry) {
	id := "-"
	if a.MachineID != "" {
		id = shortID(safe(a.MachineID))
	}
	fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", formatTime(a.Time), safe(a.Actor), id, safe(a.Action),
		safe(a.Outcome), orDash(safe(a.Check)), orDash(safe(a.Reason)))
}
