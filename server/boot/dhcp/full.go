package dhcp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// respondFull is the DHCP server of ModeFull (RFC 2131 4.3): addresses from
// the pool for everyone, boot options for PXE clients of a supported arch.
func (s *Server) respondFull(ctx context.Context, req *dhcpv4.DHCPv4, c client) (*dhcpv4.DHCPv4, error) {
	now := s.cfg.Now()
	switch mt := req.MessageType(); mt {
	case dhcpv4.MessageTypeDiscover:
		a, err := s.offer(ctx, c.mac, now)
		if err != nil {
			return nil, err
		}
		return s.leaseReply(req, c, dhcpv4.MessageTypeOffer, a, s.cfg.Pool.LeaseTime), nil
	case dhcpv4.MessageTypeRequest:
		return s.request(ctx, req, c)
	case dhcpv4.MessageTypeRelease:
		if a, ok := addrOf(req.ClientIPAddr); ok && s.isOurs(req) {
			return nil, s.pool.release(ctx, c.mac, a, now)
		}
		return nil, nil
	case dhcpv4.MessageTypeDecline:
		if a, ok := addrOf(req.RequestedIPAddress()); ok && s.isOurs(req) {
			return nil, s.pool.decline(ctx, c.mac, a, now)
		}
		return nil, nil
	case dhcpv4.MessageTypeInform:
		reply := s.newReply(req, dhcpv4.MessageTypeAck)
		reply.ClientIPAddr = req.ClientIPAddr
		s.addNetwork(reply, 0)
		s.addBootIfSupported(reply, req, c)
		return reply, nil
	default:
		return nil, fmt.Errorf("%w: %v in full mode", ErrIgnored, mt)
	}
}

// request answers SELECTING (with server identifier), INIT-REBOOT (option
// 50) and RENEWING/REBINDING (ciaddr) requests with ACK or NAK.
func (s *Server) request(ctx context.Context, req *dhcpv4.DHCPv4, c client) (*dhcpv4.DHCPv4, error) {
	if !s.isOurs(req) {
		return nil, fmt.Errorf("%w: client selected server %v", ErrIgnored, req.ServerIdentifier())
	}
	a, ok := addrOf(req.RequestedIPAddress())
	if !ok {
		a, ok = addrOf(req.ClientIPAddr)
	}
	if !ok {
		return nil, fmt.Errorf("%w: REQUEST without an address", ErrIgnored)
	}
	ok, granted, err := s.pool.request(ctx, c.mac, a, s.cfg.Now())
	if err != nil {
		return nil, err
	}
	if !ok {
		nak := s.newReply(req, dhcpv4.MessageTypeNak)
		nak.UpdateOption(dhcpv4.OptMessage("address not available"))
		return nak, nil
	}
	reply := s.leaseReply(req, c, dhcpv4.MessageTypeAck, a, granted)
	reply.ClientIPAddr = req.ClientIPAddr
	return reply, nil
}

// isOurs reports whether req names no server identifier or ours.
func (s *Server) isOurs(req *dhcpv4.DHCPv4) bool {
	id, ok := addrOf(req.ServerIdentifier())
	return !ok || id == s.cfg.ServerIP
}

// leaseReply is an OFFER or ACK of a for lease.
func (s *Server) leaseReply(req *dhcpv4.DHCPv4, c client, mt dhcpv4.MessageType, a netip.Addr, lease time.Duration) *dhcpv4.DHCPv4 {
	reply := s.newReply(req, mt)
	reply.YourIPAddr = a.AsSlice()
	s.addNetwork(reply, lease)
	s.addBootIfSupported(reply, req, c)
	return reply
}

// addNetwork adds the subnet options, and the lease times of lease
// (none if 0).
func (s *Server) addNetwork(reply *dhcpv4.DHCPv4, lease time.Duration) {
	p := s.cfg.Pool
	reply.UpdateOption(dhcpv4.OptSubnetMask(net.CIDRMask(p.Subnet.Bits(), 32)))
	if p.Router.IsValid() {
		reply.UpdateOption(dhcpv4.OptRouter(p.Router.AsSlice()))
	}
	if len(p.DNS) > 0 {
		ips := make([]net.IP, len(p.DNS))
		for i, d := range p.DNS {
			ips[i] = d.AsSlice()
		}
		reply.UpdateOption(dhcpv4.OptDNS(ips...))
	}
	if lease > 0 {
		reply.UpdateOption(dhcpv4.OptIPAddressLeaseTime(lease))
		reply.UpdateOption(dhcpv4.OptRenewTimeValue(lease / 2))
		reply.UpdateOption(dhcpv4.OptRebindingTimeValue(lease * 7 / 8))
	}
}

func (s *Server) addBootIfSupported(reply, req *dhcpv4.DHCPv4, c client) {
	if c.netboot && c.arch != "" && (!c.httpBoot || s.cfg.HTTPBootPath != "") {
		s.addBoot(reply, req, c)
	}
}

// addrOf converts a non-zero IPv4 net.IP.
func addrOf(ip net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok || a.IsUnspecified() {
		return netip.Addr{}, false
	}
	return a, true
}
