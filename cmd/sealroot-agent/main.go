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
// Started as argv[0] "@sealroot-iscsi" (by its own iSCSI root stage,
// before switch_root) it is the iSCSI keeper daemon instead: see
// agent/iscsi.RunKeeper.
//
// # Options
//
//	-config FILE   agent configuration (default /etc/sealroot/agent.json)
//	-tpm DEVICE    TPM device (default /dev/tpmrm0)
package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/sealroot/sealroot/agent"
	"github.com/sealroot/sealroot/agent/attest"
	"github.com/sealroot/sealroot/agent/console"
	"github.com/sealroot/sealroot/agent/hints"
	initiator "github.com/sealroot/sealroot/agent/iscsi"
	"github.com/sealroot/sealroot/agent/root"
	iscsiroot "github.com/sealroot/sealroot/agent/root/iscsi"
	nfsroot "github.com/sealroot/sealroot/agent/root/nfs"
	"github.com/sealroot/sealroot/agent/root/volatile"
	"github.com/sealroot/sealroot/agent/sysinit"
	"github.com/sealroot/sealroot/agent/tpm"
	agenttunnel "github.com/sealroot/sealroot/agent/tunnel"
	"github.com/sealroot/sealroot/version"
	"github.com/sealroot/sealroot/wire"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// rebootDelay leaves the failure on the console long enough to read.
const rebootDelay = 30 * time.Second

func main() {
	if strings.HasPrefix(filepath.Base(os.Args[0]), initiator.KeeperName) {
		os.Exit(keeper())
	}
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
	agent.Fail(ctx, consoles(), err, rebootDelay, sysinit.Reboot)
	select {}
}

// consoles is every active kernel console (the screen and the serial
// port with "console=ttyS0 console=tty0"), else stdout (/dev/console).
func consoles() io.Writer {
	w, err := console.Open("/sys", "/dev")
	if err != nil {
		fmt.Fprintf(os.Stderr, "sealroot: %v; writing to /dev/console only\n", err)
		return os.Stdout
	}
	return w
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
	var out, logOut io.Writer = os.Stdout, os.Stderr
	if pid1 {
		out = consoles()
		logOut = out
	}
	// Everything the agent prints also goes to its boot log, which it
	// sends the server once the tunnel is up (secret values removed).
	bootLog := &agent.BootLog{}
	out, logOut = io.MultiWriter(out, bootLog), io.MultiWriter(logOut, bootLog)
	log := hclog.New(&hclog.LoggerOptions{Name: "sealroot", Output: logOut, Level: hclog.Info})
	cfg, err := agent.LoadConfig(configPath)
	if err != nil {
		return err
	}
	applyCmdline(cfg, out)
	t, closer, err := tpm.Open(tpmPath)
	if err != nil {
		return err
	}
	defer closer.Close()
	// The attestation client is built inside the attest step, after the
	// entropy step: building it may read crypto/rand, which blocks until
	// the CRNG is seeded.
	wg := &wgKey{}
	attester := attesterFunc(func(ctx context.Context) (*wire.Payload, error) {
		a, err := newAttester(cfg, t, wg, out, log)
		if err != nil {
			return nil, fmt.Errorf("attestation client: %w", err)
		}
		return a.Attest(ctx)
	})
	return agent.Run(ctx, cfg, agent.Deps{
		Console:  out,
		Logger:   log,
		Random:   t.Random,
		Attester: attester,
		Tunnel:   wg.up,
		Stages:   stages(log),
		Log:      bootLog,
		Report: func(ctx context.Context, serverAddr string, r *wire.BootReport) error {
			var d net.Dialer
			return agent.SendReport(ctx, d.DialContext, serverAddr, r)
		},
	})
}

// stages are the root stages this agent knows.
func stages(log hclog.Logger) *root.Registry {
	iscsi := &iscsiroot.Stage{Logger: log, Keep: startKeeper}
	return root.NewRegistry(root.None{}, iscsi, &nfsroot.Stage{Logger: log},
		&volatile.Stage{Logger: log, ISCSI: iscsi.MountBase})
}

// startKeeper starts the iSCSI keeper daemon, logging to the console.
func startKeeper(t initiator.Target, d *initiator.Disk) error {
	return initiator.StartKeeper(t, d, os.Stdout)
}

// keeper is the body of the @sealroot-iscsi daemon: the handover on fd 3,
// the ready line on fd 4. It outlives switch_root and ignores the
// signals an init sends at shutdown (the root's storage must stay).
func keeper() int {
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	log := hclog.New(&hclog.LoggerOptions{Name: "sealroot-iscsi", Output: os.Stderr, Level: hclog.Info})
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte("-1000"), 0); err != nil {
		log.Warn("cannot protect the keeper from the OOM killer", "error", err)
	}
	err := initiator.RunKeeper(context.Background(), os.NewFile(3, "handover"), os.NewFile(4, "ready"), log)
	log.Error("keeper stopped", "error", err)
	return 1
}

// applyCmdline takes the attestation servers from the kernel command line
// (sealroot.server=), if it lists any. A bad list is reported and the
// configured servers are kept: the boot may still succeed.
func applyCmdline(cfg *agent.Config, out io.Writer) {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		fmt.Fprintf(out, "sealroot: kernel command line: %v; using the configured servers\n", err)
		return
	}
	if err := cfg.ApplyCmdline(string(b)); err != nil {
		fmt.Fprintf(out, "sealroot: %v; using the configured servers\n", err)
		return
	}
	fmt.Fprintf(out, "sealroot: attestation servers: %s\n", strings.Join(cfg.Servers, " "))
}

// attesterFunc adapts a function to agent.Attester.
type attesterFunc func(ctx context.Context) (*wire.Payload, error)

func (f attesterFunc) Attest(ctx context.Context) (*wire.Payload, error) { return f(ctx) }

// newAttester builds the attestation client: the TPM's EK and AK, the
// machine's hints and event log, and the pinned sealroot CA.
func newAttester(cfg *agent.Config, t *tpm.TPM, wg *wgKey, out io.Writer, log hclog.Logger) (agent.Attester, error) {
	roots, err := cfg.CertPool()
	if err != nil {
		return nil, err
	}
	h := hints.Gather("/sys")
	h.AgentVer = version.String()
	return &tpmAttester{cfg: cfg, tpm: t, roots: roots, hints: h, wg: wg, out: out, log: log}, nil
}

// wgKey is this boot's WireGuard key: made after the entropy step, its
// public half goes to the server inside the attested session, and the
// tunnel step uses it when the credential plans a tunnel.
type wgKey struct {
	priv wgtypes.Key
	made bool
}

func (k *wgKey) public() ([]byte, error) {
	if !k.made {
		priv, err := agenttunnel.NewKey()
		if err != nil {
			return nil, fmt.Errorf("wireguard key: %w", err)
		}
		k.priv, k.made = priv, true
	}
	pub := k.priv.PublicKey()
	return pub[:], nil
}

func (k *wgKey) up(ctx context.Context, plan *wire.TunnelPlan) error {
	if !k.made {
		return errors.New("no WireGuard key was sent to the server")
	}
	return agenttunnel.Up(ctx, plan, k.priv)
}

// tpmAttester runs the attestation with keys loaded for this attempt only.
type tpmAttester struct {
	cfg   *agent.Config
	tpm   *tpm.TPM
	roots *x509.CertPool
	hints wire.Hints
	wg    *wgKey
	out   io.Writer // status lines: every console
	log   hclog.Logger
}

func (a *tpmAttester) Attest(ctx context.Context) (*wire.Payload, error) {
	keys, err := a.tpm.LoadKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("load TPM keys: %w", err)
	}
	defer keys.Close()
	a.log.Info("TPM endorsement key", "kind", keys.EKKind.Name, "ek_cert_bytes", len(keys.EKCert), "ek_chain_entries", len(keys.EKChain))
	wgPub, err := a.wg.public()
	if err != nil {
		return nil, err
	}
	c, err := attest.New(attest.Config{
		WireGuardKey: wgPub,
		Servers:      a.cfg.Servers,
		ServerName:   a.cfg.ServerName,
		Roots:        a.roots,
		Hints:        a.hints,
		Logger:       a.log,
		Login:        consoleLogin(a.out),
		Choose:       askMenu(a.out, a.hints.Firmware),
		Device: &attest.TPMDevice{
			TPM:          a.tpm,
			Keys:         keys,
			ReadEventLog: func() ([]byte, error) { return hints.EventLog("/sys") },
		},
	})
	if err != nil {
		return nil, err
	}
	res, err := c.Attest(ctx, a.out)
	if errors.Is(err, attest.ErrLocalDisk) {
		return nil, bootLocalDisk(a.out)
	}
	if err != nil {
		return nil, err
	}
	return res.Payload, nil
}
