package dhcp

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// FuzzRespond feeds raw datagrams through the parser and both modes of the
// responder, as Serve does, and checks that every reply encodes and parses.
func FuzzRespond(f *testing.F) {
	mt := []dhcpv4.MessageType{dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest,
		dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline, dhcpv4.MessageTypeInform}
	profiles := [][]dhcpv4.Modifier{pxeBIOS, pxeEFI, pxeEFIClassOnly, ipxeBIOS, ipxeEFIRFC3004, ipxeEFIOpt175, plainClient, pxeARM64, httpEFI, httpEFIClassOnly, httpARM64}
	for i, m := range mt {
		for _, p := range profiles {
			mods := append(p[:len(p):len(p)], dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(netip.MustParseAddr("192.0.2.100").AsSlice())))
			f.Add(newMsg(f, m, mac1, mods...).ToBytes(), i%2 == 0)
		}
	}
	f.Add([]byte{}, false)
	f.Add(make([]byte, 300), true)
	clock := &fakeClock{time.Unix(1e9, 0)}
	proxy := newTestServer(f, Config{HTTPBootPath: "/artifacts/sealroot.efi"})
	fullCfg := fullConfig(clock)
	fullCfg.HTTPBootPath = "/artifacts/sealroot.efi"
	full := newTestServer(f, fullCfg)
	f.Fuzz(func(t *testing.T, b []byte, pxePort bool) {
		req, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		port := PortDHCP
		if pxePort {
			port = PortPXE
		}
		for _, s := range []*Server{proxy, full} {
			reply, err := s.Respond(context.Background(), req, port)
			if err != nil || reply == nil {
				continue
			}
			if _, err := dhcpv4.FromBytes(reply.ToBytes()); err != nil {
				t.Fatalf("reply does not parse: %v\n%s", err, reply.Summary())
			}
			_ = replyAddr(req, reply, port, nil)
		}
	})
}
