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
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/sealroot/sealroot/internal/cmdline"
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
	cmdline.Setup(root, stdout, stderr)
	root.CompletionOptions.DisableDefaultCmd = true
	pf := root.PersistentFlags()
	pf.StringVar(&e.Socket, "socket", defaultSocket, "admin API socket `path` of --server")
	pf.BoolVar(&e.JSON, "json", false, "print results as JSON")
	root.SetArgs(args)
	return cmdline.Exit("sealroot-bench", root.ExecuteContext(ctx), stderr)
}
