package cli_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/server"
	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/config"
)

// `sealroot status` and the daemon's metrics endpoint report the same
// live state of a real daemon.
func TestStatusAndMetrics(t *testing.T) {
	sock, maddr := plainDaemonMetrics(t)
	if maddr == "" {
		t.Fatal("daemon reports no metrics address")
	}
	r := run(t, sock, "", "status")
	flat := strings.Join(strings.Fields(r.stdout), " ")
	for _, want := range []string{"(ready)", "attest", "admin api", "metrics " + maddr,
		"Machines: 0 approved, 1 pending, 0 needs-reapproval, 0 revoked", "In flight: 0 attestations", "server CN=", "ca CN="} {
		if r.code != 0 || !strings.Contains(flat, want) {
			t.Errorf("status lacks %q (exit %d):\n%s%s", want, r.code, r.stdout, r.stderr)
		}
	}
	r = run(t, sock, "", "--json", "status")
	var st api.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	if st.Machines[api.StatePending] != 1 || !st.Ready || len(st.Certificates) != 2 || st.Version == "" {
		t.Errorf("status --json = %+v", st)
	}

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + maddr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d", code)
	}
	code, body := get("/metrics")
	for _, want := range []string{`sealroot_machines{state="pending"} 1`, `sealroot_certificate_expiry_timestamp_seconds{cert="server"}`,
		"sealroot_store_size_bytes ", "sealroot_audit_log_size_bytes ", "sealroot_attestations_in_flight 0"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// Metrics are never served where the tunnel reaches.
func TestMetricsAddrNotOnTunnel(t *testing.T) {
	for _, addr := range []string{":9477", "0.0.0.0:9477", "10.200.0.1:9477", "localhost:9477"} {
		cfg := config.Config{StateDir: t.TempDir(), MetricsAddr: addr,
			Tunnel: &config.TunnelConfig{Prefix: "10.200.0.0/16", Endpoint: "192.0.2.1:51820"}}
		if _, err := server.New(context.Background(), cfg, nil); err == nil || !strings.Contains(err.Error(), "metrics_addr") {
			t.Errorf("metrics_addr %q with a tunnel: err = %v, want refused", addr, err)
		}
	}
}
