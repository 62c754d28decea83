package hints

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// writeTree creates files (path -> content) under a temporary sysfs.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestGatherSynthetic(t *testing.T) {
	sys := writeTree(t, map[string]string{
		"class/net/eth1/address":                        "52:54:00:AB:CD:02\n",
		"class/net/eth1/device/vendor":                  "0x8086\n",
		"class/net/eth0/address":                        "52:54:00:ab:cd:01\n",
		"class/net/eth0/device/vendor":                  "0x8086\n",
		"class/net/lo/address":                          "00:00:00:00:00:00\n",
		"class/net/veth0/address":                       "aa:bb:cc:dd:ee:ff\n", // no device: virtual
		"class/dmi/id/product_uuid":                     "4C4C4544-0042-3510-8051-B4C04F4E4E32\n",
		"class/dmi/id/sys_vendor":                       "Intel(R) Client Systems\n",
		"class/dmi/id/product_name":                     "NUC11TNHi5\n",
		"class/dmi/id/product_serial":                   "To Be Filled By O.E.M.\n",
		"firmware/efi/systab":                           "",
		"kernel/security/tpm0/binary_bios_measurements": "\x00\x01log",
	})
	h := Gather(sys)
	if want := []string{"52:54:00:ab:cd:01", "52:54:00:ab:cd:02"}; !slices.Equal(h.MACs, want) {
		t.Errorf("MACs = %v, want %v", h.MACs, want)
	}
	if want := "4c4c4544-0042-3510-8051-b4c04f4e4e32"; h.SMBIOSUUID != want {
		t.Errorf("SMBIOSUUID = %q, want %q", h.SMBIOSUUID, want)
	}
	if h.Vendor != "Intel(R) Client Systems" || h.Product != "NUC11TNHi5" || h.Serial != "" {
		t.Errorf("vendor, product, serial = %q %q %q, want Intel(R) Client Systems, NUC11TNHi5 and no placeholder", h.Vendor, h.Product, h.Serial)
	}
	if h.Firmware != "uefi" {
		t.Errorf("Firmware = %q, want uefi", h.Firmware)
	}
	if log, err := EventLog(sys); err != nil || !bytes.Equal(log, []byte("\x00\x01log")) {
		t.Errorf("EventLog() = %q, %v", log, err)
	}
}

func TestPlaceholdersAndBIOS(t *testing.T) {
	for _, uuid := range []string{"00000000-0000-0000-0000-000000000000", "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", "garbage"} {
		sys := writeTree(t, map[string]string{"class/dmi/id/product_uuid": uuid})
		if got := SMBIOSUUID(sys); got != "" {
			t.Errorf("SMBIOSUUID(%q) = %q, want empty", uuid, got)
		}
		if got := Firmware(sys); got != "bios" {
			t.Errorf("Firmware() without firmware/efi = %q, want bios", got)
		}
	}
}

func TestEventLogErrors(t *testing.T) {
	big := string(make([]byte, MaxEventLogSize+1))
	sys := writeTree(t, map[string]string{"kernel/security/tpm0/binary_bios_measurements": big})
	if _, err := EventLog(sys); !errors.Is(err, ErrEventLogTooLarge) {
		t.Errorf("EventLog(oversized) = %v, want ErrEventLogTooLarge", err)
	}
	if _, err := EventLog(t.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("EventLog(missing) = %v, want os.ErrNotExist", err)
	}
}

func TestMACsOnHost(t *testing.T) {
	macs := MACs("/sys")
	if len(macs) == 0 {
		t.Skip("no physical network interface on this host")
	}
	for _, m := range macs {
		if _, err := net.ParseMAC(m); err != nil {
			t.Errorf("host MAC %q does not parse: %v", m, err)
		}
	}
	t.Logf("host MACs: %v, firmware %s", macs, Firmware("/sys"))
}
