package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// sourceCollector reads Sources at each scrape.
type sourceCollector struct{ src Sources }

var (
	descInFlight = prometheus.NewDesc("sealroot_attestations_in_flight",
		"Attestation exchanges running now.", nil, nil)
	descMachines = prometheus.NewDesc("sealroot_machines",
		"Enrolled machines by state.", []string{"state"}, nil)
	descStoreBytes = prometheus.NewDesc("sealroot_store_size_bytes",
		"Size of the state database file.", nil, nil)
	descAuditBytes = prometheus.NewDesc("sealroot_audit_log_size_bytes",
		"Size of the audit log file.", nil, nil)
	descCertExpiry = prometheus.NewDesc("sealroot_certificate_expiry_timestamp_seconds",
		"When a certificate expires (Unix time), by role.", []string{"cert"}, nil)
	descSubscribers = prometheus.NewDesc("sealroot_event_subscribers",
		"Open `sealroot events --follow` streams.", nil, nil)
	descUnknown = prometheus.NewDesc("sealroot_unknown_identity_refusals_total",
		"Attestations by identities the server does not know, refused, by check.", []string{"check"}, nil)
	descNoise = prometheus.NewDesc("sealroot_attestation_noise_total",
		"Connections that ended before naming an identity (never logged one by one), by kind.", []string{"kind"}, nil)
	descBasePeersRefused = prometheus.NewDesc("sealroot_base_peer_refused_total",
		"Clients of the base service refused at the TLS handshake: no server certificate of the cluster CA (never logged one by one).", nil, nil)
	descBootReports = prometheus.NewDesc("sealroot_boot_reports_total",
		"Agents' boot report connections by result (stored, bad, stranger, busy, error).", []string{"result"}, nil)
	descScrapeErrors = prometheus.NewDesc("sealroot_metrics_source_errors",
		"Sources that failed to answer in this scrape (store, files).", []string{"source"}, nil)
)

// machineStates are always exported, so a state with no machine reads 0.
var machineStates = []string{"pending", "approved", "needs-reapproval", "revoked"}

func (c *sourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInFlight, descMachines, descStoreBytes, descAuditBytes,
		descCertExpiry, descSubscribers, descUnknown, descNoise, descBasePeersRefused, descBootReports, descScrapeErrors} {
		ch <- d
	}
	for _, d := range servedDescs {
		ch <- d
	}
}

func (c *sourceCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src
	errs := make(map[string]float64) // 1 for each source that failed, 0 for each that answered
	defer func() {
		for source, v := range errs {
			ch <- prometheus.MustNewConstMetric(descScrapeErrors, prometheus.GaugeValue, v, source)
		}
	}()
	failed := func(source string) { errs[source] = 1 }
	if s.InFlight != nil {
		ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(s.InFlight()))
	}
	if s.MachinesByState != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		byState, err := s.MachinesByState(ctx)
		cancel()
		if err != nil {
			failed("machines")
		} else {
			errs["machines"] = 0
			for _, st := range machineStates {
				ch <- prometheus.MustNewConstMetric(descMachines, prometheus.GaugeValue, float64(byState[st]), st)
			}
		}
	}
	size := func(d *prometheus.Desc, name string, fn func() (int64, error)) {
		if fn == nil {
			return
		}
		n, err := fn()
		if err != nil {
			failed(name)
			return
		}
		errs[name] = 0
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(n))
	}
	size(descStoreBytes, "store", s.StoreBytes)
	size(descAuditBytes, "audit", s.AuditBytes)
	for role, cert := range s.Certificates {
		ch <- prometheus.MustNewConstMetric(descCertExpiry, prometheus.GaugeValue, float64(cert.NotAfter.Unix()), role)
	}
	if s.EventSubscribers != nil {
		ch <- prometheus.MustNewConstMetric(descSubscribers, prometheus.GaugeValue, float64(s.EventSubscribers()))
	}
	if s.Noise != nil {
		for kind, n := range s.Noise() {
			ch <- prometheus.MustNewConstMetric(descNoise, prometheus.CounterValue, float64(n), kind)
		}
	}
	if s.BasePeersRefused != nil {
		ch <- prometheus.MustNewConstMetric(descBasePeersRefused, prometheus.CounterValue, float64(s.BasePeersRefused()))
	}
	collectServed(ch, s, failed, func(source string) { errs[source] = 0 })
	if s.BootReports != nil {
		for result, n := range s.BootReports() {
			ch <- prometheus.MustNewConstMetric(descBootReports, prometheus.CounterValue, float64(n), result)
		}
	}
	if s.UnknownRefused != nil {
		for check, n := range s.UnknownRefused() {
			ch <- prometheus.MustNewConstMetric(descUnknown, prometheus.CounterValue, float64(n), check)
		}
	}
}
