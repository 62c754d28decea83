package vmtest

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"

	"github.com/sealroot/sealroot/test/netnstest"
)

// TestLabBootServices runs the lab's DHCP server and router advertisements
// against a client namespace on a veth, without a VM.
func TestLabBootServices(t *testing.T) {
	netnstest.RequireRoot(t)
	lab := NewLab(t, LabOptions{Name: "vmtest-svc-lab"})
	client := netnstest.New(t, "vmtest-svc-cli")
	if err := lab.NS.AddVeth("veth0", lab.Bridge, client, "eth0", netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	lab.ServeRouterAdvertisements(t)
	lab.ServeDHCP(t, func(req *dhcpv4.DHCPv4, acked int) string {
		if acked > 0 {
			return "chained"
		}
		return "first"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	t.Run("dhcp_lease_and_boot_file", func(t *testing.T) {
		var files []string
		var lease *nclient4.Lease
		err := client.Do(func() error {
			c, err := nclient4.New("eth0")
			if err != nil {
				return err
			}
			defer c.Close()
			for range 2 {
				if lease, err = c.Request(ctx); err != nil {
					return err
				}
				files = append(files, lease.ACK.BootFileName)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := lease.ACK.YourIPAddr.String(), "10.77.0.100"; got != want {
			t.Errorf("leased address = %s, want %s", got, want)
		}
		if got := lease.ACK.ServerIPAddr.String(); got != "10.77.0.1" {
			t.Errorf("next server = %s, want 10.77.0.1", got)
		}
		if files[0] != "first" || files[1] != "chained" {
			t.Errorf("boot files of two requests = %q, want [first chained]", files)
		}
		if got := lease.ACK.Options.Get(dhcpv4.GenericOptionCode(175)); string(got) != "\xb0\x01\x01" {
			t.Errorf("iPXE option 175 = %x, want b00101 (no-pxedhcp)", got)
		}
	})

	t.Run("router_advertisement", func(t *testing.T) {
		err := client.Do(func() error {
			c, err := icmp.ListenPacket("ip6:ipv6-icmp", "::")
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 1500)
			for {
				n, src, err := c.ReadFrom(buf)
				if err != nil {
					t.Errorf("no router advertisement: %v", err)
					return nil
				}
				m, err := icmp.ParseMessage(58, buf[:n])
				if err != nil || m.Type != ipv6.ICMPTypeRouterAdvertisement {
					continue
				}
				b := m.Body.(*icmp.RawBody).Data
				if ip := src.(*net.IPAddr).IP; !ip.IsLinkLocalUnicast() || b[1] != 0 || b[2] != 0 || b[3] != 0 {
					t.Errorf("RA from %s body %x: want link-local source, no flags, lifetime 0", src, b[:4])
				}
				return nil
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
