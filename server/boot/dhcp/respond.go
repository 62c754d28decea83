package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/sealroot/sealroot/ipxe"
)

// Port is the UDP port a request arrived on.
type Port uint16

// Ports the server listens on.
const (
	PortDHCP Port = 67   // DHCP server port
	PortPXE  Port = 4011 // PXE boot server port, ProxyDHCP REQUESTs
)

// Reasons for not answering, returned by Respond with a nil reply.
var (
	ErrNotPXE          = errors.New("dhcp: not a PXE client")
	ErrNoHTTPBoot      = errors.New("dhcp: UEFI HTTP boot client, but no HTTP boot artifact is configured")
	ErrUnsupportedArch = errors.New("dhcp: unsupported client architecture")
	ErrIgnored         = errors.New("dhcp: message not for this server")
)

// Option codes not named by the dhcpv4 package.
const (
	optionIPXEEncap = dhcpv4.GenericOptionCode(175) // iPXE encapsulated options
)

// ScriptPath is the boot script path on the HTTP server (see server/boot/http).
const ScriptPath = "/boot.ipxe"

// Vendor class identifiers (option 60) of network boot clients.
const (
	classPXE  = "PXEClient"
	classHTTP = "HTTPClient" // UEFI HTTP boot (UEFI spec, 24.7 HTTP Boot)
)

// client is what a request tells about the machine.
type client struct {
	mac      string
	netboot  bool      // PXE, iPXE or UEFI HTTP boot client
	ipxe     bool      // already running iPXE: chain to HTTP
	httpBoot bool      // UEFI firmware HTTP boot: load a URL, no TFTP
	arch     ipxe.Arch // "" if unsupported or unknown
}

// classify inspects the PXE, iPXE and HTTP boot options of req (RFC 4578,
// PXE 2.1, UEFI HTTP boot).
func classify(req *dhcpv4.DHCPv4) client {
	c := client{mac: req.ClientHWAddr.String()}
	class := req.ClassIdentifier()
	c.ipxe = hasIPXEUserClass(req) || req.Options.Has(optionIPXEEncap)
	c.httpBoot = strings.HasPrefix(class, classHTTP) && !c.ipxe
	c.netboot = strings.HasPrefix(class, classPXE) || c.ipxe || c.httpBoot
	arch, ok := clientArch(req, class)
	if ok {
		switch arch {
		case iana.INTEL_X86PC:
			c.arch = ipxe.ArchBIOS
		case iana.EFI_X86_64, iana.EFI_BC, iana.EFI_X86_64_HTTP:
			c.arch = ipxe.ArchEFIx64
		}
	}
	if c.httpBoot && c.arch == ipxe.ArchBIOS {
		c.arch = "" // no BIOS firmware boots over HTTP
	}
	return c
}

func hasIPXEUserClass(req *dhcpv4.DHCPv4) bool {
	for _, uc := range req.UserClass() {
		if uc == "iPXE" {
			return true
		}
	}
	return false
}

// clientArch returns option 93's first architecture, else the one in a
// "PXEClient:Arch:xxxxx:..." or "HTTPClient:Arch:xxxxx:..." class
// identifier.
func clientArch(req *dhcpv4.DHCPv4, class string) (iana.Arch, bool) {
	if archs := req.ClientArch(); len(archs) > 0 {
		return archs[0], true
	}
	f := strings.Split(class, ":")
	if len(f) >= 3 && (f[0] == classPXE || f[0] == classHTTP) && f[1] == "Arch" {
		if v, err := strconv.ParseUint(f[2], 10, 16); err == nil {
			return iana.Arch(v), true
		}
	}
	return 0, false
}

// bootFile is the boot file for c: a TFTP name for firmware PXE, the
// script URL for iPXE (so firmware PXE chains into iPXE, iPXE into HTTP),
// the HTTP boot artifact's URL for UEFI HTTP boot.
func (s *Server) bootFile(c client) string {
	host := "http://" + netip.AddrPortFrom(s.cfg.ServerIP, s.cfg.HTTPPort).String()
	if c.ipxe {
		return host + ScriptPath + "?arch=" + string(c.arch)
	}
	if c.httpBoot {
		return host + s.cfg.HTTPBootPath
	}
	if c.arch == ipxe.ArchBIOS {
		return s.cfg.BIOSFile
	}
	return s.cfg.EFIFile
}

// Respond computes the reply to req received on port. It touches no
// sockets; in ModeFull it updates the lease pool. A nil reply with a nil
// error means the request was handled and needs no answer (RELEASE,
// DECLINE); a nil reply with an error says why the server stays silent.
// Respond is safe for concurrent use; ctx bounds the lease store's work.
func (s *Server) Respond(ctx context.Context, req *dhcpv4.DHCPv4, port Port) (*dhcpv4.DHCPv4, error) {
	if req.OpCode != dhcpv4.OpcodeBootRequest || req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		return nil, fmt.Errorf("%w: not an Ethernet BOOTREQUEST", ErrIgnored)
	}
	if s.cfg.Mode == ModeFull {
		if port != PortDHCP {
			return nil, fmt.Errorf("%w: port %d in full mode", ErrIgnored, port)
		}
		return s.respondFull(ctx, req, classify(req))
	}
	return s.respondProxy(req, classify(req), port)
}

// respondProxy answers PXE clients only: DISCOVER on port 67 with an
// address-less OFFER, REQUEST or INFORM on port 4011 with an ACK.
func (s *Server) respondProxy(req *dhcpv4.DHCPv4, c client, port Port) (*dhcpv4.DHCPv4, error) {
	if !c.netboot {
		return nil, ErrNotPXE
	}
	if c.arch == "" {
		return nil, fmt.Errorf("%w: %v", ErrUnsupportedArch, req.ClientArch())
	}
	if c.httpBoot && s.cfg.HTTPBootPath == "" {
		return nil, ErrNoHTTPBoot
	}
	mt := req.MessageType()
	var reply *dhcpv4.DHCPv4
	switch {
	case port == PortDHCP && mt == dhcpv4.MessageTypeDiscover:
		reply = s.newReply(req, dhcpv4.MessageTypeOffer)
	case port == PortPXE && (mt == dhcpv4.MessageTypeRequest || mt == dhcpv4.MessageTypeInform):
		reply = s.newReply(req, dhcpv4.MessageTypeAck)
		reply.ClientIPAddr = req.ClientIPAddr
	default:
		return nil, fmt.Errorf("%w: %v on port %d in proxy mode", ErrIgnored, mt, port)
	}
	s.addBoot(reply, req, c)
	return reply, nil
}

// newReply starts a reply to req carrying our server identifier.
func (s *Server) newReply(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType) *dhcpv4.DHCPv4 {
	reply := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootReply,
		HWType:        req.HWType,
		TransactionID: req.TransactionID,
		Flags:         req.Flags,
		ClientHWAddr:  req.ClientHWAddr,
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: req.GatewayIPAddr,
		Options:       make(dhcpv4.Options),
	}
	if reply.GatewayIPAddr == nil {
		reply.GatewayIPAddr = net.IPv4zero
	}
	reply.UpdateOption(dhcpv4.OptMessageType(mt))
	reply.UpdateOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP.AsSlice()))
	if v := req.Options.Get(dhcpv4.OptionRelayAgentInformation); v != nil {
		reply.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionRelayAgentInformation, v))
	}
	return reply
}

// A leasing offer with class identifier "PXEClient" but no PXE options
// (43) is a BINL offer (PXE 2.1; edk2's PxeBcDhcp4.c): the client asks the
// boot server on port 4011 for its boot file and ignores the one in the
// offer. ModeFull listens on port 67 only, so addBoot leaves option 60 out
// there unless option 43 goes along: the lease then is a plain DHCP offer
// whose boot file the client loads directly (as from dnsmasq's dhcp-boot).
// UEFI PXE (OVMF) otherwise gives up with PXE-E16.

// pxeDiscoveryBypass is PXE option 43 sub-option 6 (discovery control) = 8:
// skip boot server discovery and boot the file name directly.
var pxeDiscoveryBypass = []byte{6, 1, 8, 255}

// addBoot adds next-server, boot file and PXE options for client c.
func (s *Server) addBoot(reply, req *dhcpv4.DHCPv4, c client) {
	reply.ServerIPAddr = s.cfg.ServerIP.AsSlice()
	reply.BootFileName = s.bootFile(c)
	if guid := req.Options.Get(dhcpv4.OptionClientMachineIdentifier); guid != nil {
		reply.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, guid))
	}
	if c.httpBoot {
		// The firmware takes only offers that echo its class, with the
		// URI in the file field or option 67 (edk2 HttpBootDhcp4.c).
		reply.UpdateOption(dhcpv4.OptClassIdentifier(classHTTP))
		reply.UpdateOption(dhcpv4.OptBootFileName(reply.BootFileName))
		return
	}
	if !c.ipxe {
		reply.ServerHostName = s.cfg.ServerIP.String()
	}
	// Some UEFI firmware rejects offers carrying option 43, so only BIOS
	// PXE ROMs get it (as in Pixiecore).
	withPXEOptions := c.arch == ipxe.ArchBIOS && !c.ipxe
	if withPXEOptions {
		reply.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, pxeDiscoveryBypass))
	}
	if s.cfg.Mode == ModeProxy || withPXEOptions {
		reply.UpdateOption(dhcpv4.OptClassIdentifier(classPXE))
	}
}
