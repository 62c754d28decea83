package rootiscsi_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/server/metrics"
)

// serveMetrics serves m on a loopback port until the test ends and
// returns a scrape function.
func serveMetrics(t *testing.T, m *metrics.Metrics) func() string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return func() string {
		resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
}

func sample(body, series string) float64 {
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				return f
			}
		}
	}
	return -1
}

// The metrics endpoint counts a real initiator's session, commands and
// bytes (libiscsi logs in with CHAP and reads the capacity), and the
// session view names its initiator and target.
func TestISCSIMetricsAndSessions(t *testing.T) {
	e := newEnv(t)
	srv := e.cfg.Plain
	scrape := serveMetrics(t, metrics.New(metrics.Sources{ISCSI: func() metrics.ISCSIStats {
		t := srv.Totals()
		return metrics.ISCSIStats{Sessions: t.Sessions, ReadBytes: t.ReadBytes, WrittenBytes: t.WrittenBytes,
			Commands: t.Commands, Errors: t.Errors}
	}}))
	before := scrape()
	if got := sample(before, "sealroot_iscsi_sessions"); got != 0 {
		t.Fatalf("sessions before any login = %v", got)
	}
	m := iscsiMachine(idA, "tiny")
	plan, sec := e.prepare(t, m)
	l := loginFrom(e.addr, plan, sec)
	if _, err := l.capacity(t); err != nil {
		t.Fatalf("capacity: %v", err)
	}
	end := holdSession(t, e.addr, plan, sec)
	defer end()
	body := scrape()
	if got := sample(body, "sealroot_iscsi_sessions"); got != 1 {
		t.Errorf("sessions while one is logged in = %v, want 1", got)
	}
	if got := sample(body, "sealroot_iscsi_commands_total"); got < 1 {
		t.Errorf("commands after iscsi-readcapacity16 = %v, want some", got)
	}
	if got := sample(body, `sealroot_iscsi_bytes_total{direction="read"}`); got < 32 {
		t.Errorf("bytes read after iscsi-readcapacity16 = %v, want the capacity data at least", got)
	}
	ss := srv.Sessions()
	if len(ss) != 1 || ss[0].Initiator != l.initiator || ss[0].Target != l.target || ss[0].ReadBytes != 0 {
		t.Errorf("Sessions() = %+v, want the held session of %s on %s, nothing read yet", ss, l.initiator, l.target)
	}
}
