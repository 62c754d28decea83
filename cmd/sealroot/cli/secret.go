package cli

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/internal/cmdline"
	"github.com/sealroot/sealroot/server/api"
)

// errEmptySecret is returned by secret set for an empty value, most
// likely a mistake (an empty file, nothing piped).
var errEmptySecret = errors.New("secret value is empty")

func newSecretCmd(e *env) *cobra.Command {
	return cmdline.Group("secret", "Manage the secrets released to a machine",
		&cobra.Command{
			Use:   "set MACHINE NAME [FILE|-]",
			Short: "Set a secret from FILE or stdin",
			Long: `Set a machine's secret NAME to the contents of FILE, or of stdin when FILE
is "-" or missing. The value is used byte for byte (a trailing newline is
kept) and is at most 64 KiB. Values are never taken from the command line.`,
			Args: cmdline.ArgsRange(2, 3),
			RunE: func(c *cobra.Command, args []string) error { return runSecretSet(c, e, args) },
		},
		&cobra.Command{
			Use:   "list MACHINE",
			Short: "List the names of a machine's secrets",
			Args:  cmdline.ExactArgs(1),
			RunE:  func(c *cobra.Command, args []string) error { return runSecretList(c, e, args[0]) },
		},
		&cobra.Command{
			Use:   "rm MACHINE NAME",
			Short: "Delete a machine's secret",
			Args:  cmdline.ExactArgs(2),
			RunE:  func(c *cobra.Command, args []string) error { return runSecretRm(c, e, args[0], args[1]) },
		},
	)
}

func runSecretSet(c *cobra.Command, e *env, args []string) error {
	ref, name, file := args[0], args[1], "-"
	if len(args) == 3 {
		file = args[2]
	}
	value, err := readSecret(e, file)
	if err != nil {
		return err
	}
	err = e.client().SetSecret(c.Context(), ref, name, value)
	clear(value)
	if err != nil || e.JSON {
		return err
	}
	_, err = fmt.Fprintf(e.Stdout, "set secret %s of %s\n", safe(name), safe(ref))
	return err
}

// readSecret reads a secret value from file, or stdin for "-".
func readSecret(e *env, file string) ([]byte, error) {
	r, src := e.Stdin, "stdin"
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("reading secret: %w", err)
		}
		defer f.Close()
		r, src = f, file
	} else if isTerminal(e.Stdin) {
		fmt.Fprintln(e.Stderr, "reading the secret from stdin; end with Ctrl-D")
	}
	value, err := io.ReadAll(io.LimitReader(r, api.MaxSecretSize+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("reading secret from %s: %w", src, err)
	case len(value) > api.MaxSecretSize:
		clear(value)
		return nil, fmt.Errorf("secret from %s is larger than %d bytes", src, api.MaxSecretSize)
	case len(value) == 0:
		return nil, fmt.Errorf("%w (read from %s)", errEmptySecret, src)
	}
	return value, nil
}

// isTerminal reports whether r is a character device such as a terminal.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func runSecretList(c *cobra.Command, e *env, ref string) error {
	names, err := e.client().SecretNames(c.Context(), ref)
	if err != nil {
		return err
	}
	if e.JSON {
		if names == nil {
			names = []string{}
		}
		return e.printJSON(names)
	}
	for _, n := range names {
		if _, err := fmt.Fprintln(e.Stdout, safe(n)); err != nil {
			return err
		}
	}
	return nil
}

func runSecretRm(c *cobra.Command, e *env, ref, name string) error {
	if err := e.client().DeleteSecret(c.Context(), ref, name); err != nil || e.JSON {
		return err
	}
	_, err := fmt.Fprintf(e.Stdout, "removed secret %s of %s\n", safe(name), safe(ref))
	return err
}
