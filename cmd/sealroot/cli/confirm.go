package cli

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/sealroot/sealroot/internal/cmdline"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// errNotConfirmed is a destructive command the operator did not confirm.
var errNotConfirmed = errors.New("not confirmed: nothing done")

// addYes adds --yes to a destructive command.
func addYes(c *cobra.Command, yes *bool) *cobra.Command {
	c.Flags().BoolVarP(yes, "yes", "y", false, "do it without asking (for scripts)")
	return c
}

// confirm asks the operator, on a terminal, whether to do what; --yes
// (yes) answers for scripts. Without a terminal and without --yes it
// refuses: a script must say --yes.
func confirm(c *cobra.Command, e *env, yes bool, what string) error {
	if yes {
		return nil
	}
	f, ok := e.Stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return cmdline.Usagef(c, "%s: not a terminal to ask on; pass --yes to confirm", what)
	}
	fmt.Fprintf(e.Stderr, "%s? [y/N] ", what)
	line, _ := bufio.NewReader(f).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return errNotConfirmed
}
