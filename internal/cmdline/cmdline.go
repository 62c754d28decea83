// Package cmdline holds the command-line conventions shared by sealroot's
// commands (sealroot, sealroot-bench): usage errors exit 2 and print the
// command's usage, other errors exit 1, and commands that only group
// subcommands refuse to run alone.
package cmdline

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// UsageError is a command line mistake: Exit prints the usage of Cmd and
// returns 2.
type UsageError struct {
	Cmd *cobra.Command
	Err error
}

func (u *UsageError) Error() string { return u.Err.Error() }
func (u *UsageError) Unwrap() error { return u.Err }

// Usagef returns a UsageError of c with a formatted message.
func Usagef(c *cobra.Command, format string, args ...any) error {
	return &UsageError{c, fmt.Errorf(format, args...)}
}

// Setup makes root's flag errors usage errors and leaves the printing of
// errors and usage to Exit.
func Setup(root *cobra.Command, stdout, stderr io.Writer) {
	root.SilenceErrors = true
	root.SilenceUsage = true
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return &UsageError{c, err} })
}

// Exit prints err, prefixed by the program name, on stderr and returns the
// process exit code: 0 for nil, 2 (after the usage) for a UsageError, 1
// for anything else.
func Exit(program string, err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "%s: %s\n", program, OneLine(err.Error()))
	var ue *UsageError
	if errors.As(err, &ue) {
		fmt.Fprint(stderr, ue.Cmd.UsageString())
		return 2
	}
	return 1
}

// Group returns a command that only holds subcommands: run alone or with an
// unknown subcommand, it is a usage error.
func Group(use, short string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return Usagef(c, "unknown command %q for %q", args[0], c.CommandPath())
			}
			return nil
		},
		RunE: func(c *cobra.Command, _ []string) error {
			return Usagef(c, "%q needs a subcommand", c.CommandPath())
		},
	}
	c.AddCommand(subs...)
	return c
}

// ArgsRange accepts between min and max positional arguments.
func ArgsRange(min, max int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		switch {
		case len(args) < min:
			return Usagef(c, "%q needs %d argument(s), got %d", c.CommandPath(), min, len(args))
		case len(args) > max:
			return Usagef(c, "%q takes at most %d argument(s), got %d", c.CommandPath(), max, len(args))
		}
		return nil
	}
}

// ExactArgs accepts exactly n positional arguments.
func ExactArgs(n int) cobra.PositionalArgs { return ArgsRange(n, n) }

// NoArgs accepts no positional argument.
func NoArgs(c *cobra.Command, args []string) error { return ArgsRange(0, 0)(c, args) }

// OneLine folds a message onto one line.
func OneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
