// Package agent is sealroot's boot sequence, run by /init (PID 1) in the
// initramfs: seed the CRNG from the TPM, load kernel modules, bring up the
// network, attest to the sealroot server, mount the root the credential
// describes and switch_root into it (or power off when there is none).
//
// Each stage is a Step printed on the console as it completes, so an
// operator watching a serial console sees where a boot stopped and why.
// Run returns the first failure; the caller (cmd/sealroot-agent) prints it
// and reboots, since PID 1 must never exit.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/sealroot/sealroot/agent/entropy"
	"github.com/sealroot/sealroot/agent/kmod"
	"github.com/sealroot/sealroot/agent/netup"
	"github.com/sealroot/sealroot/agent/provision"
	"github.com/sealroot/sealroot/agent/root"
	"github.com/sealroot/sealroot/agent/sysinit"
	"github.com/sealroot/sealroot/wire"
	"golang.org/x/sys/unix"
)

// NetworkTimeout bounds the wait for a link and a DHCP lease; afterwards
// the agent gives up and the machine reboots into PXE again.
const NetworkTimeout = 5 * time.Minute

// Attester obtains the machine's credential payload from the sealroot
// server. agent/attest implements it; it retries while the machine awaits
// approval and returns typed errors the console message is built from.
type Attester interface {
	Attest(ctx context.Context) (*wire.Payload, error)
}

// Link is a configured network link whose lease must be kept.
type Link interface {
	RenewLoop(ctx context.Context) error
	Close() error
}

// Deps are Run's collaborators. Console, Random and Attester come from
// main; the rest default to the real system and are replaced in tests.
type Deps struct {
	Console  io.Writer      // default os.Stdout
	Logger   hclog.Logger   // default null
	Random   entropy.Source // the TPM's generator, used only if the CRNG is not ready
	Attester Attester       // required
	Stages   *root.Registry // default: the "none" stage only

	// LoadModules loads the configured modules; default kmod.Load.
	LoadModules func(ctx context.Context, modules []string) error
	// Network brings up iface ("" = first with carrier); default netup.Up.
	Network func(ctx context.Context, iface string) (Link, error)
	// SwitchRoot and PowerOff return only on failure; defaults from sysinit.
	SwitchRoot func(newRoot, init string) error
	PowerOff   func() error
	// Tunnel brings up the WireGuard link to the root when the credential
	// carries a tunnel plan; default: a plan is an error (no tunnel support).
	Tunnel func(ctx context.Context, plan *wire.TunnelPlan) error
	// Provision prepares the mounted root newRoot before switch_root:
	// secrets, host name, files (agent/provision). Default: the real
	// system (secrets in a tmpfs under /run, sethostname).
	Provision func(ctx context.Context, newRoot string, p *wire.Payload) error
	// Log keeps what the agent wrote this boot, for the boot report; the
	// caller tees Console and Logger into it. Nil: Run keeps Console's
	// output only.
	Log *BootLog
	// Report sends the boot report to the server at its tunnel address
	// (SendReport over the system's network); nil: no report. It is
	// called once the tunnel is up, just before switch_root or power off,
	// or when a later step fails.
	Report func(ctx context.Context, serverAddr string, r *wire.BootReport) error
}

func (d Deps) withDefaults() Deps {
	if d.Console == nil {
		d.Console = os.Stdout
	}
	if d.Log == nil {
		d.Log = &BootLog{}
		d.Console = io.MultiWriter(d.Console, d.Log)
	}
	if d.Logger == nil {
		d.Logger = hclog.NewNullLogger()
	}
	if d.Random == nil {
		d.Random = func(context.Context, int) ([]byte, error) {
			return nil, errors.New("no hardware random source")
		}
	}
	if d.Stages == nil {
		d.Stages = root.NewRegistry(root.None{})
	}
	if d.LoadModules == nil {
		log := d.Logger
		d.LoadModules = func(_ context.Context, mods []string) error {
			res, err := kmod.Load(kmod.Options{Logger: log}, mods)
			if res != nil {
				log.Info("kernel modules", "loaded", res.Loaded, "warnings", len(res.Warnings))
			}
			return err
		}
	}
	if d.Network == nil {
		log := d.Logger
		d.Network = func(ctx context.Context, iface string) (Link, error) {
			return netup.Up(ctx, netup.Config{Interface: iface, Logger: log})
		}
	}
	if d.SwitchRoot == nil {
		d.SwitchRoot = sysinit.SwitchRoot
	}
	if d.PowerOff == nil {
		d.PowerOff = sysinit.PowerOff
	}
	if d.Provision == nil {
		cfg := provision.Config{
			SecretsDir:  provision.SecretsDir,
			Tmpfs:       true,
			SetHostname: unix.Sethostname,
			Console:     d.Console,
			Logger:      d.Logger,
		}
		d.Provision = func(_ context.Context, newRoot string, p *wire.Payload) error {
			return provision.Run(cfg, newRoot, p)
		}
	}
	return d
}

// boot is the state shared by the steps of one Run.
type boot struct {
	cfg     *Config
	d       Deps
	payload *wire.Payload
	newRoot string
	// tunnelUp is set once the planned tunnel is up: the boot report
	// can reach the server.
	tunnelUp bool

	renewCancel context.CancelFunc
	renewWG     sync.WaitGroup
}

// Run boots the machine. On success it does not return (switch_root or
// power off); it returns the first failure, or nil if a test's PowerOff or
// SwitchRoot returned nil.
func Run(ctx context.Context, cfg *Config, deps Deps) error {
	if deps.Attester == nil {
		return errors.New("agent: no Attester")
	}
	b := &boot{cfg: cfg, d: deps.withDefaults()}
	defer b.stopRenewal()
	timings, err := RunSteps(ctx, b.d.Console, b.steps())
	b.report(ctx, timings, err)
	if err != nil {
		return err
	}
	return b.handOver()
}

// maxReportError bounds the failure message in a boot report.
const maxReportError = 1 << 10

// report sends the boot report when the tunnel came up: the steps'
// timings, the failure if any, and the log with secret values removed.
// Not reaching the server is a warning: the report decides nothing.
func (b *boot) report(ctx context.Context, timings []wire.StageTiming, failure error) {
	if b.d.Report == nil || !b.tunnelUp {
		return
	}
	r := &wire.BootReport{Stages: timings, Log: Scrub(b.d.Log.String(), b.payload)}
	var se *StepError
	if errors.As(failure, &se) {
		r.Failed = se.Step
		msg := Scrub(se.Err.Error(), b.payload)
		if len(msg) > maxReportError {
			msg = strings.ToValidUTF8(msg[:maxReportError], "")
		}
		r.Error = msg
	}
	if err := b.d.Report(ctx, b.payload.Tunnel.ServerAddr, r); err != nil {
		fmt.Fprintf(b.d.Console, "sealroot: warning: boot report not sent: %v\n", err)
		return
	}
	b.d.Logger.Info("boot report sent", "stages", len(timings))
}

func (b *boot) steps() []Step {
	return []Step{
		{"entropy", b.seed},
		{"modules", func(ctx context.Context) error { return b.d.LoadModules(ctx, b.cfg.Modules) }},
		{"network", b.network},
		{"attest", b.attest},
		{"tunnel", b.tunnel},
		{"root", b.mountRoot},
		{"provision", b.provision},
	}
}

func (b *boot) seed(ctx context.Context) error {
	seeded, err := entropy.Seed(ctx, b.d.Random)
	if seeded {
		b.d.Logger.Info("kernel CRNG seeded from the TPM", "bytes", entropy.SeedBytes)
	}
	return err
}

// network brings the link up and keeps its lease renewed until Run
// returns.
func (b *boot) network(ctx context.Context) error {
	nctx, cancel := context.WithTimeout(ctx, NetworkTimeout)
	defer cancel()
	link, err := b.d.Network(nctx, b.cfg.Interface)
	if err != nil {
		return err
	}
	rctx, rcancel := context.WithCancel(ctx)
	b.renewCancel = rcancel
	b.renewWG.Add(1)
	go func() {
		defer b.renewWG.Done()
		defer link.Close()
		if err := link.RenewLoop(rctx); err != nil && rctx.Err() == nil {
			b.d.Logger.Error("lease renewal stopped", "error", err)
		}
	}()
	return nil
}

func (b *boot) stopRenewal() {
	if b.renewCancel != nil {
		b.renewCancel()
		b.renewWG.Wait()
	}
}

func (b *boot) attest(ctx context.Context) error {
	p, err := b.d.Attester.Attest(ctx)
	if err != nil {
		return err
	}
	if p == nil {
		return errors.New("attestation returned no payload")
	}
	b.payload = p
	return nil
}

// tunnel brings up the protected link the server planned, if any.
func (b *boot) tunnel(ctx context.Context) error {
	if b.payload.Tunnel == nil {
		return nil
	}
	if b.d.Tunnel == nil {
		return errors.New("the server planned a WireGuard tunnel but this agent has no tunnel support")
	}
	if err := b.d.Tunnel(ctx, b.payload.Tunnel); err != nil {
		return homeServerDown(b.payload, err)
	}
	b.tunnelUp = true
	return nil
}

func (b *boot) mountRoot(ctx context.Context) error {
	stage, err := b.d.Stages.Lookup(b.payload.Root.Kind)
	if err != nil {
		return err
	}
	b.newRoot, err = stage.Mount(ctx, b.payload)
	return homeServerDown(b.payload, err)
}

// provision puts the secrets, host name and files into the new root.
func (b *boot) provision(ctx context.Context) error {
	if b.newRoot == "" {
		return nil
	}
	return b.d.Provision(ctx, b.newRoot, b.payload)
}

// handOver powers off when there is no root, else switches to it.
func (b *boot) handOver() error {
	p := b.payload
	if b.newRoot == "" {
		fmt.Fprintf(b.d.Console, "sealroot: attested as %s (%s): no root configured, powering off\n", p.MachineName, p.MachineID)
		b.stopRenewal()
		if err := b.d.PowerOff(); err != nil {
			return fmt.Errorf("power off: %w", err)
		}
		return nil
	}
	init := root.Init(p.Root)
	fmt.Fprintf(b.d.Console, "sealroot: attested as %s (%s): switching to %s root, init %s\n", p.MachineName, p.MachineID, p.Root.Kind, init)
	b.stopRenewal()
	if err := b.d.SwitchRoot(b.newRoot, init); err != nil {
		return &StepError{Step: "switch_root", Err: err}
	}
	return nil
}

// Fail prints err on console, waits delay (or until ctx is done) so an
// operator can read it, and calls reboot. It returns reboot's error: the
// caller, PID 1, must then block forever rather than exit.
func Fail(ctx context.Context, console io.Writer, err error, delay time.Duration, reboot func() error) error {
	fmt.Fprintf(console, "sealroot: boot failed: %v\nsealroot: rebooting in %s\n", err, delay)
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	if err := reboot(); err != nil {
		fmt.Fprintf(console, "sealroot: reboot failed: %v; halting\n", err)
		return err
	}
	return nil
}
