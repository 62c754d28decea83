package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/internal/cmdline"
	"github.com/sealroot/sealroot/server/api"
)

func newMachineLogCmd(e *env) *cobra.Command {
	var all bool
	c := &cobra.Command{
		Use:   "log MACHINE",
		Short: "Print the boot log the machine's agent sent (newest boot; --all: the last few)",
		Args:  cmdline.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			logs, err := e.client().BootLogs(c.Context(), args[0])
			if err != nil {
				return err
			}
			if !all && len(logs) > 1 {
				logs = logs[len(logs)-1:]
			}
			if e.JSON {
				return e.printJSON(nonNil(logs))
			}
			return writeBootLogs(e.Stdout, logs)
		},
	}
	c.Flags().BoolVar(&all, "all", false, "print every stored boot's log, oldest first")
	return c
}

// writeBootLogs prints each log under a header line. The agent's text is
// passed through safe, line by line, so it cannot drive the terminal.
func writeBootLogs(w io.Writer, logs []api.BootLog) error {
	var b strings.Builder
	if len(logs) == 0 {
		b.WriteString("no boot log: the agent sends it once its tunnel is up\n")
	}
	for _, l := range logs {
		fmt.Fprintf(&b, "== boot log %s from %s", formatTime(l.Time), orDash(safe(l.Remote)))
		if l.Failed != "" {
			fmt.Fprintf(&b, ": %s failed: %s", safe(l.Failed), safe(l.Error))
		}
		b.WriteString("\n")
		for line := range strings.Lines(l.Log) {
			b.WriteString(safe(strings.TrimSuffix(line, "\n")) + "\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
