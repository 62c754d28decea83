package metrics

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/server/servestats"
	"github.com/sealroot/sealroot/wire"
)

// everySource returns Sources with every field set.
func everySource() Sources {
	return Sources{
		InFlight:         func() int { return 2 },
		MachinesByState:  func(context.Context) (map[string]int, error) { return map[string]int{"approved": 3}, nil },
		StoreBytes:       func() (int64, error) { return 4096, nil },
		AuditBytes:       func() (int64, error) { return 100, nil },
		Certificates:     map[string]*x509.Certificate{"server": {NotAfter: time.Unix(2000000000, 0)}},
		EventSubscribers: func() int { return 1 },
		UnknownRefused:   func() map[string]uint64 { return map[string]uint64{"event-log": 5} },
		Noise:            func() map[string]uint64 { return map[string]uint64{"garbage": 7} },
		BootReports:      func() map[string]uint64 { return map[string]uint64{"stored": 1} },
		Served: func() map[string]servestats.Snapshot {
			return map[string]servestats.Snapshot{"http": {Requests: map[string]uint64{"2xx": 1}, SentBytes: 10}}
		},
		Tunnel: func() (TunnelStats, error) {
			return TunnelStats{Peers: 2, HandshakeAges: []time.Duration{time.Minute}, NoHandshake: 1, RxBytes: 5, TxBytes: 6}, nil
		},
		ISCSI: func() ISCSIStats { return ISCSIStats{Sessions: 1, ReadBytes: 4096, Commands: 3} },
		NFS:   func() NFSStats { return NFSStats{Exports: 1, Up: true} },
	}
}

// gathered returns the names of every metric m exports once each
// instrument has a sample.
func gathered(t *testing.T, m *Metrics) map[string]bool {
	t.Helper()
	m.Observe(attest.Attempt{Outcome: "refused", Check: "event-log", Duration: time.Millisecond})
	m.ObserveBootReport(&wire.BootReport{Stages: []wire.StageTiming{{Name: "attest", Duration: time.Second}}, Failed: "root"})
	m.ObserveISCSICommand("tunnel", "read", 64<<10, time.Millisecond)
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := make(map[string]bool)
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	return names
}

// The dashboard in the repository names only metrics that exist.
func TestDashboardNamesExistingMetrics(t *testing.T) {
	raw, err := os.ReadFile("dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	names := gathered(t, New(everySource()))
	ident := regexp.MustCompile(`\bsealroot_[a-z_]+`)
	n := 0
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, name := range ident.FindAllString(tg.Expr, -1) {
				n++
				base := name
				for _, suffix := range []string{"_bucket", "_count", "_sum"} {
					base = strings.TrimSuffix(base, suffix)
				}
				if !names[name] && !names[base] {
					t.Errorf("panel %q names %s, which sealroot does not export", p.Title, name)
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("the dashboard names no sealroot metric")
	}
}

// Labels are bounded sets from the code: none holds a machine ID or
// address, whatever the attempt carried.
func TestNoMachineLabels(t *testing.T) {
	m := New(everySource())
	id := strings.Repeat("ab", 32)
	m.Observe(attest.Attempt{MachineID: id, Remote: "192.0.2.7:4433", Outcome: "allowed", Check: "policy", Reason: "ok " + id})
	m.ObserveBootReport(&wire.BootReport{Stages: []wire.StageTiming{{Name: "m" + id[:16]}}, Failed: "m" + id[:16]})
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, metric := range mf.GetMetric() {
			for _, l := range metric.GetLabel() {
				if strings.Contains(l.GetValue(), id[:16]) || strings.Contains(l.GetValue(), "192.0.2.7") {
					t.Errorf("%s label %s=%q carries the machine", mf.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}
}

// Reads and writes are counted by size; other commands only by time.
func TestISCSICommandBytes(t *testing.T) {
	m := New(Sources{})
	m.ObserveISCSICommand("tunnel", "read", 4096, time.Millisecond)
	m.ObserveISCSICommand("tunnel", "read", 128<<10, time.Millisecond)
	m.ObserveISCSICommand("tunnel", "sync", 0, time.Millisecond)
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "sealroot_iscsi_command_bytes" {
			continue
		}
		if len(mf.GetMetric()) != 1 {
			t.Fatalf("%d series of sealroot_iscsi_command_bytes, want the tunnel's reads only", len(mf.GetMetric()))
		}
		h := mf.GetMetric()[0].GetHistogram()
		if h.GetSampleCount() != 2 || h.GetSampleSum() != 4096+128<<10 {
			t.Errorf("read sizes: count %d sum %v, want 2 and %d", h.GetSampleCount(), h.GetSampleSum(), 4096+128<<10)
		}
		for _, b := range h.GetBucket() {
			want := uint64(0)
			switch {
			case b.GetUpperBound() >= 128<<10:
				want = 2
			case b.GetUpperBound() >= 4096:
				want = 1
			}
			if b.GetCumulativeCount() != want {
				t.Errorf("bucket le=%v holds %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
			}
		}
		return
	}
	t.Fatal("no sealroot_iscsi_command_bytes")
}
