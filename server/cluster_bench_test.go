package server

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	"github.com/sealroot/sealroot/server/config"
	"github.com/sealroot/sealroot/server/store/etcdtest"
	"github.com/sealroot/sealroot/test/loadgen"
)

// clusterWorkers is how many machines attest at once in
// BenchmarkClusterAttestation, each its own machine (one machine never
// attests twice at once).
const clusterWorkers = 16

// BenchmarkClusterAttestation measures full attestations over QUIC (the
// agent's client and software TPMs, loadgen) against servers built as
// `sealroot serve` builds them on one three-member etcd cluster, all in
// this process: one_server, clusterWorkers machines homed at A attesting
// at A; two_servers, half of them at A and as many machines homed at B at
// B, the same number at once. Each machine attests at its home server
// (no home request between servers). On shared cores the servers, the
// clients and etcd compete for the same CPUs, so the ratio of the two
// (make bench-cluster) shows what a second server adds on this host, not
// on two machines; the load average is reported beside it.
func BenchmarkClusterAttestation(b *testing.B) {
	ctx := context.Background()
	c := etcdtest.Start(b, 3)
	prefix := etcdtest.Prefix(b)
	// Every simulated machine comes from 127.0.0.1: lift the per-source
	// limits (as test/loadgen/tempserver's LoadLimits do).
	limits := &config.LimitsConfig{ConnsPerSource: 2 * loadgen.MaxConcurrency, ExchangesPerSource: 2 * loadgen.MaxConcurrency,
		MaxExchanges: 2 * loadgen.MaxConcurrency, RetryAbove: 4 * loadgen.MaxConcurrency, LoadAbove: 4 * loadgen.MaxConcurrency}
	sa := startMember(b, c, prefix, "boot-a", "", limits)
	sb := startMember(b, c, prefix, "boot-b", sa.dir, limits)
	agents, err := loadgen.NewAgents(ctx, rand.Reader, clusterWorkers+clusterWorkers/2, loadgen.DefaultSpec())
	if err != nil {
		b.Fatal(err)
	}
	homedA, homedB := agents[:clusterWorkers], agents[clusterWorkers:]
	onA := homeAt(b, sa, homedA)
	onB := homeAt(b, sb, homedB)
	for _, bc := range []struct {
		name    string
		clients []*agentattest.Client
	}{
		{"one_server", onA},
		{"two_servers", append(onA[:clusterWorkers/2:clusterWorkers/2], onB...)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportMetric(loadAverage(), "load1")
			st, err := loadgen.Run(ctx, loadgen.Options{N: b.N, Concurrency: len(bc.clients)}, loadgen.AttestOp(bc.clients))
			if err != nil {
				b.Fatal(err)
			}
			if st.Errors > 0 {
				b.Fatalf("%d of %d attestations failed: %v", st.Errors, st.N, st.Err)
			}
			b.ReportMetric(st.Throughput(), "attestations/s")
			b.ReportMetric(float64(st.P99.Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(runtime.GOMAXPROCS(0)), "procs")
		})
	}
}

// homeAt enrolls agents on m, approves them there and attests each once
// at m, which makes m their home; it returns their clients for m.
func homeAt(b *testing.B, m *member, agents []*loadgen.Agent) []*agentattest.Client {
	b.Helper()
	ctx := context.Background()
	if err := loadgen.Enroll(ctx, m.target, m.admin, agents); err != nil {
		b.Fatal(err)
	}
	clients, err := m.target.Clients(agents)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range clients {
		if _, err := c.AttestOnce(ctx); err != nil {
			b.Fatal(err)
		}
	}
	return clients
}

// loadAverage is the host's one-minute load average (0 if unknown).
func loadAverage() float64 {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var l float64
	fmt.Sscan(strings.Fields(string(raw))[0], &l)
	return l
}
