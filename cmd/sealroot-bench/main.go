// Command sealroot-bench measures sealroot's performance with simulated
// agents (software TPMs and synthetic measured boots from test/loadgen).
// It is apart from the sealroot binary so that the server and its CLI
// link nothing from test/ or agent/.
//
// # Synopsis
//
//	sealroot-bench [--socket PATH] [--json] attest [-n N] [-c C] [--machines M] [--server HOST:PORT --ca FILE]
//	sealroot-bench flood [--idle N] [--half-open N] [--garbage N] [--sources S] [-n N]
//
// # Output and exit codes
//
// Figures go to stdout (with --json, one JSON object), diagnostics to
// stderr. Exit code 0 is success, 1 a failed run (including any failed
// operation), 2 a usage error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/server/api/client"
)

// defaultSocket is where sealroot serve listens for the admin API.
const defaultSocket = "/run/sealroot/admin.sock"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// env is what every command gets: its output and the global flags.
type env struct {
	Stdout io.Writer // results
	Stderr io.Writer // diagnostics

	Socket string // --socket: admin API socket path (with --server)
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

// run runs the command line args (without the program name) and returns
// the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{Stdout: stdout, Stderr: stderr}
	root := newAttestGroup(e)
	root.AddCommand(newFloodCmd(e), newFloodJunkCmd())
	root.Use = "sealroot-bench"
	root.SilenceErrors = true
	root.SilenceUsage = true
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return &usageError{c, err} })
	pf := root.PersistentFlags()
	pf.StringVar(&e.Socket, "socket", defaultSocket, "admin API socket `path` of --server")
	pf.BoolVar(&e.JSON, "json", false, "print results as JSON")
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "sealroot-bench: %s\n", oneLine(err.Error()))
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprint(stderr, ue.cmd.UsageString())
		return 2
	}
	return 1
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

// usageError is a command line mistake; run prints the usage and exits 2.
type usageError struct {
	cmd *cobra.Command
	err error
}

func (u *usageError) Error() string { return u.err.Error() }
func (u *usageError) Unwrap() error { return u.err }

func usagef(c *cobra.Command, format string, args ...any) error {
	return &usageError{c, fmt.Errorf(format, args...)}
}

// noArgs accepts no positional argument.
func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef(c, "%q takes at most 0 argument(s), got %d", c.CommandPath(), len(args))
	}
	return nil
}

// oneLine folds a message onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
