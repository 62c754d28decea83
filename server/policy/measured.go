package policy

import (
	"bytes"
	"crypto/sha256"
	"strings"

	"github.com/sealroot/sealroot/server/store"
)

// CheckBootMeasurement names the check that refuses a boot whose event log
// does not measure the initramfs and the kernel command line.
const CheckBootMeasurement = "boot-measurement"

// PCRs systemd-stub measures into (systemd's TPM2_PCR_KERNEL_BOOT and
// TPM2_PCR_KERNEL_CONFIG).
const (
	pcrKernelBoot   = 11
	pcrKernelConfig = 12
)

// Digests of the section names systemd-stub measures into PCR 11 before
// each section's content: SHA-256 of the name with its NUL.
var (
	initrdSectionName  = sha256.Sum256([]byte(".initrd\x00"))
	cmdlineSectionName = sha256.Sum256([]byte(".cmdline\x00"))
)

// MeasurementGap returns why the verified boot state bs does not cover the
// initramfs and the kernel command line the machine booted, or "" when it
// does. Only digests are used, never event types or data (which a log may
// misreport, see server/eventlog):
//
//   - the initramfs is measured when PCR 11 holds the digest of the name
//     ".initrd" followed by another PCR 11 event (its content):
//     systemd-stub booting a UKI. The firmware also measured the whole UKI,
//     .initrd included, into PCR 4.
//   - the command line is measured when PCR 11 holds the digest of the
//     name ".cmdline" (the UKI's built-in line) or PCR 12 has an event
//     (systemd-stub measures there the line the loader passed, which it
//     then uses instead of .cmdline).
//
// Legacy BIOS boots and UEFI boots of a kernel and initrd through Debian's
// iPXE measure neither, so they have a gap. Which values are acceptable is
// the policy's business; this only says whether the values can cover the
// code that will receive a credential.
func MeasurementGap(bs *store.BootState) string {
	if bs == nil {
		return "no verified boot state"
	}
	var pcr11 [][]byte
	pcr12 := 0
	for _, e := range bs.Events {
		switch e.PCR {
		case pcrKernelBoot:
			pcr11 = append(pcr11, e.Digest)
		case pcrKernelConfig:
			pcr12++
		}
	}
	var missing []string
	if !sectionMeasured(pcr11, initrdSectionName[:]) {
		missing = append(missing, "the initramfs")
	}
	if !sectionMeasured(pcr11, cmdlineSectionName[:]) && pcr12 == 0 {
		missing = append(missing, "the kernel command line")
	}
	if len(missing) == 0 {
		return ""
	}
	return "the event log does not measure " + strings.Join(missing, " or ") +
		" (legacy BIOS and UEFI kernel+initrd boots do not; UEFI boots of sealroot's UKI do):" +
		" boot this machine from the UKI, or approve it with policy identity-only"
}

// sectionMeasured reports whether digests (one PCR's events, in log
// order) hold name followed by another event, the section's content.
func sectionMeasured(digests [][]byte, name []byte) bool {
	for i, d := range digests {
		if bytes.Equal(d, name) && i+1 < len(digests) {
			return true
		}
	}
	return false
}
