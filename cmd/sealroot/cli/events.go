package cli

import (
	"encoding/json"
	"fmt"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/internal/cmdline"
	"github.com/sealroot/sealroot/server/api"
)

type eventsArgs struct {
	machine string
	follow  bool
	last    int
}

func newEventsCmd(e *env) *cobra.Command {
	var args eventsArgs
	c := &cobra.Command{
		Use:   "events",
		Short: "Print recent decisions; with --follow, stream them as they happen",
		Long: `Print the last decisions (attestation verdicts and operator actions), one per
line; --follow keeps printing each new one as the server records it, until
interrupted. With --json each event is one JSON object per line.`,
		Args: cmdline.ExactArgs(0),
		RunE: func(c *cobra.Command, _ []string) error { return runEvents(c, e, args) },
	}
	c.Flags().StringVar(&args.machine, "machine", "", "only events of `MACHINE`")
	c.Flags().BoolVarP(&args.follow, "follow", "f", false, "keep streaming new events")
	c.Flags().IntVar(&args.last, "last", 20, "print the last `N` recorded events first")
	return c
}

func runEvents(c *cobra.Command, e *env, args eventsArgs) error {
	if args.last < 0 {
		return cmdline.Usagef(c, "--last must not be negative")
	}
	ctx, stop := signal.NotifyContext(c.Context(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	q := api.AuditQuery{Machine: args.machine}
	print := func(a *api.AuditEntry) error {
		if e.JSON {
			b, err := json.Marshal(a)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(e.Stdout, "%s\n", b)
			return err
		}
		writeAuditLine(e.Stdout, a)
		return nil
	}
	cl := e.client()
	if args.last > 0 {
		es, err := cl.Audit(ctx, q)
		if err != nil {
			return err
		}
		for _, a := range es[max(0, len(es)-args.last):] {
			if err := print(a); err != nil {
				return err
			}
		}
	}
	if !args.follow {
		return nil
	}
	ready := func() { fmt.Fprintln(e.Stderr, "following new events (interrupt to stop)") }
	return cl.EventsReady(ctx, q, ready, print)
}
