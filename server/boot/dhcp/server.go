// Package dhcp is sealroot's PXE-aware DHCP server: the first step of a
// network boot.
//
// Firmware PXE gets the iPXE binary for its architecture over TFTP
// (option 93: 0 -> undionly.kpxe, 7 or 9 -> ipxe.efi). iPXE, recognised by
// its user class "iPXE" (option 77) or its option 175, then gets the URL of
// the boot script, http://<server>:<port>/boot.ipxe?arch=<bios|efi-x64>, as
// boot file name. Nothing in these answers is secret or trusted: machines
// are identified later by their TPM, never by MAC or IP.
//
// In ModeProxy (the zero value) the server is a ProxyDHCP: it answers only
// PXE clients, hands out no addresses and coexists with the site's DHCP
// server. In ModeFull it also leases addresses from a small pool, for
// isolated lab networks. With Config.Leases, every lease decision is taken
// and recorded in one store transaction: leases survive restarts, servers
// sharing the store share the pool, and MACs can have reserved addresses;
// with Config.Probe a fresh address is probed (ARP) before it is offered.
// Requests are answered concurrently, so probes overlap. A flood of
// DISCOVERs with fresh MACs can hold the pool for OfferHold.
//
// [Server.Respond] is the whole request-to-reply decision without sockets;
// [Server.Serve] binds it to an interface.
//
// # Wiring
//
//	srv, err := dhcp.New(dhcp.Config{
//		Interface: "eth1",
//		ServerIP:  netip.MustParseAddr("192.0.2.1"),
//		HTTPPort:  8080,
//	}, logger)
//	if err != nil {
//		return err
//	}
//	err = srv.Serve(ctx) // ports 67 and 4011; returns nil when ctx is done
package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"

	"github.com/sealroot/sealroot/server/boot/udpbuf"
)

// maxPacket bounds a received datagram; larger ones are truncated and
// fail to parse.
const maxPacket = 1500

// Server answers DHCP requests. Create it with New.
type Server struct {
	cfg    Config // defaults applied; read-only
	pool   *pool  // nil in ModeProxy
	logger hclog.Logger

	probeMu sync.Mutex
	probing map[netip.Addr]bool // guarded by probeMu: offers waiting for their probe
}

// New validates cfg and returns a server. A nil logger discards logs.
func New(cfg Config, logger hclog.Logger) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	s := &Server{cfg: cfg, logger: logger.Named("dhcp"), probing: map[netip.Addr]bool{}}
	if cfg.Mode == ModeFull {
		s.pool = newPool(cfg.Pool, cfg.Leases, s.storeError)
	}
	return s, nil
}

// Serve listens on Config.Interface, on port 67 and, in ModeProxy, on port
// 4011, and answers requests until ctx is done. It returns nil after a
// shutdown caused by ctx. Sockets are created before Serve starts any
// goroutine, in the calling thread's network namespace.
func (s *Server) Serve(ctx context.Context) error {
	if s.cfg.Interface == "" {
		return fmt.Errorf("%w: no interface", ErrInvalidConfig)
	}
	ports := []Port{PortDHCP}
	if s.cfg.Mode == ModeProxy {
		ports = append(ports, PortPXE)
	}
	conns := make([]net.PacketConn, 0, len(ports))
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for _, p := range ports {
		c, err := server4.NewIPv4UDPConn(s.cfg.Interface, &net.UDPAddr{Port: int(p)})
		if err != nil {
			return fmt.Errorf("dhcp: listen on %s port %d: %w", s.cfg.Interface, p, err)
		}
		udpbuf.Grow(c) // the DISCOVERs of a room powered on at once
		conns = append(conns, c)
	}
	s.logger.Info("serving", "interface", s.cfg.Interface, "mode", s.cfg.Mode, "server_ip", s.cfg.ServerIP)
	return s.serveConns(ctx, conns, ports)
}

// serveConns runs one read loop per conn until ctx is done or one fails.
func (s *Server) serveConns(ctx context.Context, conns []net.PacketConn, ports []Port) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(conns))
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cancel()
			errs[i] = s.readLoop(ctx, conns[i], ports[i])
		}()
	}
	<-ctx.Done()
	for _, c := range conns {
		c.Close() // unblocks ReadFrom
	}
	wg.Wait()
	s.logger.Info("stopped", "interface", s.cfg.Interface)
	return errors.Join(errs...)
}

// maxHandlers bounds the requests of one port answered at once. A
// DISCOVER that gets a fresh address waits for its ARP probe (300 ms by
// default); answered one after the other, a storm of fresh machines
// would wait one probe each and the socket would drop what it cannot
// hold meanwhile.
const maxHandlers = 256

// readLoop reads requests and answers each in a goroutine of its own (at
// most maxHandlers at once), all waited for before it returns.
func (s *Server) readLoop(ctx context.Context, conn net.PacketConn, port Port) error {
	var handlers sync.WaitGroup
	defer handlers.Wait()
	slots := make(chan struct{}, maxHandlers)
	for {
		buf := make([]byte, maxPacket)
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("dhcp: read port %d: %w", port, err)
		}
		slots <- struct{}{}
		handlers.Go(func() {
			defer func() { <-slots }()
			s.handle(ctx, conn, port, buf[:n], peer)
		})
	}
}

// handle parses, answers and sends one datagram.
func (s *Server) handle(ctx context.Context, conn net.PacketConn, port Port, b []byte, peer net.Addr) {
	st := s.cfg.Stats
	st.Received(len(b))
	req, err := dhcpv4.FromBytes(b)
	if err != nil {
		st.Request("malformed")
		s.logger.Debug("malformed packet", "peer", peer.String(), "port", port, "error", err)
		return
	}
	reply, err := s.Respond(ctx, req, port)
	if err != nil {
		st.Request("no-reply")
		s.logger.Debug("no reply", "mac", req.ClientHWAddr.String(), "type", req.MessageType().String(), "port", port, "reason", err)
		return
	}
	if reply == nil {
		st.Request("handled")
		s.logger.Info("handled", "mac", req.ClientHWAddr.String(), "type", req.MessageType().String())
		return
	}
	dst := replyAddr(req, reply, port, peer)
	out := reply.ToBytes()
	if _, err := conn.WriteTo(out, dst); err != nil {
		st.Request("send-failed")
		s.logger.Warn("send failed", "mac", req.ClientHWAddr.String(), "dst", dst.String(), "error", err)
		return
	}
	st.Request("reply")
	st.Sent(len(out))
	s.logger.Info("reply", "mac", req.ClientHWAddr.String(), "type", reply.MessageType().String(),
		"port", port, "yiaddr", reply.YourIPAddr.String(), "file", reply.BootFileName, "dst", dst.String())
}

// replyAddr picks the destination (RFC 2131 4.1): the relay, the client's
// configured address, or broadcast. Port 4011 replies go to the sender.
func replyAddr(req, reply *dhcpv4.DHCPv4, port Port, peer net.Addr) net.Addr {
	if port == PortPXE {
		return peer
	}
	if gw, ok := addrOf(req.GatewayIPAddr); ok {
		return &net.UDPAddr{IP: gw.AsSlice(), Port: dhcpv4.ServerPort}
	}
	if ci, ok := addrOf(req.ClientIPAddr); ok && reply.MessageType() != dhcpv4.MessageTypeNak {
		return &net.UDPAddr{IP: ci.AsSlice(), Port: dhcpv4.ClientPort}
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
}
