// Package metrics exports sealroot's Prometheus metrics and its health
// endpoints on one HTTP listener, apart from the admin socket and never on
// the tunnel:
//
//	/metrics  Prometheus text format
//	/healthz  200 while the process serves
//	/readyz   200 once the server is ready (Sources.Ready), else 503
//
// # Labels
//
// No label carries a machine ID, a key, a secret or an address: outcomes
// and check names are a fixed set from the code, so cardinality stays
// bounded whatever agents send. Per-machine detail is in the boot history
// (`sealroot machine show`), not here.
package metrics

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/server/servestats"
	"github.com/sealroot/sealroot/wire"
)

// Sources are the live values the gauges read at each scrape. Nil funcs
// export nothing.
type Sources struct {
	// InFlight is the number of attestations running now.
	InFlight func() int
	// MachinesByState counts enrolled machines by state.
	MachinesByState func(ctx context.Context) (map[string]int, error)
	// StoreBytes is the size of the state database; AuditBytes that of
	// the audit log.
	StoreBytes, AuditBytes func() (int64, error)
	// Certificates are the certificates whose expiry is exported, by
	// role ("server", "ca").
	Certificates map[string]*x509.Certificate
	// EventSubscribers counts open `sealroot events --follow` streams.
	EventSubscribers func() int
	// UnknownRefused counts refusals of unknown identities by check.
	UnknownRefused func() map[string]uint64
	// Noise counts connections that ended before naming an identity, by
	// kind (refused, busy, idle, half-open, garbage, abandoned).
	Noise func() map[string]uint64
	// BasePeersRefused counts clients of the base service (images.
	// peer_listen) refused at the TLS handshake; nil without it.
	BasePeersRefused func() uint64
	// Served is what each boot service served, by service.
	Served func() map[string]servestats.Snapshot
	// Tunnel, ISCSI and NFS are those services added up; nil without
	// the service.
	Tunnel func() (TunnelStats, error)
	ISCSI  func() ISCSIStats
	NFS    func() NFSStats
	// BootReports counts agents' boot report connections by result
	// (stored, bad, stranger, busy, error).
	BootReports func() map[string]uint64
	// Ready reports whether the server serves; nil: always ready.
	Ready func() error
}

// Metrics is the registry and the instruments the server feeds. It
// implements attest.Observer.
type Metrics struct {
	reg       *prometheus.Registry
	attempts  *prometheus.CounterVec
	durations *prometheus.HistogramVec
	stages    *prometheus.HistogramVec
	failures  *prometheus.CounterVec
	iscsiLat  *prometheus.HistogramVec
	iscsiSize *prometheus.HistogramVec
	ready     func() error
}

var _ attest.Observer = (*Metrics)(nil)

// New returns the metrics over src, registered in a registry of their own.
func New(src Sources) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealroot_attestations_total",
			Help: "Attestations decided, by outcome and the check that decided them.",
		}, []string{"outcome", "check"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sealroot_attestation_duration_seconds",
			Help:    "Time from an agent's hello to the server's decision, by outcome.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"outcome"}),
		stages: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sealroot_agent_stage_duration_seconds",
			Help:    "The agents' own step timings, as their boot reports said, by step.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"stage"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealroot_agent_stage_failures_total",
			Help: "Steps that failed after attestation, as agents' boot reports said, by step.",
		}, []string{"stage"}),
		iscsiLat: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sealroot_iscsi_command_duration_seconds",
			Help:    "Time the target took to execute SCSI commands, by portal (tunnel, plain) and operation (read, write, sync, other).",
			Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5},
		}, []string{"portal", "op"}),
		iscsiSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sealroot_iscsi_command_bytes",
			Help:    "Data moved by SCSI reads and writes, by portal (tunnel, plain) and operation (read, write).",
			Buckets: prometheus.ExponentialBuckets(4<<10, 2, 9), // 4 KiB .. 1 MiB
		}, []string{"portal", "op"}),
		ready: src.Ready,
	}
	m.reg.MustRegister(m.attempts, m.durations, m.stages, m.failures, m.iscsiLat, m.iscsiSize, buildInfo(),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reg.MustRegister(&sourceCollector{src: src})
	return m
}

// Observe implements attest.Observer.
func (m *Metrics) Observe(a attest.Attempt) {
	m.attempts.WithLabelValues(a.Outcome, a.Check).Inc()
	m.durations.WithLabelValues(a.Outcome).Observe(a.Duration.Seconds())
}

// AgentStages are the agent's step names (agent.Run); any other name an
// agent reports is exported as "other", so agents cannot grow the label
// set.
var AgentStages = []string{"entropy", "modules", "network", "attest", "tunnel", "root", "provision"}

// ObserveBootReport records an agent's reported step timings.
func (m *Metrics) ObserveBootReport(r *wire.BootReport) {
	for _, s := range r.Stages {
		m.stages.WithLabelValues(stageLabel(s.Name)).Observe(s.Duration.Seconds())
	}
	if r.Failed != "" {
		m.failures.WithLabelValues(stageLabel(r.Failed)).Inc()
	}
}

func stageLabel(name string) string {
	if slices.Contains(AgentStages, name) {
		return name
	}
	return "other"
}

// ObserveISCSICommand records one SCSI command's execution time and, for
// reads and writes, the bytes it moved.
func (m *Metrics) ObserveISCSICommand(portal, op string, bytes int, took time.Duration) {
	m.iscsiLat.WithLabelValues(portal, op).Observe(took.Seconds())
	if op == "read" || op == "write" {
		m.iscsiSize.WithLabelValues(portal, op).Observe(float64(bytes))
	}
}

// Registry is where the metrics are registered (for tests and for other
// services' collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves /metrics, /healthz and /readyz.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if m.ready != nil {
			if err := m.ready(); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// Serve serves Handler on ln until ctx ends.
func (m *Metrics) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           m.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("metrics: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := hs.Shutdown(sctx)
	if serr := <-done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// Version is the sealroot module version this binary was built from.
func Version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "unknown"
}

func buildInfo() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "sealroot_build_info",
		Help:        "Always 1; the labels name the sealroot build.",
		ConstLabels: prometheus.Labels{"version": Version(), "goversion": runtime.Version()},
	})
	g.Set(1)
	return g
}
