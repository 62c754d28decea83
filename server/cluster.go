package server

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/sealroot/sealroot/server/api"
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
