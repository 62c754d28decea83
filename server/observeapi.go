package server

import (
	"context"
	"slices"
	"strings"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/rootiscsi"
)

// observeService is api.ObserveService over a running server: what it
// serves now, read from the services themselves.
type observeService struct{ s *Server }

var _ api.ObserveService = observeService{}

func (o observeService) BootLogs(ctx context.Context, ref string) ([]api.BootLog, error) {
	m, err := o.s.machines.Machine(ctx, ref)
	if err != nil {
		return nil, err
	}
	logs, err := o.s.store.BootLogs(ctx, m.ID)
	if err != nil {
		return nil, err
	}
	out := make([]api.BootLog, 0, len(logs))
	for _, l := range logs {
		out = append(out, api.BootLog{Time: l.Time, Remote: l.Remote, Failed: l.Failed, Error: l.Error, Log: l.Log})
	}
	return out, nil
}

// names returns the machines' names by ID.
func (o observeService) names(ctx context.Context) (map[string]string, error) {
	ms, err := o.s.store.Machines(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(ms))
	for _, m := range ms {
		out[m.ID] = m.Name
	}
	return out, nil
}

func (o observeService) TunnelPeers(ctx context.Context) ([]api.TunnelPeer, error) {
	out := []api.TunnelPeer{}
	if o.s.tunnel == nil {
		return out, nil
	}
	peers, err := o.s.tunnel.PeerList()
	if err != nil {
		return nil, err
	}
	names, err := o.names(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range peers {
		tp := api.TunnelPeer{MachineID: p.MachineID, Name: names[p.MachineID], Address: p.Addr.String(),
			LastHandshake: p.LastHandshake, RxBytes: p.RxBytes, TxBytes: p.TxBytes}
		if p.Endpoint.IsValid() {
			tp.Endpoint = p.Endpoint.String()
		}
		out = append(out, tp)
	}
	return out, nil
}

func (o observeService) ISCSISessions(ctx context.Context) ([]api.ISCSISession, error) {
	out := []api.ISCSISession{}
	if o.s.storage.Portals == nil {
		return out, nil
	}
	names, err := o.names(ctx)
	if err != nil {
		return nil, err
	}
	byIQN := make(map[string]string, len(names))
	for id := range names {
		byIQN[rootiscsi.TargetIQN(id)] = id
	}
	for _, s := range o.s.storage.Portals.Sessions() {
		out = append(out, api.ISCSISession{Initiator: s.Initiator, Target: s.Target, Remote: s.Remote.String(),
			MachineID: byIQN[s.Target], Since: s.Since, ReadBytes: s.ReadBytes, WrittenBytes: s.WrittenBytes,
			Commands: s.Commands, Errors: s.Errors})
	}
	slices.SortFunc(out, func(a, b api.ISCSISession) int { return strings.Compare(a.Target, b.Target) })
	return out, nil
}

func (o observeService) DHCPLeases(ctx context.Context) ([]api.DHCPLease, error) {
	ls, err := o.s.store.DHCPLeases(ctx)
	if err != nil {
		return nil, err
	}
	rs, err := o.s.store.DHCPReservations(ctx)
	if err != nil {
		return nil, err
	}
	reserved := make(map[string]string, len(rs))
	for _, r := range rs {
		reserved[r.MAC] = r.Addr.String()
	}
	out := make([]api.DHCPLease, 0, len(ls))
	for _, l := range ls {
		out = append(out, api.DHCPLease{MAC: l.MAC, Addr: l.Addr.String(), Expiry: l.Expiry,
			Reserved: l.MAC != "" && reserved[l.MAC] == l.Addr.String()})
	}
	slices.SortFunc(out, func(a, b api.DHCPLease) int { return strings.Compare(a.Addr, b.Addr) })
	return out, nil
}

func (o observeService) NFSExports(context.Context) ([]api.NFSExport, error) {
	out := []api.NFSExport{}
	for id, e := range o.s.storage.NFSExports() {
		out = append(out, api.NFSExport{MachineID: id, Path: e.Path, Client: e.Client.String()})
	}
	slices.SortFunc(out, func(a, b api.NFSExport) int { return strings.Compare(a.MachineID, b.MachineID) })
	return out, nil
}
