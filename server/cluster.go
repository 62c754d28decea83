package server

import (
	"time"

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
	return info
}
