package attest_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/netstack"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/sealroot/sealroot/agent"
	agentattest "github.com/sealroot/sealroot/agent/attest"
	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/server/bootreport"
	"github.com/sealroot/sealroot/server/history"
	"github.com/sealroot/sealroot/server/metrics"
	"github.com/sealroot/sealroot/server/metrics/metricstest"
	"github.com/sealroot/sealroot/server/tunnel"
	"github.com/sealroot/sealroot/test/netnstest"
	"github.com/sealroot/sealroot/test/testenv"
	"github.com/sealroot/sealroot/wire"
)

// reportSecret is a machine secret that must never reach a stored log.
const reportSecret = "s3cret-db-password-4242"

// reportLab is a server tunnel (netstack, its UDP socket in a namespace
// of its own) with the boot report receiver on its tunnel address.
type reportLab struct {
	ns      *netnstest.NS
	tn      *tunnel.Tunnel
	rcv     *bootreport.Receiver
	metrics *metrics.Metrics
}

func newReportLab(t *testing.T) *reportLab {
	t.Helper()
	l := &reportLab{ns: netnstest.New(t, "srat-rep")}
	err := l.ns.Do(func() (err error) {
		l.tn, err = tunnel.New(tunnel.Config{Prefix: tunnelPrefix, Endpoint: "192.0.2.1:51820", Logger: testenv.Logger(t, "", hclog.Debug)})
		return err
	})
	if err != nil {
		t.Fatalf("tunnel.New: %v", err)
	}
	t.Cleanup(func() { l.tn.Close() })
	return l
}

// serve starts the receiver over e's store and secrets.
func (l *reportLab) serve(t *testing.T, e *testEnv) {
	t.Helper()
	var err error
	l.metrics = metrics.New(metrics.Sources{
		Tunnel: func() (metrics.TunnelStats, error) {
			peers, err := l.tn.PeerList()
			return metrics.TunnelStatsOf(peers, time.Now()), err
		},
		BootReports: func() map[string]uint64 { return l.rcv.Counts() },
	})
	l.rcv, err = bootreport.New(bootreport.Config{Peers: l.tn, Store: e.db, Secrets: e.mgr,
		Observe: l.metrics.ObserveBootReport, Logger: testenv.Logger(t, "", hclog.Debug)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := l.tn.Listen("tcp", wire.ReportPort)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.rcv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("receiver Serve: %v", err)
		}
	})
}

// agentEnd is a machine's end of the tunnel: a wireguard-go device on a
// netstack, its UDP socket in the lab's namespace, so it reaches the
// server's socket on loopback there.
type agentEnd struct {
	priv wgtypes.Key
	net  *netstack.Net
	dev  *device.Device
}

func newAgentEnd(t *testing.T) *agentEnd {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return &agentEnd{priv: k}
}

func (a *agentEnd) pub() []byte { p := a.priv.PublicKey(); return p[:] }

// up brings the device up as plan says, with the server's endpoint on the
// namespace's loopback.
func (a *agentEnd) up(t *testing.T, l *reportLab, plan *wire.TunnelPlan) error {
	addr, err := netip.ParsePrefix(plan.Address)
	if err != nil {
		return err
	}
	tdev, tnet, err := netstack.CreateNetTUN([]netip.Addr{addr.Addr()}, nil, 1420)
	if err != nil {
		return err
	}
	a.net = tnet
	a.dev = device.NewDevice(pinned(tdev), conn.NewDefaultBind(), device.NewLogger(device.LogLevelSilent, ""))
	t.Cleanup(a.dev.Close)
	uapi := fmt.Sprintf("private_key=%s\npublic_key=%s\nendpoint=127.0.0.1:%d\nallowed_ip=%s/32\npersistent_keepalive_interval=1\n",
		hex.EncodeToString(a.priv[:]), hex.EncodeToString(plan.ServerKey), l.tn.Port(), plan.ServerAddr)
	// Up first: it binds the UDP socket (in the namespace), so the first
	// handshake initiation is not sent before there is a socket.
	return l.ns.Do(func() error {
		if err := a.dev.Up(); err != nil {
			return err
		}
		return a.dev.IpcSet(uapi)
	})
}

// pinned hides the netstack's link events from wireguard-go, which
// would otherwise reopen its UDP socket from whatever thread handles the
// event, outside the namespace (as server/tunnel's pinnedTUN does).
func pinned(d tun.Device) tun.Device {
	p := &pinnedTUN{Device: d, events: make(chan tun.Event, 4)}
	go func() {
		defer close(p.events)
		for e := range d.Events() {
			if e &^= tun.EventUp | tun.EventDown; e != 0 {
				p.events <- e
			}
		}
	}()
	return p
}

type pinnedTUN struct {
	tun.Device
	events chan tun.Event
}

func (p *pinnedTUN) Events() <-chan tun.Event { return p.events }

// attesterFunc adapts a function to agent.Attester.
type attesterFunc func(ctx context.Context) (*wire.Payload, error)

func (f attesterFunc) Attest(ctx context.Context) (*wire.Payload, error) { return f(ctx) }

type noLink struct{}

func (noLink) RenewLoop(ctx context.Context) error { <-ctx.Done(); return nil }
func (noLink) Close() error                        { return nil }

// The whole way with real parts: a machine with a secret attests over
// QUIC with its simulator TPM, the agent brings up its WireGuard tunnel
// (wireguard-go) and sends its boot report to the receiver on the
// server's tunnel address. The timings land on the allowed attempt of
// its history, Version unchanged; the log is stored and holds no secret.
func TestBootReportThroughTunnel(t *testing.T) {
	testenv.RequireRoot(t, "a network namespace for the tunnel's UDP sockets")
	l := newReportLab(t)
	var rec *history.Recorder
	e := newEnv(t, withTunnels(l.tn, ""), func(c *attest.Config) {
		rec = history.New(c.Store, "server-1", nil)
		c.History = rec
	})
	runCtx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- rec.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-ran })
	l.serve(t, e)

	ctx := context.Background()
	m := newMachine(t, defaultSpec)
	e.enrollAndApprove(t, m, "node-r")
	if err := e.mgr.SetSecret(ctx, "node-r", "db-password", []byte(reportSecret)); err != nil {
		t.Fatal(err)
	}
	before, err := e.db.Machine(ctx, m.id)
	if err != nil {
		t.Fatal(err)
	}

	end := newAgentEnd(t)
	var console strings.Builder
	var mu sync.Mutex
	bootLog := &agent.BootLog{}
	d := agent.Deps{
		Console: writerFunc(func(p []byte) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			console.Write(p)
			return bootLog.Write(p)
		}),
		Log:    bootLog,
		Random: func(context.Context, int) ([]byte, error) { return nil, errors.New("unused") },
		Attester: attesterFunc(func(ctx context.Context) (*wire.Payload, error) {
			res, err := attestOnce(t, e.client(t, m.dev, func(c *agentattest.Config) { c.WireGuardKey = end.pub() }))
			if err != nil {
				return nil, err
			}
			rec.Flush() // the allowed attempt is in the history before the report
			return res.Payload, nil
		}),
		LoadModules: func(context.Context, []string) error { return nil },
		Network:     func(context.Context, string) (agent.Link, error) { return noLink{}, nil },
		Tunnel:      func(_ context.Context, plan *wire.TunnelPlan) error { return end.up(t, l, plan) },
		PowerOff:    func() error { return nil },
		Report: func(ctx context.Context, addr string, r *wire.BootReport) error {
			return agent.SendReport(ctx, end.net.DialContext, addr, r)
		},
	}
	d.Logger = hclog.New(&hclog.LoggerOptions{Output: d.Console, Level: hclog.Debug})
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := agent.Run(rctx, &agent.Config{}, d); err != nil {
		t.Fatalf("agent.Run: %v", err)
	}
	if strings.Contains(console.String(), "boot report not sent") {
		t.Fatalf("agent console:\n%s", console.String())
	}
	if got := l.rcv.Counts()["stored"]; got != 1 {
		t.Fatalf("reports stored = %d (%v), want 1", got, l.rcv.Counts())
	}

	after, err := e.db.Machine(ctx, m.id)
	if err != nil {
		t.Fatal(err)
	}
	if after.Version != before.Version {
		t.Errorf("Version %d -> %d after the boot report, want unchanged", before.Version, after.Version)
	}
	last := after.History[len(after.History)-1]
	var names []string
	for _, s := range last.Stages {
		names = append(names, s.Name)
	}
	if last.Outcome != "allowed" || strings.Join(names, " ") != "entropy modules network attest tunnel root provision" {
		t.Errorf("newest attempt %s with stages %v, want allowed with every step", last.Outcome, names)
	}
	logs, err := e.db.BootLogs(ctx, m.id)
	if err != nil || len(logs) != 1 {
		t.Fatalf("BootLogs = %d, %v; want 1", len(logs), err)
	}
	if !strings.Contains(logs[0].Log, "[ok] tunnel") {
		t.Errorf("stored log lacks the tunnel step:\n%s", logs[0].Log)
	}
	if strings.Contains(logs[0].Log, reportSecret) {
		t.Errorf("stored log holds the machine's secret:\n%s", logs[0].Log)
	}

	// The metrics endpoint, scraped while the tunnel carries the
	// machine's traffic: one peer with a fresh handshake and bytes, and
	// the agent's reported stages.
	body := scrapeMetrics(t, l.metrics)
	for series, ok := range map[string]func(float64) bool{
		"sealroot_tunnel_peers":                                       func(v float64) bool { return v == 1 },
		"sealroot_tunnel_peers_without_handshake":                     func(v float64) bool { return v == 0 },
		`sealroot_tunnel_handshake_age_seconds_bucket{le="30"}`:       func(v float64) bool { return v == 1 },
		`sealroot_tunnel_bytes{direction="rx"}`:                       func(v float64) bool { return v > 0 },
		`sealroot_agent_stage_duration_seconds_count{stage="tunnel"}`: func(v float64) bool { return v == 1 },
		`sealroot_boot_reports_total{result="stored"}`:                func(v float64) bool { return v == 1 },
	} {
		if v := metricstest.Sample(body, series); !ok(v) {
			t.Errorf("/metrics %s = %v", series, v)
		}
	}
	if strings.Contains(body, m.id[:16]) {
		t.Errorf("/metrics names the machine")
	}

	// A report that carries the secret (a buggy or hostile agent) is
	// stored with it redacted.
	leaky := &wire.BootReport{Stages: []wire.StageTiming{{Name: "root", Duration: time.Second}},
		Failed: "root", Error: "mount with " + reportSecret, Log: "password=" + reportSecret + "\n"}
	if err := agent.SendReport(ctx, end.net.DialContext, l.tn.ServerAddr().String(), leaky); err != nil {
		t.Fatalf("SendReport: %v", err)
	}
	logs, _ = e.db.BootLogs(ctx, m.id)
	if got := logs[len(logs)-1]; strings.Contains(got.Log+got.Error, reportSecret) || !strings.Contains(got.Log, bootreport.Redacted) {
		t.Errorf("stored leaky report = %+v, want the secret redacted", got)
	}
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// A connection from outside the tunnel peers is not a report: the
// receiver reads nothing from it and counts it.
func TestBootReportFromStrangerRefused(t *testing.T) {
	e := newEnv(t)
	rcv, err := bootreport.New(bootreport.Config{Peers: noPeers{}, Store: e.db, Secrets: e.mgr})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rcv.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	var d net.Dialer
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, ln.Addr().String())
	}
	err = agent.SendReport(ctx, dial, "10.201.0.1", &wire.BootReport{})
	if err == nil {
		t.Fatal("SendReport from a stranger = nil, want refused")
	}
	if got := rcv.Counts()["stranger"]; got != 1 {
		t.Errorf("stranger count = %d, want 1", got)
	}
}

type noPeers struct{}

func (noPeers) PeerAddr(net.Addr) (string, bool) { return "", false }

func scrapeMetrics(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	return metricstest.Serve(t, m)()
}
