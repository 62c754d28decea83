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
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/internal/cmdline"
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
	return cmdline.Exit("sealroot", err, stderr)
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
		newMigrateStoreCmd,
		newPKICmd,
		newEKCmd,
		newSecureBootCmd,
		newInitramfsCmd,
		newUserCmd,
		newServeCmd,
		newVersionCmd,
		newConfigCmd,
		newSetupCmd,
		newClusterCmd,
	}
	root := cmdline.Group("sealroot", "Attested network boot for diskless machines")
	cmdline.Setup(root, e.Stdout, e.Stderr)
	root.CompletionOptions.HiddenDefaultCmd = true // "sealroot completion bash|zsh|fish": packaged completions
	root.Version = version.String()
	root.SetVersionTemplate("sealroot {{.Version}}\n")
	root.SetIn(e.Stdin)
	pf := root.PersistentFlags()
	pf.StringVar(&e.Socket, "socket", DefaultSocket, "admin API socket `path`")
	pf.BoolVar(&e.JSON, "json", false, "print results as JSON")
	for _, sub := range subcommands {
		root.AddCommand(sub(e))
	}
	return root
}
