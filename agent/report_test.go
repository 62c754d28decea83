package agent

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/agent/provision"
	"github.com/sealroot/sealroot/agent/root"
	"github.com/sealroot/sealroot/wire"
)

const testSecret = "hunter2-correct-horse-battery"

// reportingDeps boots p with a tunnel, real provisioning (secrets into a
// temporary directory) and a logger writing into the boot log; the boot
// report lands in *got.
func reportingDeps(t *testing.T, s *system, p *wire.Payload, got **wire.BootReport) Deps {
	d := s.deps(fakeAttester{p: p})
	d.Log = &BootLog{}
	d.Console = d.Log // the console is the log here
	d.Logger = hclog.New(&hclog.LoggerOptions{Output: d.Log, Level: hclog.Trace})
	d.Tunnel = func(context.Context, *wire.TunnelPlan) error { return nil }
	newRoot := t.TempDir()
	d.Stages = root.NewRegistry(dirStage{"nfs", newRoot})
	secrets := filepath.Join(t.TempDir(), "secrets")
	d.Provision = func(_ context.Context, dir string, p *wire.Payload) error {
		return provision.Run(provision.Config{SecretsDir: secrets, Console: d.Console, Logger: d.Logger}, dir, p)
	}
	d.Report = func(_ context.Context, addr string, r *wire.BootReport) error {
		if addr != p.Tunnel.ServerAddr {
			t.Errorf("report sent to %q, want the tunnel server address %q", addr, p.Tunnel.ServerAddr)
		}
		*got = r
		return nil
	}
	return d
}

func secretPayload() *wire.Payload {
	return &wire.Payload{
		MachineID: "ab12", MachineName: "nuc-3", Root: wire.RootPlan{Kind: "nfs"},
		Secrets: map[string][]byte{"db-password": []byte(testSecret)},
		Tunnel:  &wire.TunnelPlan{ServerKey: make([]byte, 32), Endpoint: "10.0.0.1:51820", Address: "10.200.0.7/16", ServerAddr: "10.200.0.1"},
	}
}

// A boot with a secret sends a report with every step's timing and the
// log, and neither the log nor the report holds the secret: the agent
// does not write it (checked before scrubbing) and Scrub is the edge.
func TestRunReportsStagesWithoutSecrets(t *testing.T) {
	var s system
	var got *wire.BootReport
	d := reportingDeps(t, &s, secretPayload(), &got)
	if err := Run(context.Background(), testConfig, d); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	if strings.Contains(d.Log.String(), testSecret) {
		t.Fatalf("the agent wrote the secret into its log:\n%s", d.Log.String())
	}
	if got == nil {
		t.Fatal("no boot report sent")
	}
	var names []string
	for _, st := range got.Stages {
		names = append(names, st.Name)
	}
	if want := "entropy modules network attest tunnel root provision"; strings.Join(names, " ") != want {
		t.Errorf("report stages = %v, want %s", names, want)
	}
	if got.Failed != "" || !strings.Contains(got.Log, "[ok] provision") || !strings.Contains(got.Log, "secrets placed") {
		t.Errorf("report failed=%q log:\n%s\nwant no failure and the provision lines", got.Failed, got.Log)
	}
	b, err := wire.EncodeBootReport(got)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), testSecret) {
		t.Errorf("encoded report holds the secret")
	}
}

// A root failure after the tunnel is reported with the step and its
// error; a secret that reached the error text is scrubbed.
func TestRunReportsRootFailure(t *testing.T) {
	var s system
	var got *wire.BootReport
	d := reportingDeps(t, &s, secretPayload(), &got)
	d.Stages = root.NewRegistry(failStage{errors.New("mount refused for " + testSecret)})
	if err := Run(context.Background(), testConfig, d); err == nil {
		t.Fatal("Run() = nil, want the root failure")
	}
	if got == nil || got.Failed != "root" || !strings.Contains(got.Error, "mount refused for "+Redacted) {
		t.Fatalf("report = %+v, want failed root with the secret redacted", got)
	}
	if strings.Contains(got.Log, testSecret) || strings.Contains(got.Error, testSecret) {
		t.Errorf("report holds the secret: %+v", got)
	}
}

// Without a tunnel there is nowhere to report: Report is not called.
func TestRunNoTunnelNoReport(t *testing.T) {
	var s system
	var got *wire.BootReport
	p := secretPayload()
	d := reportingDeps(t, &s, p, &got)
	p.Tunnel = nil
	if err := Run(context.Background(), testConfig, d); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	if got != nil {
		t.Errorf("report sent without a tunnel: %+v", got)
	}
}

type failStage struct{ err error }

func (failStage) Name() string { return "nfs" }
func (f failStage) Mount(context.Context, *wire.Payload) (string, error) {
	return "", f.err
}

func TestBootLogKeepsTail(t *testing.T) {
	var l BootLog
	l.Write([]byte(strings.Repeat("a", wire.MaxReportLog)))
	l.Write([]byte("end"))
	if s := l.String(); len(s) != wire.MaxReportLog || !strings.HasSuffix(s, "end") {
		t.Errorf("BootLog kept %d bytes ending %q, want the last %d", len(s), s[len(s)-3:], wire.MaxReportLog)
	}
}
