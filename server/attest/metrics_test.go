package attest_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/server/metrics"
)

// quoteHook runs fn before the device quotes: the exchange is in flight.
type quoteHook struct {
	agentattest.Device
	fn func()
}

func (d *quoteHook) Quote(ctx context.Context, q []byte, pcrs []int) ([]byte, []byte, error) {
	d.fn()
	return d.Device.Quote(ctx, q, pcrs)
}

// serveMetrics serves m on a loopback port and returns a scrape func.
func serveMetrics(t *testing.T, m *metrics.Metrics) func(path string) (int, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := m.Serve(ctx, ln); err != nil {
			t.Errorf("metrics Serve: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + ln.Addr().String() + path)
		if err != nil {
			t.Fatalf("scrape %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
}

// The metrics endpoint moves as real attestations happen: an exchange in
// flight is counted while it runs, each outcome by its check, and no
// machine ID ever appears in the exposition.
func TestMetricsScrapedDuringAttestation(t *testing.T) {
	var srv *attest.Server
	var ready error = io.ErrUnexpectedEOF // not ready until the server exists
	m := metrics.New(metrics.Sources{
		InFlight: func() int { return srv.InFlight() },
		Ready:    func() error { return ready },
	})
	e := newEnv(t, func(c *attest.Config) { c.Observer = m })
	srv = e.srv
	scrape := serveMetrics(t, m)
	if code, _ := scrape("/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before ready = %d, want 503", code)
	}
	ready = nil
	if code, _ := scrape("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d, want 200", code)
	}
	if code, _ := scrape("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d, want 200", code)
	}

	mc := newMachine(t, defaultSpec)
	var during string
	dev := &quoteHook{Device: mc.dev, fn: func() { _, during = scrape("/metrics") }}
	e.enrollAndApprove(t, mc, "node-m")                        // pending
	if _, err := attestOnce(t, e.client(t, dev)); err != nil { // allowed, scraped mid-exchange
		t.Fatalf("attest: %v", err)
	}
	if !strings.Contains(during, "sealroot_attestations_in_flight 1\n") {
		t.Errorf("scrape during the exchange lacks in_flight 1:\n%s", grep(during, "in_flight"))
	}
	_, err := attestOnce(t, e.client(t, mc.dev))
	e.wantRefused(t, err, mc.id, "event-log")

	// A session holds its slot until the agent hangs up after the
	// final frame.
	var after string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, after = scrape("/metrics"); strings.Contains(after, "sealroot_attestations_in_flight 0\n") || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range []string{
		`sealroot_attestations_total{check="enrollment",outcome="pending"} 1`,
		`sealroot_attestations_total{check="policy",outcome="allowed"} 1`,
		`sealroot_attestations_total{check="event-log",outcome="refused"} 1`,
		`sealroot_attestation_duration_seconds_count{outcome="allowed"} 1`,
		"sealroot_attestations_in_flight 0\n",
		`sealroot_build_info{`,
	} {
		if !strings.Contains(after, want) {
			t.Errorf("metrics lack %s:\n%s", want, grep(after, "sealroot_"))
		}
	}
	if strings.Contains(after, mc.id[:16]) {
		t.Error("a machine ID appears in the metrics")
	}
}

func grep(s, sub string) string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}
