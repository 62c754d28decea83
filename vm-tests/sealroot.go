package vmtest

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealroot/sealroot/initramfs"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/test/testenv"
	"github.com/sealroot/sealroot/wire"
)

// Addresses of the sealroot server in the lab (the default lab bridge).
const (
	SealrootIP         = "10.77.0.1"
	SealrootName       = "sealroot.lab"
	SealrootAttestPort = "4433"
)

// Sealroot is a `sealroot serve` running in a [Lab] with full DHCP, TFTP,
// HTTP boot and attestation on the lab bridge, and the state directory
// the CLI reaches through the admin socket (the lab shares the host's
// mount namespace).
type Sealroot struct {
	// Bin is the sealroot binary.
	Bin string
	// StateDir is the server's state directory.
	StateDir string
	// Socket is the admin API socket.
	Socket string
	// Logf receives each CLI command line; default t.Logf.
	Logf func(format string, args ...any)
}

// sealrootBuild is what every Sealroot of a test process shares: the
// binaries, one PKI (so one agent configuration) and the initramfs and
// kernel built from them. Building takes minutes, so it happens once.
type sealrootBuild struct {
	once sync.Once
	err  error
	dir  string // removed by TestMain

	bin       string // sealroot
	pki       string // pki/ of a state dir made by `sealroot pki init`
	initramfs string
	vmlinuz   string
}

var shared sealrootBuild

// removeSharedBuild deletes the process's build directory (TestMain).
func removeSharedBuild() {
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
}

// buildSealroot builds everything once per test process.
func buildSealroot(ctx context.Context, t testing.TB) *sealrootBuild {
	t.Helper()
	shared.once.Do(func() {
		start := time.Now()
		shared.err = shared.build(ctx, t)
		t.Logf("vmtest: built sealroot, agent and initramfs in %s", time.Since(start).Round(time.Second))
	})
	if errors.Is(shared.err, initramfs.ErrToolMissing) && !testenv.CI() {
		t.Skipf("vmtest: %v", shared.err)
	}
	if shared.err != nil {
		t.Fatalf("vmtest: build sealroot: %v", shared.err)
	}
	return &shared
}

func (b *sealrootBuild) build(ctx context.Context, t testing.TB) error {
	dir, err := os.MkdirTemp("", "vmtest-sealroot-")
	if err != nil {
		return err
	}
	b.dir = dir
	b.bin = filepath.Join(dir, "sealroot")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", b.bin, "github.com/sealroot/sealroot/cmd/sealroot")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build cmd/sealroot: %w: %s", err, out)
	}
	agentBin := filepath.Join(dir, "sealroot-agent")
	if err := initramfs.BuildAgent(ctx, "github.com/sealroot/sealroot/cmd/sealroot-agent", agentBin); err != nil {
		return err
	}
	initBin := filepath.Join(dir, "sealroot-init")
	if err := initramfs.BuildAgent(ctx, "github.com/sealroot/sealroot/cmd/sealroot-init", initBin); err != nil {
		return err
	}
	state := filepath.Join(dir, "state")
	if out, err := exec.CommandContext(ctx, b.bin, "pki", "init", "--state-dir", state,
		"--ip", SealrootIP, "--dns", SealrootName).CombinedOutput(); err != nil {
		return fmt.Errorf("sealroot pki init: %w: %s", err, out)
	}
	b.pki = filepath.Join(state, "pki")
	k, err := initramfs.FetchKernel(ctx, CacheDir(t))
	if err != nil {
		return fmt.Errorf("fetch kernel: %w", err)
	}
	b.vmlinuz = k.VMLinuz
	return b.buildInitramfs(ctx, k, agentBin, initBin)
}

func (b *sealrootBuild) buildInitramfs(ctx context.Context, k *initramfs.Kernel, agentBin, initBin string) error {
	ca, err := os.ReadFile(filepath.Join(b.pki, "ca.crt"))
	if err != nil {
		return err
	}
	cfg, err := json.Marshal(map[string]any{
		"servers":     []string{SealrootIP + ":" + SealrootAttestPort},
		"server_name": SealrootName,
		"ca_pem":      string(ca),
	})
	if err != nil {
		return err
	}
	b.initramfs = filepath.Join(b.dir, "initramfs.cpio.gz")
	f, err := os.Create(b.initramfs)
	if err != nil {
		return err
	}
	_, err = initramfs.Build(ctx, initramfs.Options{
		AgentBinary:   agentBin,
		InitBinary:    initBin,
		ModulesRoot:   k.ModulesRoot,
		KernelVersion: k.Version,
		AgentConfig:   cfg,
		// Compression: the builder's default, what operators get.
	}, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("build initramfs: %w", err)
	}
	return nil
}

// SealrootOptions configures startSealroot.
type SealrootOptions struct {
	// TPMs are the TPMs whose local CAs the server trusts for EK
	// certificates. The bundle is read once at start.
	TPMs []*TPM
	// Cmdline is the kernel command line of the boot script; default
	// the lab's serial-only "console=ttyS0 panic=10" (sealroot's default
	// adds the screen, console=tty0, which these VMs do not have).
	Cmdline string
	// Extra holds further top-level sections of the server configuration
	// (config.Config as JSON), e.g. "tunnel" or "iscsi"; they are merged
	// over the lab's defaults.
	Extra map[string]any
	// UKI serves a uki.efi the test builds (the same kernel and sealroot
	// initramfs joined with Cmdline by uki.BuildFile, see
	// [Sealroot.ServeUKI]) as an operator-provided boot.uki, which the
	// test may replace. Without it UEFI clients boot the UKI the server
	// builds itself (the default, boot.efi_boot "uki"). The server
	// predicts PCRs 4, 11 and 12 either way.
	UKI bool
	// HTTPBoot, with UKI, has UEFI firmware HTTP boot clients load uki.efi
	// directly (boot.http_boot) and turns TFTP off (see [Sealroot.ServeHTTPBoot]).
	HTTPBoot bool
	// SignUKI, with UKI, signs uki.efi for Secure Boot with the snakeoil
	// key (see [Sealroot.SignUKI]).
	SignUKI bool
	// SecureBootVars, when set, is boot.secure_boot_vars: a directory of
	// the machines' Secure Boot variables (see [WriteSecureBootVars]),
	// from which the server predicts PCR 7.
	SecureBootVars string
	// AttestServers, when set, is boot.attest_servers: the attestation
	// servers the agent tries (kernel argument sealroot.server=).
	AttestServers []string
	// Shim, with HTTPBoot and SignUKI, has HTTP boot clients load
	// Debian's Microsoft-signed shim, which loads the signed UKI as
	// grubx64.efi (see [Sealroot.ServeShim]).
	Shim bool
}

// withShortLetGo returns extra (server configuration sections, see
// SealrootOptions.Extra) with a limits section in which a machine counts
// as off 20 seconds after its tunnel peer's last handshake
// (limits.let_go_after) and as booting for 20 seconds after its root was
// handed out (limits.boot_grace), instead of the defaults' minutes: for
// tests that power a machine off and then capture, back up or free its
// root.
func withShortLetGo(extra map[string]any) map[string]any {
	out := maps.Clone(extra)
	out["limits"] = map[string]any{"let_go_after": "20s", "boot_grace": "20s"}
	return out
}

// startSealroot runs `sealroot serve` in lab until t ends: full DHCP on the
// lab bridge, TFTP, HTTP (boot script, kernel, sealroot initramfs) and
// attestation, trusting the local CAs of opts.TPMs for EK certificates. It
// also sends IPv6 router advertisements (see
// [Lab.ServeRouterAdvertisements]). It returns once the admin socket
// answers.
func startSealroot(ctx context.Context, t testing.TB, lab *Lab, opts SealrootOptions) *Sealroot {
	t.Helper()
	RequireTools(t, "nsenter", "/usr/lib/ipxe/undionly.kpxe", "/usr/lib/ipxe/ipxe.efi")
	b := buildSealroot(ctx, t)
	state := t.TempDir()
	t.Cleanup(func() { clearImmutable(filepath.Join(state, "images", "bases")) })
	s := &Sealroot{Bin: b.bin, StateDir: state, Socket: filepath.Join(state, "admin.sock"), Logf: t.Logf}
	if err := s.prepare(b, opts.TPMs); err != nil {
		t.Fatalf("vmtest: prepare sealroot state: %v", err)
	}
	cfgPath, err := s.writeConfig(lab, opts.Cmdline, opts.Extra)
	if err != nil {
		t.Fatalf("vmtest: %v", err)
	}
	if opts.SecureBootVars != "" {
		if err := s.setBoot(cfgPath, "secure_boot_vars", opts.SecureBootVars); err != nil {
			t.Fatalf("vmtest: %v", err)
		}
	}
	if len(opts.AttestServers) > 0 {
		if err := s.setBoot(cfgPath, "attest_servers", opts.AttestServers); err != nil {
			t.Fatalf("vmtest: %v", err)
		}
	}
	if opts.UKI {
		if err := s.ServeUKI(b, cfgPath, opts.Cmdline); err != nil {
			t.Fatalf("vmtest: %v", err)
		}
		if opts.HTTPBoot {
			if err := s.ServeHTTPBoot(cfgPath); err != nil {
				t.Fatalf("vmtest: %v", err)
			}
		}
		if opts.SignUKI {
			if err := s.SignUKI(ctx); err != nil {
				t.Fatalf("vmtest: %v", err)
			}
		}
		if opts.Shim {
			if err := s.ServeShim(cfgPath); err != nil {
				t.Fatalf("vmtest: %v", err)
			}
		}
	}
	lab.ServeRouterAdvertisements(t)
	lab.Start(t, b.bin, "serve", "--config", cfgPath, "--log-level", "debug")
	if err := s.waitReady(ctx); err != nil {
		t.Fatalf("vmtest: %v", err)
	}
	return s
}

// prepare fills the state directory: the shared PKI, the boot artifacts
// and the EK CA bundle (one PEM file per certificate of each TPM's CA).
func (s *Sealroot) prepare(b *sealrootBuild, tpms []*TPM) error {
	pkiDir := filepath.Join(s.StateDir, "pki")
	if err := os.MkdirAll(pkiDir, 0o700); err != nil {
		return err
	}
	entries, err := os.ReadDir(b.pki)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := copyFile(filepath.Join(b.pki, e.Name()), filepath.Join(pkiDir, e.Name())); err != nil {
			return err
		}
	}
	art := filepath.Join(s.StateDir, "artifacts")
	if err := os.MkdirAll(art, 0o755); err != nil {
		return err
	}
	if err := copyFile(b.vmlinuz, filepath.Join(art, "vmlinuz")); err != nil {
		return err
	}
	if err := copyFile(b.initramfs, filepath.Join(art, "initramfs.cpio.gz")); err != nil {
		return err
	}
	return s.writeEKBundle(tpms)
}

func (s *Sealroot) ekBundleDir() string { return filepath.Join(s.StateDir, "ek-ca") }

func (s *Sealroot) writeEKBundle(tpms []*TPM) error {
	if err := os.MkdirAll(s.ekBundleDir(), 0o755); err != nil {
		return err
	}
	for i, tp := range tpms {
		certs, err := tp.CACerts()
		if err != nil {
			return fmt.Errorf("TPM CA: %w", err)
		}
		for j, c := range certs {
			p := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
			name := filepath.Join(s.ekBundleDir(), fmt.Sprintf("tpm%d-%d.pem", i, j))
			if err := os.WriteFile(name, p, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeConfig writes the server configuration (config.Config as JSON),
// with the sections of extra on top.
func (s *Sealroot) writeConfig(lab *Lab, cmdline string, extra map[string]any) (string, error) {
	boot := map[string]any{
		"server_ip":      SealrootIP,
		"http_port":      8080,
		"dhcp_interface": lab.Bridge,
		"dhcp_mode":      "full",
		"pool": map[string]any{
			"subnet": "10.77.0.0/24",
			"start":  "10.77.0.100",
			"end":    "10.77.0.200",
			"router": SealrootIP,
		},
	}
	if cmdline == "" {
		cmdline = defaultCmdline
	}
	boot["cmdline"] = cmdline
	cfg := map[string]any{
		"state_dir":    s.StateDir,
		"attest_addr":  SealrootIP + ":" + SealrootAttestPort,
		"admin_socket": s.Socket,
		"boot":         boot,
	}
	if entries, _ := os.ReadDir(s.ekBundleDir()); len(entries) > 0 {
		cfg["ek_ca_bundle"] = []string{s.ekBundleDir()}
	}
	for k, v := range extra {
		cfg[k] = v
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(s.StateDir, "sealroot.json")
	return path, os.WriteFile(path, b, 0o600)
}

// waitReady polls `sealroot machine list` until the admin API answers.
func (s *Sealroot) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		_, err := s.run(ctx, "machine", "list")
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sealroot admin socket %s never answered: %w", s.Socket, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// CLI runs `sealroot --socket <Socket> args...`, logs the command line and
// returns its standard output.
func (s *Sealroot) CLI(ctx context.Context, args ...string) (string, error) {
	s.Logf("$ sealroot %s", strings.Join(args, " "))
	return s.run(ctx, args...)
}

func (s *Sealroot) run(ctx context.Context, args ...string) (string, error) {
	stdout, _, err := s.run2(ctx, args...)
	return stdout, err
}

// CLIStderr is CLI that also returns the standard error (warnings).
func (s *Sealroot) CLIStderr(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	s.Logf("$ sealroot %s", strings.Join(args, " "))
	return s.run2(ctx, args...)
}

// CLIStdin is CLI with stdin as the command's standard input (never
// logged: it may be a password).
func (s *Sealroot) CLIStdin(ctx context.Context, stdin string, args ...string) (string, error) {
	s.Logf("$ sealroot %s", strings.Join(args, " "))
	stdout, _, err := s.runIn(ctx, strings.NewReader(stdin), args...)
	return stdout, err
}

func (s *Sealroot) run2(ctx context.Context, args ...string) (string, string, error) {
	return s.runIn(ctx, nil, args...)
}

func (s *Sealroot) runIn(ctx context.Context, stdin io.Reader, args ...string) (string, string, error) {
	cmd := exec.CommandContext(ctx, s.Bin, append([]string{"--socket", s.Socket}, args...)...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), stderr.String(), fmt.Errorf("sealroot %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), stderr.String(), nil
}

// Machine returns `sealroot machine show ref --json`.
func (s *Sealroot) Machine(ctx context.Context, ref string) (*store.Machine, error) {
	out, err := s.CLI(ctx, "--json", "machine", "show", ref)
	if err != nil {
		return nil, err
	}
	var m store.Machine
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		return nil, fmt.Errorf("machine show --json: %w", err)
	}
	return &m, nil
}

// AgentTimings returns the agent's own step timings of machine ref's
// newest boot that reported them, from the server's boot history
// (`machine show --json`), and logs them. The agent sends them over its
// tunnel just before switch_root, so they are there once the root runs.
func (s *Sealroot) AgentTimings(ctx context.Context, t *testing.T, ref string) []wire.StageTiming {
	t.Helper()
	m, err := s.Machine(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(m.History) - 1; i >= 0; i-- {
		a := m.History[i]
		if len(a.Stages) == 0 {
			continue
		}
		var b strings.Builder
		for _, st := range a.Stages {
			fmt.Fprintf(&b, " %s=%.2fs", st.Name, st.Duration.Seconds())
		}
		if a.Failed != "" {
			fmt.Fprintf(&b, " failed=%s", a.Failed)
		}
		t.Logf("%s: agent timings (server boot history, boot of %s):%s", ref, a.Time.Format(time.RFC3339), b.String())
		return a.Stages
	}
	t.Errorf("machine %s: no boot in the server's history carries the agent's timings", ref)
	return nil
}
