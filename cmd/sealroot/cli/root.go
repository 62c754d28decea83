// Package cli implements the sealroot command line. Each noun has a file
// (machine.go, secret.go, ...) with a constructor registered in
// newRootCmd. Commands other than serve are thin clients of the admin API
// (package api/client) on the --socket Unix socket.
//
// # Synopsis
//
//	sealroot [--socket PATH] [--json] NOUN VERB [ARGS]
//
// # Output and exit codes
//
// Results go to stdout, diagnostics to stderr. With --json, results are
// stable JSON (machines as api.Machine). Exit code 0 is success, 1 a
// failed command (one line "sealroot: <reason>" on stderr), 2 a usage
// error (the reason, then the command's usage, on stderr).
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/server/api/client"
	"github.com/sealroot/sealroot/version"
)

// DefaultSocket is where sealroot serve listens for the admin API.
const DefaultSocket = "/run/sealroot/admin.sock"

// env is what every command gets: its I/O and the global flags.
type env struct {
	Stdin  io.Reader
	Stdout io.Writer // results
	Stderr io.Writer // diagnostics

	Socket string // --socket: admin API socket path
	JSON   bool   // --json: print results as JSON
}

// client returns a client of the admin API on e.Socket.
func (e *env) client() *client.Client { return client.New(e.Socket) }

// printJSON writes v to stdout as indented JSON.
func (e *env) printJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.Stdout, "%s\n", b)
	return err
}

// Main runs the sealroot command line with args (without the program
// name) and returns the process exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{Stdin: stdin, Stdout: stdout, Stderr: stderr}
	root := newRootCmd(e)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "sealroot: %s\n", oneLine(err.Error()))
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprint(stderr, ue.cmd.UsageString())
		return 2
	}
	return 1
}

func newRootCmd(e *env) *cobra.Command {
	// Top-level commands: one line each.
	subcommands := []func(*env) *cobra.Command{
		newMachineCmd,
		newStatusCmd,
		newEventsCmd,
		newAuditCmd,
		newSecretCmd,
		newImageCmd,
		newGroupsCmd,
		newDHCPCmd,
		newTunnelCmd,
		newISCSICmd,
		newNFSCmd,
		newBackupCmd,
		newRestoreCmd,
		newPKICmd,
		newEKCmd,
		newSecureBootCmd,
		newInitramfsCmd,
		newUserCmd,
		newServeCmd,
		newVersionCmd,
		newConfigCmd,
		newSetupCmd,
	}
	root := newGroupCmd("sealroot", "Attested network boot for diskless machines")
	root.SilenceErrors = true
	root.SilenceUsage = true
	root.CompletionOptions.HiddenDefaultCmd = true // "sealroot completion bash|zsh|fish": packaged completions
	root.Version = version.String()
	root.SetVersionTemplate("sealroot {{.Version}}\n")
	root.SetIn(e.Stdin)
	root.SetOut(e.Stdout)
	root.SetErr(e.Stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return &usageError{c, err} })
	pf := root.PersistentFlags()
	pf.StringVar(&e.Socket, "socket", DefaultSocket, "admin API socket `path`")
	pf.BoolVar(&e.JSON, "json", false, "print results as JSON")
	for _, sub := range subcommands {
		root.AddCommand(sub(e))
	}
	return root
}

// newGroupCmd returns a command that only holds subcommands: run alone or
// with an unknown subcommand, it is a usage error.
func newGroupCmd(use, short string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef(c, "unknown command %q for %q", args[0], c.CommandPath())
			}
			return nil
		},
		RunE: func(c *cobra.Command, _ []string) error {
			return usagef(c, "%q needs a subcommand", c.CommandPath())
		},
	}
	c.AddCommand(subs...)
	return c
}

// usageError is a command line mistake; Main prints the usage and exits 2.
type usageError struct {
	cmd *cobra.Command
	err error
}

func (u *usageError) Error() string { return u.err.Error() }
func (u *usageError) Unwrap() error { return u.err }

func usagef(c *cobra.Command, format string, args ...any) error {
	return &usageError{c, fmt.Errorf(format, args...)}
}

// argsRange accepts between min and max positional arguments.
func argsRange(min, max int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		switch {
		case len(args) < min:
			return usagef(c, "%q needs %d argument(s), got %d", c.CommandPath(), min, len(args))
		case len(args) > max:
			return usagef(c, "%q takes at most %d argument(s), got %d", c.CommandPath(), max, len(args))
		}
		return nil
	}
}

// exactArgs accepts exactly n positional arguments.
func exactArgs(n int) cobra.PositionalArgs { return argsRange(n, n) }

// oneLine folds a message onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
