package rootiscsi_test

import (
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/metrics"
	"github.com/sealroot/sealroot/server/metrics/metricstest"
)

// The metrics endpoint counts a real initiator's session, commands and
// bytes (libiscsi logs in with CHAP and reads the capacity), and the
// session view names its initiator and target.
func TestISCSIMetricsAndSessions(t *testing.T) {
	e := newEnv(t)
	srv := e.cfg.Plain
	scrape := metricstest.Serve(t, metrics.New(metrics.Sources{ISCSI: func() metrics.ISCSIStats {
		t := srv.Totals()
		return metrics.ISCSIStats{Sessions: t.Sessions, ReadBytes: t.ReadBytes, WrittenBytes: t.WrittenBytes,
			Commands: t.Commands, Errors: t.Errors}
	}}))
	before := scrape()
	if got := metricstest.Sample(before, "sealroot_iscsi_sessions"); got != 0 {
		t.Fatalf("sessions before any login = %v", got)
	}
	m := iscsiMachine(idA, "tiny")
	plan, sec := e.prepare(t, m)
	l := loginFrom(e.addr, plan, sec)
	if _, err := l.capacity(t); err != nil {
		t.Fatalf("capacity: %v", err)
	}
	// The capacity login's connection ends on the server a moment after
	// the client has its answer: wait for it, so one session is held.
	for deadline := time.Now().Add(5 * time.Second); srv.Totals().Sessions != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("sessions after the capacity login ended = %d, want 0", srv.Totals().Sessions)
		}
	}
	end := holdSession(t, e.addr, plan, sec)
	defer end()
	body := scrape()
	if got := metricstest.Sample(body, "sealroot_iscsi_sessions"); got != 1 {
		t.Errorf("sessions while one is logged in = %v, want 1", got)
	}
	if got := metricstest.Sample(body, "sealroot_iscsi_commands_total"); got < 1 {
		t.Errorf("commands after iscsi-readcapacity16 = %v, want some", got)
	}
	if got := metricstest.Sample(body, `sealroot_iscsi_bytes_total{direction="read"}`); got < 32 {
		t.Errorf("bytes read after iscsi-readcapacity16 = %v, want the capacity data at least", got)
	}
	ss := srv.Sessions()
	if len(ss) != 1 || ss[0].Initiator != l.initiator || ss[0].Target != l.target || ss[0].ReadBytes != 0 {
		t.Errorf("Sessions() = %+v, want the held session of %s on %s, nothing read yet", ss, l.initiator, l.target)
	}
}
