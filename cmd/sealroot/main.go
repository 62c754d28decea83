// Command sealroot is the sealroot server and its operator CLI: "sealroot
// serve" runs the daemon, every other command talks to it over the admin
// socket. See package cli for the commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/sealroot/sealroot/cmd/sealroot/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
