package agent

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/sealroot/sealroot/agent/root"
	"github.com/sealroot/sealroot/wire"
)

// dialStage mounts nothing: it dials its root's server, as the iSCSI and
// NFS stages do first.
type dialStage struct{ kind, addr string }

func (s dialStage) Name() string { return s.kind }
func (s dialStage) Mount(ctx context.Context, _ *wire.Payload) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return "", err
	}
	c.Close()
	return "/newroot", nil
}

// closedPort returns a loopback TCP address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// A machine that attests but whose home server refuses the root's
// connection says so on the console and in its boot report.
func TestRunHomeServerDown(t *testing.T) {
	plan := &wire.TunnelPlan{ServerKey: make([]byte, 32), Endpoint: "10.0.0.1:51820", Address: "10.200.0.7/16", ServerAddr: "10.200.0.1"}
	p := &wire.Payload{MachineID: "ab12", MachineName: "nuc-3", Root: wire.RootPlan{Kind: "iscsi"}, Tunnel: plan}
	var s system
	d := s.deps(fakeAttester{p: p})
	d.Stages = root.NewRegistry(dialStage{"iscsi", closedPort(t)})
	d.Tunnel = func(context.Context, *wire.TunnelPlan) error { return nil }
	var report *wire.BootReport
	d.Report = func(_ context.Context, _ string, r *wire.BootReport) error { report = r; return nil }

	err := Run(context.Background(), testConfig, d)
	var hs *HomeServerDownError
	if !errors.As(err, &hs) || hs.Server != plan.Endpoint || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("Run() = %v, want a HomeServerDownError for %s wrapping ECONNREFUSED", err, plan.Endpoint)
	}
	want := "[FAILED] root"
	wantMsg := "home server 10.0.0.1:51820 is down or unreachable"
	if c := s.console.String(); !strings.Contains(c, want) || !strings.Contains(c, wantMsg) {
		t.Errorf("console lacks %q and %q:\n%s", want, wantMsg, c)
	}
	if report == nil || report.Failed != "root" || !strings.Contains(report.Error, wantMsg) {
		t.Errorf("boot report = %+v, want the root step failed with %q", report, wantMsg)
	}
}

// Failures that are not a silent peer keep their own message.
func TestHomeServerDownOnlyForUnansweredPeers(t *testing.T) {
	p := &wire.Payload{Tunnel: &wire.TunnelPlan{Endpoint: "10.0.0.1:51820"}}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{"timeout", context.DeadlineExceeded, true},
		{"unreachable", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.EHOSTUNREACH}, true},
		{"unknown_kind", root.ErrUnknownKind, false},
		{"login_refused", errors.New("iscsi login: authentication failure"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hs *HomeServerDownError
			if got := errors.As(homeServerDown(p, tt.err), &hs); got != tt.want {
				t.Errorf("homeServerDown(%v) is HomeServerDownError = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
	if homeServerDown(p, nil) != nil {
		t.Error("homeServerDown(nil) != nil")
	}
}
