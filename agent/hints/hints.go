// Package hints gathers the unauthenticated facts about a machine that the
// agent sends along with its TPM identity (wire.Hints): MAC addresses of
// the physical network interfaces, the SMBIOS system UUID, vendor, product
// and serial number, and the firmware type. Operators see them when approving a machine; the server never uses
// them for identity.
//
// It also reads the firmware's TPM event log from securityfs.
package hints

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sealroot/sealroot/wire"
)

// MaxEventLogSize bounds the event log read from securityfs. It is the
// evidence message's size limit: a larger log could not be sent anyway.
const MaxEventLogSize = 1 << 20

// ErrEventLogTooLarge is returned by EventLog for a log over MaxEventLogSize.
var ErrEventLogTooLarge = errors.New("TPM event log larger than the evidence limit")

// Gather reads hints from sysfs mounted at sys ("" means "/sys"). Facts
// that cannot be read are left empty: hints are best effort.
func Gather(sys string) wire.Hints {
	if sys == "" {
		sys = "/sys"
	}
	return wire.Hints{
		MACs:       MACs(sys),
		SMBIOSUUID: SMBIOSUUID(sys),
		Vendor:     dmi(sys, "sys_vendor"),
		Product:    dmi(sys, "product_name"),
		Serial:     dmi(sys, "product_serial"),
		Firmware:   Firmware(sys),
	}
}

// maxDMI bounds a DMI string; SMBIOS strings are short.
const maxDMI = 64

// dmi returns a DMI identity string (class/dmi/id/<name>), trimmed and
// bounded, or "" when unreadable or a firmware placeholder.
func dmi(sys, name string) string {
	b, err := os.ReadFile(filepath.Join(sys, "class/dmi/id", name))
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(string(b))
	if len(s) > maxDMI {
		s = s[:maxDMI]
	}
	switch strings.ToLower(s) {
	case "to be filled by o.e.m.", "default string", "system serial number", "not specified", "none", "0":
		return ""
	}
	return s
}

// MACs returns the sorted, distinct MAC addresses of the network interfaces
// backed by a device (no loopback, bridges, veths or tunnels).
func MACs(sys string) []string {
	ifaces, _ := filepath.Glob(filepath.Join(sys, "class/net/*"))
	seen := map[string]bool{}
	var macs []string
	for _, dir := range ifaces {
		if _, err := os.Stat(filepath.Join(dir, "device")); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, "address"))
		if err != nil {
			continue
		}
		hw, err := net.ParseMAC(strings.TrimSpace(string(b)))
		if err != nil || len(hw) != 6 || bytes.Equal(hw, make([]byte, 6)) {
			continue
		}
		if s := hw.String(); !seen[s] {
			seen[s] = true
			macs = append(macs, s)
		}
	}
	sort.Strings(macs)
	return macs
}

// SMBIOSUUID returns the lower-case SMBIOS system UUID, or "" if unknown.
// Firmware placeholders (all zeros or all ones) count as unknown.
func SMBIOSUUID(sys string) string {
	b, err := os.ReadFile(filepath.Join(sys, "class/dmi/id/product_uuid"))
	if err != nil {
		return ""
	}
	u := strings.ToLower(strings.TrimSpace(string(b)))
	switch strings.Trim(strings.ReplaceAll(u, "-", ""), "0") {
	case "", strings.Repeat("f", 32):
		return ""
	}
	if len(u) != 36 {
		return ""
	}
	return u
}

// Firmware returns "uefi" if the kernel was booted by UEFI firmware, else
// "bios".
func Firmware(sys string) string {
	if _, err := os.Stat(filepath.Join(sys, "firmware/efi")); err == nil {
		return "uefi"
	}
	return "bios"
}

// EventLog returns the TPM's firmware event log from securityfs mounted
// under sys ("" means "/sys").
func EventLog(sys string) ([]byte, error) {
	if sys == "" {
		sys = "/sys"
	}
	name := filepath.Join(sys, "kernel/security/tpm0/binary_bios_measurements")
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("TPM event log: %w", err)
	}
	defer f.Close()
	// securityfs reports size 0: read until EOF, one byte past the limit.
	b, err := io.ReadAll(io.LimitReader(f, MaxEventLogSize+1))
	if err != nil {
		return nil, fmt.Errorf("TPM event log: %w", err)
	}
	if len(b) > MaxEventLogSize {
		return nil, fmt.Errorf("%s: %w", name, ErrEventLogTooLarge)
	}
	return b, nil
}
