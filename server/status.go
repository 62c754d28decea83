package server

import (
	"cmp"
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/config"
	"github.com/sealroot/sealroot/server/metrics"
)

// services is what Run started, for `sealroot status`.
type services struct {
	mu      sync.Mutex // guards list
	list    []api.ServiceStatus
	started time.Time
}

// begin forgets what an earlier Run started and notes the start time.
func (s *services) begin() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.list, s.started = nil, time.Now()
}

func (s *services) add(name, addr, detail string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.list = append(s.list, api.ServiceStatus{Name: name, Addr: addr, Detail: detail})
}

func (s *services) snapshot() ([]api.ServiceStatus, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.list), s.started
}

// addConfigured records the services the configuration turns on whose
// listeners their own packages open.
func (s *services) addConfigured(cfg *config.Config) {
	if b := cfg.Boot; b != nil {
		mode := b.DHCPMode
		if mode == "" {
			mode = "proxy"
		}
		s.add("dhcp", b.DHCPInterface, "mode "+mode)
		s.add("http boot", fmt.Sprintf("%s:%d", b.ServerIP, b.HTTPPort), "")
		if !b.DisableTFTP {
			s.add("tftp", fmt.Sprintf("%s:%d", b.ServerIP, b.TFTPPort), "")
		}
	}
	if t := cfg.Tunnel; t != nil {
		s.add("tunnel", t.Endpoint, "WireGuard, prefix "+t.Prefix)
	}
	if c := cfg.ISCSI; c != nil {
		s.add("iscsi", c.Listen, "")
	}
	if c := cfg.NFS; c != nil {
		s.add("nfs", fmt.Sprintf(":%d", c.Port), "nfs-ganesha")
	}
}

// statusService answers `sealroot status`.
type statusService struct{ s *Server }

func (ss statusService) Status(ctx context.Context) (*api.Status, error) {
	s := ss.s
	byState, err := machinesByState(ctx, s.store)
	if err != nil {
		return nil, err
	}
	st := &api.Status{
		Server:         serverName(),
		Version:        metrics.Version(),
		GoVersion:      runtime.Version(),
		Ready:          s.ready.Load(),
		Machines:       make(map[api.State]int),
		InFlight:       s.attest.InFlight(),
		UnknownRefused: s.history.Unknown(),
		Noise:          noiseByKind(s.attest.Noise()),
		EventStreams:   s.events.Subscribers(),
	}
	st.Services, st.Started = s.services.snapshot()
	for state, n := range byState {
		st.Machines[api.State(state)] = n
	}
	for role, c := range certificates(s.cfg.StateDir) {
		st.Certificates = append(st.Certificates, api.CertificateStatus{Role: role, Subject: c.Subject.String(), NotAfter: c.NotAfter})
	}
	slices.SortFunc(st.Certificates, func(a, b api.CertificateStatus) int { return cmp.Compare(b.Role, a.Role) })
	if st.Served, err = servedCounts(ctx, s); err != nil {
		return nil, err
	}
	st.Cluster = s.clusterStatus(ctx)
	return st, nil
}

// servedCounts counts what s serves now for `sealroot status`.
func servedCounts(ctx context.Context, s *Server) (*api.ServedCounts, error) {
	c := &api.ServedCounts{}
	ts, err := s.tunnelStats()
	if err != nil {
		return nil, err
	}
	c.TunnelPeers, c.TunnelPeersHandshaken = ts.Peers, len(ts.HandshakeAges)
	c.ISCSISessions = s.iscsiStats().Sessions
	leases, err := s.store.DHCPLeases(ctx)
	if err != nil {
		return nil, err
	}
	c.DHCPLeases = len(leases)
	if s.storage.Ganesha() != nil {
		n := s.nfsStats()
		c.NFSExports, c.GaneshaRestarts, c.Ganesha = n.Exports, n.Restarts, "down"
		if n.Up {
			c.Ganesha = "running"
		}
	}
	return c, nil
}
