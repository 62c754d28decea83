package server

import (
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/server/config"
	"github.com/sealroot/sealroot/server/metrics"
	"github.com/sealroot/sealroot/server/servestats"
	"github.com/sealroot/sealroot/server/store"
)

// newMetrics returns the daemon's metrics over s's parts, which it reads
// only at scrapes (after New has set them).
func newMetrics(cfg *config.Config, db store.Store, s *Server) *metrics.Metrics {
	fileSize := func(name string) func() (int64, error) {
		return func() (int64, error) {
			fi, err := os.Stat(filepath.Join(cfg.StateDir, name))
			if err != nil {
				return 0, err
			}
			return fi.Size(), nil
		}
	}
	return metrics.New(metrics.Sources{
		InFlight: func() int { return s.attest.InFlight() },
		MachinesByState: func(ctx context.Context) (map[string]int, error) {
			return machinesByState(ctx, db)
		},
		StoreBytes:       fileSize("state.db"),
		AuditBytes:       fileSize("audit.log"),
		Certificates:     certificates(cfg.StateDir),
		EventSubscribers: func() int { return s.events.Subscribers() },
		UnknownRefused:   func() map[string]uint64 { return s.history.Unknown() },
		Noise:            func() map[string]uint64 { return noiseByKind(s.attest.Noise()) },
		BasePeersRefused: func() uint64 {
			if s.bases == nil {
				return 0
			}
			return s.bases.Refused()
		},
		Served: func() map[string]servestats.Snapshot {
			if s.boot == nil {
				return nil
			}
			return s.boot.Served()
		},
		Tunnel: s.tunnelStats,
		ISCSI:  s.iscsiStats,
		NFS:    s.nfsStats,
		BootReports: func() map[string]uint64 {
			if s.reports == nil {
				return nil
			}
			return s.reports.Counts()
		},
		Ready: func() error {
			if !s.ready.Load() {
				return errors.New("starting")
			}
			return nil
		},
	})
}

func machinesByState(ctx context.Context, db store.Store) (map[string]int, error) {
	ms, err := db.Machines(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int)
	for _, m := range ms {
		out[string(m.State)]++
	}
	return out, nil
}

// certificates returns the server and CA certificates by role; one that
// cannot be read is left out (the server did not start without its own).
func certificates(stateDir string) map[string]*x509.Certificate {
	out := make(map[string]*x509.Certificate)
	if cert, err := pki.LoadServer(PKIDir(stateDir)); err == nil && len(cert.Certificate) > 0 {
		if leaf, err := x509.ParseCertificate(cert.Certificate[0]); err == nil {
			out["server"] = leaf
		}
	}
	if ca, err := pki.LoadCA(filepath.Join(PKIDir(stateDir), "ca.crt")); err == nil {
		out["ca"] = ca
	}
	return out
}

// noiseByKind is n as metric and status labels.
func noiseByKind(n attest.Noise) map[string]uint64 {
	return map[string]uint64{"refused": n.Refused, "busy": n.Busy, "idle": n.Idle,
		"half-open": n.HalfOpen, "garbage": n.Garbage, "abandoned": n.Abandoned}
}

// tunnelStats adds up the tunnel's peers for the metrics.
func (s *Server) tunnelStats() (metrics.TunnelStats, error) {
	if s.tunnel == nil {
		return metrics.TunnelStats{}, nil
	}
	peers, err := s.tunnel.PeerList()
	if err != nil {
		return metrics.TunnelStats{}, err
	}
	return metrics.TunnelStatsOf(peers, time.Now()), nil
}

// iscsiStats are the iSCSI portals' totals for the metrics.
func (s *Server) iscsiStats() metrics.ISCSIStats {
	if s.storage == nil || s.storage.Portals == nil {
		return metrics.ISCSIStats{}
	}
	t := s.storage.Portals.Totals()
	return metrics.ISCSIStats{Sessions: t.Sessions, ReadBytes: t.ReadBytes, WrittenBytes: t.WrittenBytes,
		Commands: t.Commands, Errors: t.Errors}
}

// nfsStats are the NFS roots and ganesha for the metrics.
func (s *Server) nfsStats() metrics.NFSStats {
	if s.storage == nil || s.storage.Ganesha() == nil {
		return metrics.NFSStats{}
	}
	g := s.storage.Ganesha()
	return metrics.NFSStats{Exports: len(s.storage.NFSExports()), Restarts: g.Restarts(), Up: g.Running()}
}
