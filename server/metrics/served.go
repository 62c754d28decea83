package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealroot/sealroot/server/servestats"
	"github.com/sealroot/sealroot/server/tunnel"
)

// TunnelStats is the tunnel's peers added up: no per-peer label.
type TunnelStats struct {
	Peers int
	// HandshakeAges are the ages of the peers' last handshakes; peers
	// without one are counted in NoHandshake.
	HandshakeAges    []time.Duration
	NoHandshake      int
	RxBytes, TxBytes int64 // over the installed peers
}

// ISCSIStats are the iSCSI portals' counts added up.
type ISCSIStats struct {
	Sessions                int
	ReadBytes, WrittenBytes uint64
	Commands, Errors        uint64
}

// NFSStats are the NFS roots and their nfs-ganesha.
type NFSStats struct {
	Exports  int
	Restarts uint64
	Up       bool
}

// TunnelStatsOf adds up peers (tunnel.Tunnel.PeerList) at now.
func TunnelStatsOf(peers []tunnel.PeerInfo, now time.Time) TunnelStats {
	var ts TunnelStats
	for _, p := range peers {
		ts.Peers++
		ts.RxBytes += p.RxBytes
		ts.TxBytes += p.TxBytes
		if p.LastHandshake.IsZero() {
			ts.NoHandshake++
		} else {
			ts.HandshakeAges = append(ts.HandshakeAges, now.Sub(p.LastHandshake))
		}
	}
	return ts
}

var (
	descServedRequests = prometheus.NewDesc("sealroot_served_requests_total",
		"Boot service requests by service (dhcp, tftp, http) and result.", []string{"service", "result"}, nil)
	descServedBytes = prometheus.NewDesc("sealroot_served_bytes_total",
		"Boot service bytes by service and direction (sent, received).", []string{"service", "direction"}, nil)
	descTunnelPeers = prometheus.NewDesc("sealroot_tunnel_peers",
		"Installed WireGuard peers (machines attested with a tunnel key).", nil, nil)
	descTunnelNoHandshake = prometheus.NewDesc("sealroot_tunnel_peers_without_handshake",
		"Installed peers that have not completed a handshake.", nil, nil)
	descTunnelHandshakeAge = prometheus.NewDesc("sealroot_tunnel_handshake_age_seconds",
		"Ages of the installed peers' last handshakes (one observation per peer, at scrape time).", nil, nil)
	descTunnelBytes = prometheus.NewDesc("sealroot_tunnel_bytes",
		"Bytes through the installed peers, by direction (rx, tx); a removed peer's bytes leave the sum.", []string{"direction"}, nil)
	descISCSISessions = prometheus.NewDesc("sealroot_iscsi_sessions",
		"Logged-in iSCSI sessions.", nil, nil)
	descISCSIBytes = prometheus.NewDesc("sealroot_iscsi_bytes_total",
		"iSCSI data by direction (read, written by initiators).", []string{"direction"}, nil)
	descISCSICommands = prometheus.NewDesc("sealroot_iscsi_commands_total",
		"SCSI commands executed.", nil, nil)
	descISCSIErrors = prometheus.NewDesc("sealroot_iscsi_command_errors_total",
		"SCSI commands that ended with a status other than GOOD.", nil, nil)
	descNFSExports = prometheus.NewDesc("sealroot_nfs_exports",
		"NFS roots exported now.", nil, nil)
	descGaneshaRestarts = prometheus.NewDesc("sealroot_nfs_ganesha_restarts_total",
		"Times nfs-ganesha died and was restarted.", nil, nil)
	descGaneshaUp = prometheus.NewDesc("sealroot_nfs_ganesha_up",
		"1 while nfs-ganesha runs and serves its exports.", nil, nil)
)

var servedDescs = []*prometheus.Desc{descServedRequests, descServedBytes, descTunnelPeers, descTunnelNoHandshake,
	descTunnelHandshakeAge, descTunnelBytes, descISCSISessions, descISCSIBytes, descISCSICommands, descISCSIErrors,
	descNFSExports, descGaneshaRestarts, descGaneshaUp}

// handshakeBuckets are the handshake age buckets: WireGuard rekeys every
// 2 minutes while traffic flows, so a live peer stays under about 3.
var handshakeBuckets = []float64{30, 60, 120, 180, 300, 600, 1800, 3600}

func collectServed(ch chan<- prometheus.Metric, s Sources, failed func(string), answered func(string)) {
	if s.Served != nil {
		for service, snap := range s.Served() {
			collectSnapshot(ch, service, snap)
		}
	}
	if s.Tunnel != nil {
		if ts, err := s.Tunnel(); err != nil {
			failed("tunnel")
		} else {
			answered("tunnel")
			collectTunnel(ch, ts)
		}
	}
	if s.ISCSI != nil {
		st := s.ISCSI()
		ch <- prometheus.MustNewConstMetric(descISCSISessions, prometheus.GaugeValue, float64(st.Sessions))
		ch <- prometheus.MustNewConstMetric(descISCSIBytes, prometheus.CounterValue, float64(st.ReadBytes), "read")
		ch <- prometheus.MustNewConstMetric(descISCSIBytes, prometheus.CounterValue, float64(st.WrittenBytes), "written")
		ch <- prometheus.MustNewConstMetric(descISCSICommands, prometheus.CounterValue, float64(st.Commands))
		ch <- prometheus.MustNewConstMetric(descISCSIErrors, prometheus.CounterValue, float64(st.Errors))
	}
	if s.NFS != nil {
		st := s.NFS()
		up := 0.0
		if st.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descNFSExports, prometheus.GaugeValue, float64(st.Exports))
		ch <- prometheus.MustNewConstMetric(descGaneshaRestarts, prometheus.CounterValue, float64(st.Restarts))
		ch <- prometheus.MustNewConstMetric(descGaneshaUp, prometheus.GaugeValue, up)
	}
}

func collectSnapshot(ch chan<- prometheus.Metric, service string, snap servestats.Snapshot) {
	for result, n := range snap.Requests {
		ch <- prometheus.MustNewConstMetric(descServedRequests, prometheus.CounterValue, float64(n), service, result)
	}
	ch <- prometheus.MustNewConstMetric(descServedBytes, prometheus.CounterValue, float64(snap.SentBytes), service, "sent")
	ch <- prometheus.MustNewConstMetric(descServedBytes, prometheus.CounterValue, float64(snap.ReceivedBytes), service, "received")
}

func collectTunnel(ch chan<- prometheus.Metric, ts TunnelStats) {
	ch <- prometheus.MustNewConstMetric(descTunnelPeers, prometheus.GaugeValue, float64(ts.Peers))
	ch <- prometheus.MustNewConstMetric(descTunnelNoHandshake, prometheus.GaugeValue, float64(ts.NoHandshake))
	buckets := make(map[float64]uint64, len(handshakeBuckets))
	var sum float64
	for _, age := range ts.HandshakeAges {
		sec := age.Seconds()
		sum += sec
		for _, b := range handshakeBuckets {
			if sec <= b {
				buckets[b]++
			}
		}
	}
	ch <- prometheus.MustNewConstHistogram(descTunnelHandshakeAge, uint64(len(ts.HandshakeAges)), sum, buckets)
	ch <- prometheus.MustNewConstMetric(descTunnelBytes, prometheus.GaugeValue, float64(ts.RxBytes), "rx")
	ch <- prometheus.MustNewConstMetric(descTunnelBytes, prometheus.GaugeValue, float64(ts.TxBytes), "tx")
}
