package agent

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/agent/provision"
	"github.com/sealroot/sealroot/agent/root"
	"github.com/sealroot/sealroot/wire"
)

type fakeAttester struct {
	p   *wire.Payload
	err error
}

func (f fakeAttester) Attest(context.Context) (*wire.Payload, error) { return f.p, f.err }

type fakeLink struct{ renewing chan struct{} }

func (l fakeLink) RenewLoop(ctx context.Context) error {
	close(l.renewing)
	<-ctx.Done()
	return ctx.Err()
}
func (fakeLink) Close() error { return nil }

type dirStage struct{ kind, dir string }

func (s dirStage) Name() string { return s.kind }
func (s dirStage) Mount(context.Context, *wire.Payload) (string, error) {
	return s.dir, nil
}

// system records what Run asked of the machine.
type system struct {
	console     bytes.Buffer
	modules     []string
	switchedTo  [2]string
	poweredOff  bool
	provisioned string
}

func (s *system) deps(a Attester) Deps {
	return Deps{
		Console:  &s.console,
		Attester: a,
		Stages:   root.NewRegistry(root.None{}, dirStage{"nfs", "/newroot"}),
		LoadModules: func(_ context.Context, mods []string) error {
			s.modules = mods
			return nil
		},
		Network: func(context.Context, string) (Link, error) {
			return fakeLink{make(chan struct{})}, nil
		},
		SwitchRoot: func(newRoot, init string) error { s.switchedTo = [2]string{newRoot, init}; return nil },
		PowerOff:   func() error { s.poweredOff = true; return nil },
		Provision: func(_ context.Context, newRoot string, p *wire.Payload) error {
			s.provisioned = newRoot
			return nil
		},
	}
}

var testConfig = &Config{Servers: []string{"h:1"}, ServerName: "s", Modules: []string{"virtio_net"}}

func TestRunNoneRootPowersOff(t *testing.T) {
	var s system
	p := &wire.Payload{MachineID: "ab12", MachineName: "nuc-3", Root: wire.RootPlan{Kind: wire.RootNone}}
	if err := Run(context.Background(), testConfig, s.deps(fakeAttester{p: p})); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	if !s.poweredOff {
		t.Error("Run() with root kind none did not power off")
	}
	if len(s.modules) != 1 || s.modules[0] != "virtio_net" {
		t.Errorf("modules loaded = %v, want the configured ones", s.modules)
	}
	out := s.console.String()
	for _, want := range []string{"[ok] entropy", "[ok] modules", "[ok] network", "[ok] attest", "[ok] root",
		"sealroot: attested as nuc-3 (ab12): no root configured, powering off\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("console lacks %q:\n%s", want, out)
		}
	}
}

func TestRunSwitchesRoot(t *testing.T) {
	var s system
	p := &wire.Payload{MachineID: "ab12", MachineName: "nuc-3", Root: wire.RootPlan{Kind: "nfs"}}
	if err := Run(context.Background(), testConfig, s.deps(fakeAttester{p: p})); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	if want := [2]string{"/newroot", root.DefaultInit}; s.switchedTo != want {
		t.Errorf("switch_root(%q, %q), want %q", s.switchedTo[0], s.switchedTo[1], want)
	}
	if s.provisioned != "/newroot" {
		t.Errorf("provisioned %q, want /newroot", s.provisioned)
	}
	if s.poweredOff {
		t.Error("powered off although a root was mounted")
	}
}

func TestRunFailures(t *testing.T) {
	pending := errors.New("machine ab12 awaits approval: run `sealroot machine approve ab12`")
	tests := []struct {
		name     string
		attester fakeAttester
		wantStep string
		wantErr  error
	}{
		{"attest_error", fakeAttester{err: pending}, "attest", pending},
		{"unknown_root_kind", fakeAttester{p: &wire.Payload{Root: wire.RootPlan{Kind: "iscsi"}}}, "root", root.ErrUnknownKind},
		{"nil_payload", fakeAttester{}, "attest", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s system
			err := Run(context.Background(), testConfig, s.deps(tt.attester))
			var se *StepError
			if !errors.As(err, &se) || se.Step != tt.wantStep {
				t.Fatalf("Run() = %v, want a failure of step %s", err, tt.wantStep)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Run() = %v, want it to wrap %v", err, tt.wantErr)
			}
			if s.poweredOff || s.switchedTo != [2]string{} {
				t.Error("Run() handed over after a failure")
			}
			if !strings.Contains(s.console.String(), "[FAILED] "+tt.wantStep) {
				t.Errorf("console lacks the failure line:\n%s", s.console.String())
			}
		})
	}
}

func TestFail(t *testing.T) {
	var console bytes.Buffer
	rebooted := false
	err := Fail(context.Background(), &console, errors.New("attest: revoked"), time.Millisecond, func() error { rebooted = true; return nil })
	if err != nil || !rebooted {
		t.Fatalf("Fail() = %v, rebooted %v", err, rebooted)
	}
	if !strings.Contains(console.String(), "sealroot: boot failed: attest: revoked\n") {
		t.Errorf("console = %q", console.String())
	}
	rebootErr := errors.New("EPERM")
	if err := Fail(context.Background(), &console, errors.New("x"), 0, func() error { return rebootErr }); !errors.Is(err, rebootErr) {
		t.Errorf("Fail() with a failing reboot = %v, want %v", err, rebootErr)
	}
}

func TestRunBringsUpPlannedTunnelBeforeRoot(t *testing.T) {
	plan := &wire.TunnelPlan{ServerKey: make([]byte, 32), Endpoint: "10.0.0.1:51820", Address: "10.200.0.7/16", ServerAddr: "10.200.0.1"}
	p := &wire.Payload{MachineID: "ab12", MachineName: "nuc-3", Root: wire.RootPlan{Kind: "nfs"}, Tunnel: plan}

	var s system
	var got *wire.TunnelPlan
	d := s.deps(fakeAttester{p: p})
	d.Tunnel = func(_ context.Context, tp *wire.TunnelPlan) error {
		if s.switchedTo != [2]string{} {
			t.Error("tunnel brought up after switch_root")
		}
		got = tp
		return nil
	}
	if err := Run(context.Background(), testConfig, d); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	if got != plan {
		t.Errorf("Tunnel called with %v, want the payload's plan", got)
	}
	if !strings.Contains(s.console.String(), "[ok] tunnel") {
		t.Errorf("console lacks the tunnel step:\n%s", s.console.String())
	}

	// A plan but no tunnel support: the boot stops before the root.
	var s2 system
	err := Run(context.Background(), testConfig, s2.deps(fakeAttester{p: p}))
	var se *StepError
	if !errors.As(err, &se) || se.Step != "tunnel" {
		t.Fatalf("Run() without tunnel support = %v, want a tunnel step error", err)
	}
	if s2.switchedTo != [2]string{} {
		t.Error("switched root without the planned tunnel")
	}
}

// TestRunProvisionsBeforeSwitchRoot runs the real provisioning into a
// temporary root: the secret lands in the secrets directory, the file in
// the root, and a refused file stops the boot before switch_root.
func TestRunProvisionsBeforeSwitchRoot(t *testing.T) {
	newRoot, run := t.TempDir(), t.TempDir()
	secrets := filepath.Join(run, "sealroot", "secrets")
	p := &wire.Payload{
		MachineID: "ab12", MachineName: "nuc-3", Root: wire.RootPlan{Kind: "nfs"},
		Secrets: map[string][]byte{"api-token": []byte("tok")},
		Files:   []wire.File{{Path: "/etc/motd", Mode: 0o644, Content: []byte("hi")}},
	}
	var s system
	d := s.deps(fakeAttester{p: p})
	d.Stages = root.NewRegistry(dirStage{"nfs", newRoot})
	d.Provision = func(_ context.Context, dir string, p *wire.Payload) error {
		return provision.Run(provision.Config{SecretsDir: secrets}, dir, p)
	}
	if err := Run(context.Background(), testConfig, d); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(secrets, "api-token")); string(got) != "tok" {
		t.Errorf("secret = %q, want tok", got)
	}
	if got, _ := os.ReadFile(filepath.Join(newRoot, "etc/motd")); string(got) != "hi" {
		t.Errorf("motd = %q, want hi", got)
	}
	if s.switchedTo[0] != newRoot {
		t.Errorf("switch_root to %q, want %q", s.switchedTo[0], newRoot)
	}

	var s2 system
	p.Files = []wire.File{{Path: "/etc/../../escape", Content: []byte("x")}}
	d = s2.deps(fakeAttester{p: p})
	d.Stages = root.NewRegistry(dirStage{"nfs", newRoot})
	d.Provision = func(_ context.Context, dir string, p *wire.Payload) error {
		return provision.Run(provision.Config{}, dir, p)
	}
	err := Run(context.Background(), testConfig, d)
	var se *StepError
	if !errors.As(err, &se) || se.Step != "provision" || !errors.Is(err, wire.ErrBadFile) {
		t.Fatalf("Run with a bad file = %v, want a provision StepError wrapping ErrBadFile", err)
	}
	if s2.switchedTo[0] != "" {
		t.Errorf("switched root after a failed provision")
	}
}
