// Command sealroot-agent is the /init of sealroot's initramfs: it runs as
// PID 1, attests the machine to the sealroot server and switches to the root
// file system the server's credential describes (see package agent).
//
// # Synopsis
//
//	sealroot-agent [-config FILE]
//
// As PID 1 it first mounts /proc, /sys, /dev, securityfs, /run and /tmp and
// attaches the console. On failure it prints the reason, waits, and reboots:
// PID 1 never exits. Run as another PID (for tests), it exits 1 instead.
//
// # Options
//
//	-config FILE   agent configuration (default /etc/sealroot/agent.json)
//	-tpm DEVICE    TPM device (default /dev/tpmrm0)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/sealroot/sealroot/agent"
	"github.com/sealroot/sealroot/agent/sysinit"
	"github.com/sealroot/sealroot/agent/tpm"
	"github.com/sealroot/sealroot/server/attest/wire"
)

// rebootDelay leaves the failure on the console long enough to read.
const rebootDelay = 30 * time.Second

func main() {
	pid1 := os.Getpid() == 1
	configPath := flag.String("config", agent.DefaultConfigPath, "agent configuration `file`")
	tpmPath := flag.String("tpm", tpm.DefaultPath, "TPM `device`")
	flag.Parse()
	ctx := context.Background()
	if pid1 {
		defer func() {
			if r := recover(); r != nil {
				halt(ctx, fmt.Errorf("agent panic: %v", r))
			}
		}()
	}
	err := run(ctx, pid1, *configPath, *tpmPath)
	switch {
	case pid1:
		if err == nil {
			err = errors.New("agent returned without handing over")
		}
		halt(ctx, err)
	case err != nil:
		fmt.Fprintf(os.Stderr, "sealroot-agent: %v\n", err)
		os.Exit(1)
	}
}

// halt reports err, reboots, and blocks forever if rebooting failed.
func halt(ctx context.Context, err error) {
	agent.Fail(ctx, os.Stdout, err, rebootDelay, sysinit.Reboot)
	select {}
}

func run(ctx context.Context, pid1 bool, configPath, tpmPath string) error {
	if pid1 {
		if err := sysinit.MountAll("/"); err != nil {
			return fmt.Errorf("mount pseudo file systems: %w", err)
		}
		if err := sysinit.Console(); err != nil {
			fmt.Fprintf(os.Stderr, "sealroot: console: %v\n", err) // keep the inherited stdio
		}
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "sealroot", Output: os.Stderr, Level: hclog.Info})
	cfg, err := agent.LoadConfig(configPath)
	if err != nil {
		return err
	}
	t, closer, err := tpm.Open(tpmPath)
	if err != nil {
		return err
	}
	defer closer.Close()
	// The attestation client is built inside the attest step, after the
	// entropy step: building it may read crypto/rand, which blocks until
	// the CRNG is seeded.
	attester := attesterFunc(func(ctx context.Context) (*wire.Payload, error) {
		a, err := newAttester(cfg, t, log)
		if err != nil {
			return nil, fmt.Errorf("attestation client: %w", err)
		}
		return a.Attest(ctx)
	})
	return agent.Run(ctx, cfg, agent.Deps{
		Console:  os.Stdout,
		Logger:   log,
		Random:   t.Random,
		Attester: attester,
	})
}

// attesterFunc adapts a function to agent.Attester.
type attesterFunc func(ctx context.Context) (*wire.Payload, error)

func (f attesterFunc) Attest(ctx context.Context) (*wire.Payload, error) { return f(ctx) }

// newAttester builds the attestation client.
//
// TODO(attest): STUB. Replace the body with agent/attest.New(...); until
// then every boot fails at the attest step.
func newAttester(cfg *agent.Config, t *tpm.TPM, log hclog.Logger) (agent.Attester, error) {
	return notWired{}, nil
}

// notWired is the placeholder Attester. TODO(attest): delete with the stub.
type notWired struct{}

func (notWired) Attest(context.Context) (*wire.Payload, error) {
	return nil, errors.New("attestation client not wired")
}
