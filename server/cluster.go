package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/basepeer"
	"github.com/sealroot/sealroot/server/store"
)

// clusterInfo is how this server registers itself among the servers
// sharing its store: its name, tunnel endpoint and key, and the address
// its roots are served at (its tunnel address, else its iSCSI portal).
func (s *Server) clusterInfo() store.ServerInfo {
	info := store.ServerInfo{Name: s.cfg.ClusterName(serverName()), Started: time.Now().UTC()}
	if s.tunnel != nil {
		pub := s.tunnel.PublicKey()
		info.TunnelPublicKey = pub[:]
		info.TunnelEndpoint = s.cfg.Tunnel.Endpoint
		info.StorageAddress = s.tunnel.ServerAddr().String() // roots are served inside the tunnel
	}
	if s.cfg.ISCSI != nil && s.cfg.ISCSI.Listen != "" && info.StorageAddress == "" {
		info.StorageAddress = s.cfg.ISCSI.Listen
	}
	if s.basesLn != nil {
		info.BaseAddress = s.basesLn.Addr().String()
	}
	return info
}

// newBasePeers readies the fetching of bases from the servers sharing
// cs, and with images.peer_listen the serving of this server's: both
// with this server's certificate, both admitting only server
// certificates of the CA in the PKI directory (package basepeer).
func (s *Server) newBasePeers(cs store.ClusterStore, cert tls.Certificate, logger hclog.Logger) error {
	ca, err := pki.LoadCA(filepath.Join(PKIDir(s.cfg.StateDir), pki.CACertFile))
	if err != nil {
		return fmt.Errorf("base peers: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	client := basepeer.NewClient(basepeer.ClientTLS(cert, pool))
	s.onClose(func() error { client.Close(); return nil })
	s.puller = basepeer.NewPuller(basepeer.PullerConfig{Self: s.cfg.ClusterName(serverName()), Peers: cs, Client: client,
		Images: s.storage.Images, Logger: logger})
	s.onClose(s.puller.Close)
	if s.cfg.Images != nil && s.cfg.Images.PeerListen != "" {
		s.bases = basepeer.NewServer(s.storage.Images, cert, pool, logger)
	}
	return nil
}

// clusterStatus lists the servers sharing the store for `sealroot
// status`: those registered, and those only named as machines' homes,
// which are down. Nil on a store of one server; when the store cannot
// be read, a status that says why, so that the rest of `status` shows.
func (s *Server) clusterStatus(ctx context.Context) *api.ClusterStatus {
	cs, ok := s.store.(store.ClusterStore)
	if !ok {
		return nil
	}
	self := s.cfg.ClusterName(serverName())
	st, err := ClusterStatus(ctx, cs, self)
	if err != nil {
		return &api.ClusterStatus{Self: self, Error: err.Error()}
	}
	return st
}

// ClusterStatus is the status of the servers sharing cs, seen from self.
func ClusterStatus(ctx context.Context, cs store.ClusterStore, self string) (*api.ClusterStatus, error) {
	up, err := cs.Servers(ctx)
	if err != nil {
		return nil, err
	}
	homes, err := cs.Homes(ctx)
	if err != nil {
		return nil, err
	}
	byName := map[string]*api.ClusterServer{}
	for _, si := range up {
		byName[si.Name] = &api.ClusterServer{Name: si.Name, Up: true, TunnelEndpoint: si.TunnelEndpoint, StorageAddress: si.StorageAddress}
	}
	for _, home := range homes {
		if byName[home] == nil {
			byName[home] = &api.ClusterServer{Name: home}
		}
		byName[home].Homed++
	}
	st := &api.ClusterStatus{Self: self}
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		st.Servers = append(st.Servers, *byName[name])
	}
	return st, nil
}
