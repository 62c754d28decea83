package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/internal/cmdline"
	"github.com/sealroot/sealroot/server/config"
)

// DefaultConfig is the configuration file of the packaged daemon.
const DefaultConfig = "/etc/sealroot/sealroot.json"

func newConfigCmd(e *env) *cobra.Command {
	check := &cobra.Command{
		Use:   "check [FILE]",
		Short: "Check a configuration file and print every mistake (default " + DefaultConfig + ")",
		Long: `Check a configuration file as "sealroot serve" does before it starts anything:
one JSON object, no unknown fields, values of the right type, valid addresses,
durations, names and log level. Every mistake is printed on its own line with
the field's path; the exit code is 1 when there is any. See docs/configuration.md.`,
		Args: cmdline.ArgsRange(0, 1),
		RunE: func(c *cobra.Command, args []string) error {
			path := DefaultConfig
			if len(args) == 1 {
				path = args[0]
			}
			if _, err := config.LoadConfig(path); err != nil {
				return configErrors(e, err)
			}
			_, err := fmt.Fprintf(e.Stdout, "%s: ok\n", path)
			return err
		},
	}
	return cmdline.Group("config", "Check the daemon's configuration", check)
}

// configErrors prints a configuration error's lines to stderr, one
// mistake each, and returns a one-line summary for Main.
func configErrors(e *env, err error) error {
	lines := strings.Split(strings.TrimSpace(err.Error()), "\n")
	for _, l := range lines {
		fmt.Fprintf(e.Stderr, "%s\n", l)
	}
	n := len(lines)
	if n > 1 && strings.HasSuffix(lines[0], ":") {
		n-- // "config FILE:" heads the list
	}
	if n == 1 {
		return errors.New("invalid configuration")
	}
	return fmt.Errorf("invalid configuration: %d mistakes", n)
}
