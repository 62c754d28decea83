package dhcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

var (
	serverIP = netip.MustParseAddr("192.0.2.1")
	mac1     = net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}
	mac2     = net.HardwareAddr{0x52, 0x54, 0, 0, 0, 2}
	mac3     = net.HardwareAddr{0x52, 0x54, 0, 0, 0, 3}
)

// Client profiles, as modifiers of a request.
var (
	pxeBIOS  = []dhcpv4.Modifier{pxeClass(0), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC))}
	pxeEFI   = []dhcpv4.Modifier{pxeClass(7), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64))}
	pxeEFIBC = []dhcpv4.Modifier{pxeClass(9), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_BC))}
	pxeARM64 = []dhcpv4.Modifier{pxeClass(11), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_ARM64))}
	// Arch only in the class identifier, no option 93.
	pxeEFIClassOnly = []dhcpv4.Modifier{pxeClass(7)}
	ipxeBIOS        = append(pxeBIOS[:2:2], dhcpv4.WithUserClass("iPXE", false))
	ipxeEFIRFC3004  = append(pxeEFI[:2:2], dhcpv4.WithUserClass("iPXE", true))
	ipxeEFIOpt175   = append(pxeEFI[:2:2], dhcpv4.WithGeneric(optionIPXEEncap, []byte{0xb1, 1, 1}))
	plainClient     = []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("udhcp 1.36.1"))}
	// UEFI HTTP boot clients as OVMF's HttpBootDxe sends them.
	httpEFI          = []dhcpv4.Modifier{httpClass(16), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64_HTTP))}
	httpEFIClassOnly = []dhcpv4.Modifier{httpClass(16)}
	httpARM64        = []dhcpv4.Modifier{httpClass(19), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_ARM64_HTTP))}
)

func httpClass(arch int) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptClassIdentifier(fmt.Sprintf("HTTPClient:Arch:%05d:UNDI:003001", arch)))
}

func pxeClass(arch int) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptClassIdentifier(fmt.Sprintf("PXEClient:Arch:%05d:UNDI:002001", arch)))
}

func newMsg(t testing.TB, mt dhcpv4.MessageType, mac net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(mt)}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newTestServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	cfg.ServerIP = serverIP
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatalf("New(%+v) = %v", cfg, err)
	}
	return s
}

// want describes the expected reply; zero fields are not checked.
type want struct {
	err      error
	noReply  bool
	msgType  dhcpv4.MessageType
	file     string
	option43 bool
	// plain: a boot file without class identifier "PXEClient" (a full-mode
	// lease that is no BINL offer, see addBoot).
	plain bool
	// httpBoot: class identifier "HTTPClient" and the URL in option 67 too.
	httpBoot bool
}

func checkReply(t *testing.T, reply *dhcpv4.DHCPv4, err error, w want) {
	t.Helper()
	if w.err != nil || w.noReply {
		if !errors.Is(err, w.err) || reply != nil {
			t.Fatalf("Respond = %v, %v; want no reply, error %v", reply, err, w.err)
		}
		return
	}
	if err != nil || reply == nil {
		t.Fatalf("Respond = %v, %v; want %v", reply, err, w.msgType)
	}
	if reply.MessageType() != w.msgType || reply.BootFileName != w.file {
		t.Errorf("reply = %v file %q, want %v file %q", reply.MessageType(), reply.BootFileName, w.msgType, w.file)
	}
	if got := reply.Options.Has(dhcpv4.OptionVendorSpecificInformation); got != w.option43 {
		t.Errorf("option 43 present = %v, want %v", got, w.option43)
	}
	if !reply.ServerIdentifier().Equal(serverIP.AsSlice()) {
		t.Errorf("server identifier = %v, want %v", reply.ServerIdentifier(), serverIP)
	}
	wantClass := "PXEClient"
	if w.plain {
		wantClass = ""
	}
	if w.httpBoot {
		wantClass = "HTTPClient"
		if got := reply.Options.Get(dhcpv4.OptionBootfileName); string(got) != w.file {
			t.Errorf("option 67 = %q, want %q", got, w.file)
		}
	}
	if w.file != "" && (!reply.ServerIPAddr.Equal(serverIP.AsSlice()) || reply.ClassIdentifier() != wantClass) {
		t.Errorf("siaddr %v, class %q; want %v, %q", reply.ServerIPAddr, reply.ClassIdentifier(), serverIP, wantClass)
	}
	// The reply must encode and decode to the same boot file.
	back, err := dhcpv4.FromBytes(reply.ToBytes())
	if err != nil || back.BootFileName != reply.BootFileName {
		t.Errorf("reply does not round-trip: %v", err)
	}
}

const (
	biosURL = "http://192.0.2.1:8080/boot.ipxe?arch=bios"
	efiURL  = "http://192.0.2.1:8080/boot.ipxe?arch=efi-x64"
)

func TestRespondProxy(t *testing.T) {
	s := newTestServer(t, Config{Mode: ModeProxy, HTTPPort: 8080})
	D, R, I := dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeInform
	tests := []struct {
		name string
		mt   dhcpv4.MessageType
		mods []dhcpv4.Modifier
		port Port
		want want
	}{
		{"bios_discover", D, pxeBIOS, PortDHCP, want{msgType: dhcpv4.MessageTypeOffer, file: "undionly.kpxe", option43: true}},
		{"efi_x64_discover", D, pxeEFI, PortDHCP, want{msgType: dhcpv4.MessageTypeOffer, file: "ipxe.efi"}},
		{"efi_bc_discover", D, pxeEFIBC, PortDHCP, want{msgType: dhcpv4.MessageTypeOffer, file: "ipxe.efi"}},
		{"arch_from_class_only", D, pxeEFIClassOnly, PortDHCP, want{msgType: dhcpv4.MessageTypeOffer, file: "ipxe.efi"}},
		{"ipxe_bios_discover", D, ipxeBIOS, PortDHCP, want{msgType: dhcpv4.MessageTypeOffer, file: biosURL}},
		{"ipxe_efi_rfc3004_discover", D, ipxeEFIRFC3004, PortDHCP, want{msgType: dhcpv4.MessageTypeOffer, file: efiURL}},
		{"ipxe_efi_option175_discover", D, ipxeEFIOpt175, PortDHCP, want{msgType: dhcpv4.MessageTypeOffer, file: efiURL}},
		{"bios_request_4011", R, pxeBIOS, PortPXE, want{msgType: dhcpv4.MessageTypeAck, file: "undionly.kpxe", option43: true}},
		{"ipxe_request_4011", R, ipxeBIOS, PortPXE, want{msgType: dhcpv4.MessageTypeAck, file: biosURL}},
		{"efi_inform_4011", I, pxeEFI, PortPXE, want{msgType: dhcpv4.MessageTypeAck, file: "ipxe.efi"}},
		{"non_pxe_discover", D, plainClient, PortDHCP, want{err: ErrNotPXE}},
		{"non_pxe_request_4011", R, plainClient, PortPXE, want{err: ErrNotPXE}},
		{"arm64_discover", D, pxeARM64, PortDHCP, want{err: ErrUnsupportedArch}},
		{"request_on_67_left_to_site_dhcp", R, pxeBIOS, PortDHCP, want{err: ErrIgnored}},
		{"discover_on_4011", D, pxeBIOS, PortPXE, want{err: ErrIgnored}},
		{"release", dhcpv4.MessageTypeRelease, pxeBIOS, PortDHCP, want{err: ErrIgnored}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := newMsg(t, tt.mt, mac1, tt.mods...)
			reply, err := s.Respond(context.Background(), req, tt.port)
			checkReply(t, reply, err, tt.want)
			if reply != nil && !reply.YourIPAddr.IsUnspecified() {
				t.Errorf("proxy reply assigns yiaddr %v", reply.YourIPAddr)
			}
		})
	}
}

func TestRespondProxyCopiesFields(t *testing.T) {
	s := newTestServer(t, Config{})
	guid := append([]byte{0}, bytes.Repeat([]byte{0xab}, 16)...)
	req := newMsg(t, dhcpv4.MessageTypeRequest, mac1, append(pxeEFI[:2:2],
		dhcpv4.WithClientIP(net.IPv4(192, 0, 2, 77)),
		dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, guid))...)
	reply, err := s.Respond(context.Background(), req, PortPXE)
	if err != nil {
		t.Fatal(err)
	}
	if reply.TransactionID != req.TransactionID || !bytes.Equal(reply.ClientHWAddr, mac1) ||
		!reply.ClientIPAddr.Equal(net.IPv4(192, 0, 2, 77)) || reply.OpCode != dhcpv4.OpcodeBootReply {
		t.Errorf("reply header = %v", reply.Summary())
	}
	if got := reply.Options.Get(dhcpv4.OptionClientMachineIdentifier); !bytes.Equal(got, guid) {
		t.Errorf("option 97 = %x, want %x", got, guid)
	}
	// Default HTTP port is 80 and is written out.
	ipxeReq := newMsg(t, dhcpv4.MessageTypeDiscover, mac1, ipxeEFIOpt175...)
	if r, _ := s.Respond(context.Background(), ipxeReq, PortDHCP); r == nil || r.BootFileName != "http://192.0.2.1:80/boot.ipxe?arch=efi-x64" {
		t.Errorf("default port URL = %v", r)
	}
}

func TestRespondRejectsNonRequests(t *testing.T) {
	s := newTestServer(t, Config{})
	req := newMsg(t, dhcpv4.MessageTypeDiscover, mac1, pxeBIOS...)
	req.OpCode = dhcpv4.OpcodeBootReply
	if _, err := s.Respond(context.Background(), req, PortDHCP); !errors.Is(err, ErrIgnored) {
		t.Errorf("BOOTREPLY: err = %v, want ErrIgnored", err)
	}
	req = newMsg(t, dhcpv4.MessageTypeDiscover, net.HardwareAddr{1, 2, 3}, pxeBIOS...)
	if _, err := s.Respond(context.Background(), req, PortDHCP); !errors.Is(err, ErrIgnored) {
		t.Errorf("3-byte MAC: err = %v, want ErrIgnored", err)
	}
}

// fakeClock is a settable clock for lease tests.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func fullConfig(clock *fakeClock) Config {
	return Config{
		Mode:     ModeFull,
		HTTPPort: 8080,
		Pool: Pool{
			Subnet:    netip.MustParsePrefix("192.0.2.0/24"),
			Start:     netip.MustParseAddr("192.0.2.100"),
			End:       netip.MustParseAddr("192.0.2.102"),
			Router:    netip.MustParseAddr("192.0.2.254"),
			DNS:       []netip.Addr{netip.MustParseAddr("192.0.2.53")},
			LeaseTime: 10 * time.Minute,
		},
		Now: clock.now,
	}
}

func TestRespondFullClasses(t *testing.T) {
	s := newTestServer(t, fullConfig(&fakeClock{time.Unix(1e9, 0)}))
	tests := []struct {
		name string
		mods []dhcpv4.Modifier
		want want
	}{
		{"non_pxe_gets_lease_only", plainClient, want{msgType: dhcpv4.MessageTypeOffer}},
		{"bios", pxeBIOS, want{msgType: dhcpv4.MessageTypeOffer, file: "undionly.kpxe", option43: true}},
		{"efi_x64", pxeEFI, want{msgType: dhcpv4.MessageTypeOffer, file: "ipxe.efi", plain: true}},
		{"ipxe_efi", ipxeEFIRFC3004, want{msgType: dhcpv4.MessageTypeOffer, file: efiURL, plain: true}},
		{"arm64_gets_lease_only", pxeARM64, want{msgType: dhcpv4.MessageTypeOffer}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply, err := s.Respond(context.Background(), newMsg(t, dhcpv4.MessageTypeDiscover, mac1, tt.mods...), PortDHCP)
			checkReply(t, reply, err, tt.want)
			if !reply.YourIPAddr.Equal(net.IPv4(192, 0, 2, 100)) {
				t.Errorf("yiaddr = %v, want 192.0.2.100 (stable per MAC)", reply.YourIPAddr)
			}
			if !reply.Router()[0].Equal(net.IPv4(192, 0, 2, 254)) || !reply.DNS()[0].Equal(net.IPv4(192, 0, 2, 53)) ||
				reply.IPAddressLeaseTime(0) != 10*time.Minute || reply.SubnetMask().String() != "ffffff00" {
				t.Errorf("network options = %v", reply.Options)
			}
		})
	}
	if _, err := s.Respond(context.Background(), newMsg(t, dhcpv4.MessageTypeDiscover, mac1, pxeBIOS...), PortPXE); !errors.Is(err, ErrIgnored) {
		t.Errorf("port 4011 in full mode: err = %v, want ErrIgnored", err)
	}
}

// TestRespondFullNoBINLOffer checks what UEFI PXE clients (edk2's
// PxeBcDhcp4.c) make of full-mode leases: a lease with class identifier
// "PXEClient" and no option 43 is a BINL offer, whose boot file the client
// asks for on port 4011, where a full-mode server does not listen (OVMF
// then fails with PXE-E16). Every lease with a boot file must instead be
// a PXE offer with option 43 or a plain DHCP offer.
func TestRespondFullNoBINLOffer(t *testing.T) {
	clients := []struct {
		name string
		mods []dhcpv4.Modifier
	}{
		{"bios", pxeBIOS}, {"efi_x64", pxeEFI}, {"efi_bc", pxeEFIBC},
		{"efi_class_only", pxeEFIClassOnly}, {"ipxe_bios", ipxeBIOS}, {"ipxe_efi", ipxeEFIOpt175},
	}
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			s := newTestServer(t, fullConfig(&fakeClock{time.Unix(1e9, 0)}))
			offer, err := s.Respond(context.Background(), newMsg(t, dhcpv4.MessageTypeDiscover, mac1, c.mods...), PortDHCP)
			if err != nil {
				t.Fatal(err)
			}
			req := newMsg(t, dhcpv4.MessageTypeRequest, mac1, append(c.mods[:len(c.mods):len(c.mods)],
				dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(serverIP.AsSlice())))...)
			ack, err := s.Respond(context.Background(), req, PortDHCP)
			if err != nil {
				t.Fatal(err)
			}
			for _, reply := range []*dhcpv4.DHCPv4{offer, ack} {
				// Decode what goes on the wire, as the client does.
				wire, err := dhcpv4.FromBytes(reply.ToBytes())
				if err != nil {
					t.Fatal(err)
				}
				if wire.BootFileName == "" || wire.YourIPAddr.IsUnspecified() {
					t.Fatalf("%v: file %q yiaddr %v, want a lease with a boot file", wire.MessageType(), wire.BootFileName, wire.YourIPAddr)
				}
				binl := strings.HasPrefix(wire.ClassIdentifier(), "PXEClient") &&
					!wire.Options.Has(dhcpv4.OptionVendorSpecificInformation)
				if binl {
					t.Errorf("%v is a BINL offer (PXEClient without option 43): %s", wire.MessageType(), wire.Summary())
				}
			}
		})
	}
}

const httpBootURL = "http://192.0.2.1:8080/artifacts/sealroot-signed.efi"

// TestRespondHTTPBoot: UEFI HTTP boot clients get the artifact's URL with
// their vendor class echoed, in both modes; without a configured artifact
// they get nothing (proxy) or a plain lease (full).
func TestRespondHTTPBoot(t *testing.T) {
	D := dhcpv4.MessageTypeDiscover
	proxy := newTestServer(t, Config{Mode: ModeProxy, HTTPPort: 8080, HTTPBootPath: "/artifacts/sealroot-signed.efi"})
	proxyOff := newTestServer(t, Config{Mode: ModeProxy, HTTPPort: 8080})
	fullCfg := fullConfig(&fakeClock{time.Unix(1e9, 0)})
	fullCfg.HTTPBootPath = "/artifacts/sealroot-signed.efi"
	full := newTestServer(t, fullCfg)
	fullOff := newTestServer(t, fullConfig(&fakeClock{time.Unix(1e9, 0)}))
	tests := []struct {
		name string
		s    *Server
		mods []dhcpv4.Modifier
		want want
	}{
		{"proxy_x64", proxy, httpEFI, want{msgType: dhcpv4.MessageTypeOffer, file: httpBootURL, httpBoot: true}},
		{"proxy_class_only", proxy, httpEFIClassOnly, want{msgType: dhcpv4.MessageTypeOffer, file: httpBootURL, httpBoot: true}},
		{"proxy_pxe_unchanged", proxy, pxeEFI, want{msgType: dhcpv4.MessageTypeOffer, file: "ipxe.efi"}},
		{"proxy_arm64_unsupported", proxy, httpARM64, want{err: ErrUnsupportedArch}},
		{"proxy_not_configured", proxyOff, httpEFI, want{err: ErrNoHTTPBoot}},
		{"full_x64", full, httpEFI, want{msgType: dhcpv4.MessageTypeOffer, file: httpBootURL, httpBoot: true}},
		{"full_not_configured_lease_only", fullOff, httpEFI, want{msgType: dhcpv4.MessageTypeOffer}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply, err := tt.s.Respond(context.Background(), newMsg(t, D, mac1, tt.mods...), PortDHCP)
			checkReply(t, reply, err, tt.want)
			if reply != nil && reply.Options.Has(dhcpv4.OptionVendorSpecificInformation) {
				t.Errorf("HTTP boot reply carries PXE option 43")
			}
		})
	}
}

func TestHTTPBootPathValidated(t *testing.T) {
	for _, p := range []string{"artifacts/x.efi", "/with space.efi", "/\x00", "/" + strings.Repeat("a", 100)} {
		if _, err := New(Config{ServerIP: serverIP, HTTPBootPath: p}, nil); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("New(HTTPBootPath %q) = %v, want ErrInvalidConfig", p, err)
		}
	}
}
