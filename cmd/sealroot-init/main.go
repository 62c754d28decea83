// Command sealroot-init is the initramfs's /init: a small first stage that
// seeds the kernel's CRNG from the TPM and then executes the agent in its
// place, so the agent stays PID 1.
//
// It exists because of the entropy trap: the agent links packages whose
// initialisation reads crypto/rand (quic-go does), which blocks in
// getrandom(2) until the kernel's CRNG is ready, before the agent's main
// could seed it. This binary links nothing that reads crypto/rand at start;
// a test checks that with strace.
//
// # Synopsis
//
//	sealroot-init [-agent PATH] [-tpm DEVICE] [agent flags...]
//
// Unknown flags and arguments are passed to the agent.
package main

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/sealroot/sealroot/agent/entropy"
	"github.com/sealroot/sealroot/agent/sysinit"
	"github.com/sealroot/sealroot/agent/tpmrand"
)

// Defaults; the initramfs builder installs the agent at AgentPath.
const (
	AgentPath = "/bin/sealroot-agent"
	TPMPath   = "/dev/tpmrm0"
	seedLimit = 30 * time.Second
)

func main() {
	agent, tpmPath := AgentPath, TPMPath
	args := []string{AgentPath}
	for i := 1; i < len(os.Args); i++ {
		switch a := os.Args[i]; {
		case a == "-agent" && i+1 < len(os.Args):
			agent = os.Args[i+1]
			i++
		case a == "-tpm" && i+1 < len(os.Args):
			tpmPath = os.Args[i+1]
			i++
			args = append(args, "-tpm", tpmPath)
		default:
			args = append(args, a)
		}
	}
	if os.Getpid() == 1 {
		if err := sysinit.MountAll("/"); err != nil {
			fmt.Fprintf(os.Stderr, "sealroot: mount pseudo file systems: %v\n", err)
		}
	}
	seed(tpmPath)
	args[0] = agent
	err := syscall.Exec(agent, args, os.Environ())
	// Exec returned: the agent is missing. PID 1 must never exit.
	fmt.Fprintf(os.Stderr, "sealroot: cannot start the agent %s: %v\n", agent, err)
	if os.Getpid() == 1 {
		time.Sleep(30 * time.Second)
		sysinit.Reboot()
		select {}
	}
	os.Exit(1)
}

// seed tops up the CRNG from the TPM when it is not ready. Failure is
// reported, not fatal: the agent then waits for the kernel's own entropy.
func seed(tpmPath string) {
	ctx, cancel := context.WithTimeout(context.Background(), seedLimit)
	defer cancel()
	if ready, err := entropy.Ready(); err == nil && ready {
		fmt.Println("sealroot: kernel CRNG already seeded")
		return
	}
	t, err := tpmrand.Open(tpmPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sealroot: CRNG not ready and no TPM to seed it: %v\n", err)
		return
	}
	defer t.Close()
	start := time.Now()
	seeded, err := entropy.Seed(ctx, func(ctx context.Context, n int) ([]byte, error) {
		return tpmrand.Random(ctx, t, n)
	})
	switch {
	case err != nil:
		fmt.Fprintf(os.Stderr, "sealroot: seeding the CRNG from the TPM failed: %v\n", err)
	case seeded:
		fmt.Printf("sealroot: kernel CRNG seeded from the TPM (%d bytes, %s)\n", entropy.SeedBytes, time.Since(start).Round(time.Millisecond))
	}
}
