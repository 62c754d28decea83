package rootiscsi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/iscsi"
)

// Tunnel is the WireGuard link the tunnelled portal listens on;
// *tunnel.Tunnel implements it.
type Tunnel interface {
	Peers
	Listen(network string, port int) (net.Listener, error)
	ServerAddr() netip.Addr
}

// Portals are the iSCSI servers and listeners targets are reached on: one
// bound to the tunnel only, and one on a plain address.
type Portals struct {
	tunnelSrv, plainSrv *iscsi.Server
	tunnelLn, plainLn   net.Listener
}

// DefaultMaxConns is how many connections a portal holds open when
// ListenPortals is given 0: one per machine on an iSCSI root, for as long
// as it runs, with room to spare.
const DefaultMaxConns = 4096

// ListenPortals opens the listeners: on tn at port (0: DefaultPort) when
// tn is not nil, and on plain ("ip:port" with a specific IP, which agents
// are told) when not "". Each portal holds at most maxConns connections
// (0: DefaultMaxConns). It fills cfg's portal fields for New.
func ListenPortals(cfg *Config, tn Tunnel, port int, plain string, maxConns int, logger hclog.Logger) (_ *Portals, err error) {
	if tn == nil && plain == "" {
		return nil, errors.New("iscsi: needs a tunnel section or a listen address")
	}
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	if port == 0 {
		port = DefaultPort
	}
	if maxConns <= 0 {
		maxConns = DefaultMaxConns
	}
	ps := &Portals{}
	defer func() {
		if err != nil {
			ps.Close()
		}
	}()
	if tn != nil {
		if ps.tunnelLn, err = tn.Listen("tcp", port); err != nil {
			return nil, fmt.Errorf("iscsi: %w", err)
		}
		ps.tunnelSrv = &iscsi.Server{Logger: logger.With("portal", "tunnel"), MaxConns: maxConns}
		cfg.Tunnelled, cfg.Peers, cfg.TunnelPortal = ps.tunnelSrv, tn, TunnelPortal(tn.ServerAddr(), port)
	}
	if plain != "" {
		ap, err := netip.ParseAddrPort(plain)
		if err != nil || ap.Addr().IsUnspecified() {
			return nil, fmt.Errorf("iscsi: listen %q: want a specific ip:port, which agents are told", plain)
		}
		if ps.plainLn, err = net.Listen("tcp", plain); err != nil {
			return nil, fmt.Errorf("iscsi: %w", err)
		}
		ps.plainSrv = &iscsi.Server{Logger: logger.With("portal", "plain"), MaxConns: maxConns}
		cfg.Plain, cfg.PlainPortal = ps.plainSrv, ps.plainLn.Addr().String()
	}
	return ps, nil
}

// PlainAddr is the plain listener's address, nil without one.
func (ps *Portals) PlainAddr() net.Addr {
	if ps == nil || ps.plainLn == nil {
		return nil
	}
	return ps.plainLn.Addr()
}

// Serve serves the listeners through run, which owns the goroutines,
// until ctx ends.
func (ps *Portals) Serve(ctx context.Context, run func(name string, fn func() error)) {
	if ps.tunnelLn != nil {
		run("iscsi (tunnel)", func() error { return ps.tunnelSrv.Serve(ctx, ps.tunnelLn) })
	}
	if ps.plainLn != nil {
		run("iscsi", func() error { return ps.plainSrv.Serve(ctx, ps.plainLn) })
	}
}

// Close closes the listeners (Serve closes them too; a second Close is
// harmless).
func (ps *Portals) Close() error {
	for _, ln := range []net.Listener{ps.tunnelLn, ps.plainLn} {
		if ln != nil {
			ln.Close()
		}
	}
	return nil
}

// Session is a logged-in iSCSI session and the portal it came through
// ("tunnel" or "plain").
type Session struct {
	iscsi.SessionInfo
	Portal string
}

// Sessions returns the sessions logged in on either portal.
func (ps *Portals) Sessions() []Session {
	var out []Session
	for portal, srv := range ps.servers() {
		for _, s := range srv.Sessions() {
			out = append(out, Session{SessionInfo: s, Portal: portal})
		}
	}
	return out
}

// Totals returns the portals' counts added up.
func (ps *Portals) Totals() iscsi.Totals {
	var t iscsi.Totals
	for _, srv := range ps.servers() {
		st := srv.Totals()
		t.Sessions += st.Sessions
		t.ReadBytes += st.ReadBytes
		t.WrittenBytes += st.WrittenBytes
		t.Commands += st.Commands
		t.Errors += st.Errors
	}
	return t
}

// OnCommand makes both portals call f with their name ("tunnel",
// "plain") after each SCSI command (see iscsi.Server.OnCommand). Call it
// before Serve.
func (ps *Portals) OnCommand(f func(portal, op string, bytes int, took time.Duration)) {
	for portal, srv := range ps.servers() {
		srv.OnCommand = func(op string, bytes int, took time.Duration) { f(portal, op, bytes, took) }
	}
}

func (ps *Portals) servers() map[string]*iscsi.Server {
	out := map[string]*iscsi.Server{}
	if ps.tunnelSrv != nil {
		out["tunnel"] = ps.tunnelSrv
	}
	if ps.plainSrv != nil {
		out["plain"] = ps.plainSrv
	}
	return out
}
